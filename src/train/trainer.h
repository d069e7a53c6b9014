/* The training loop's internals: run state, Selective Backprop state, checkpoints, augmentation. */
#ifndef KILN_TRAIN_TRAINER_H
#define KILN_TRAIN_TRAINER_H

#include "core/rng.h"
#include "kiln/dataset.h"
#include "kiln/kiln_train.h"

/* Where a run is: everything a checkpoint stores besides weights, optimizer and generator. */
typedef struct {
    int64_t global_step;    /* incoming batches drawn so far (the data position) */
    double loss_sum;        /* training losses this epoch so far, summed over examples */
    int64_t correct, seen;  /* this epoch so far, over trained examples */
    double elapsed;         /* training seconds (evaluation excluded) before this process */
    kiln_train_counters c;
} kiln_run_state;

/* Selective Backprop's state: the selector, each example's last loss, and the queue. Owns all. */
typedef struct {
    kiln_sb_selector_t *sel;
    int n;                  /* dataset examples */
    float *loss;            /* [n] last known loss of each example */
    int32_t *loss_epoch;    /* [n] epoch that loss is from; -1 = none */
    int batch;              /* queue capacity */
    size_t numel;           /* floats per example */
    float *qx;              /* [batch x numel] queued (augmented) images */
    int *qy, *qidx;         /* [batch] their labels and dataset indices */
    int qn;                 /* queued now */
    /* the int8 scorer's calibration, made at the first scoring of epoch q_epoch (-1: none) */
    int q_epoch;
    bool q_int8;            /* that epoch scores in int8 */
    float q_rank;           /* the rank correlation that decided it */
    int q_nodes;            /* nodes of the scorer's graph */
    float *q_scale;         /* [q_nodes] activation quantisation of each node's output */
    int32_t *q_zero;        /* [q_nodes] */
} kiln_sb_state;

/* Allocates Selective Backprop state for n examples of numel floats, batch-sized queues and a
 * scorer of q_nodes nodes. */
kiln_status kiln_sb_state_init(kiln_sb_state *sb, const kiln_sb_config *cfg, int n, size_t numel, int batch,
                               int q_nodes);
/* Frees what kiln_sb_state_init allocated. */
void kiln_sb_state_free(kiln_sb_state *sb);

/* Writes a checkpoint of the run (sb may be NULL) to cfg->checkpoint_path, atomically. */
kiln_status kiln_checkpoint_save(const kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape, const kiln_run_state *s,
                                 const kiln_sb_state *sb, const kiln_train_config *cfg);
/* Restores a run from cfg->resume_path, checking it matches g and cfg (sb may be NULL). */
kiln_status kiln_checkpoint_load(kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape, kiln_run_state *s,
                                 kiln_sb_state *sb, const kiln_train_config *cfg);

/* Applies the configured random crop and flip to a batch of images in place. */
void kiln_augment(float *x, int batch, int c, int h, int w, int crop_pad, bool flip, kiln_rng *rng, float *tmp);

#endif
