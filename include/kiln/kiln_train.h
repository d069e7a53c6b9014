/* Kiln: public API of libkiln_train (autodiff, losses, optimizers, trainer). */
#ifndef KILN_KILN_TRAIN_H
#define KILN_KILN_TRAIN_H

#include "kiln/dataset.h"
#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reverse-mode autodiff over a graph: keeps every activation the backward pass needs. */
typedef struct kiln_tape kiln_tape_t;

/* A tape for g (not owned; parameters are read and running statistics updated in place).
 * input_grad: also compute the gradient of the input (for gradient checks). */
kiln_tape_t *kiln_tape_create(kiln_graph_t *g, int max_batch, bool input_grad, uint64_t seed);
/* Frees a tape. */
void kiln_tape_free(kiln_tape_t *t);
/* Forward pass over batch examples, one buffer per graph input in id order (f32, or int32 for
 * I32 inputs; token indices are checked against the embeddings reading them); training: batch
 * statistics, dropout. The buffers must stay valid until the backward. */
kiln_status kiln_tape_run(kiln_tape_t *t, const void *const *inputs, int batch, bool training);
/* Output k of the last forward (batch x numel; numel for an unbatched one), owned by the tape;
 * NULL if k is out of range. */
const float *kiln_tape_output(const kiln_tape_t *t, int k);
/* kiln_tape_run for a graph with one input, returning output 0 (NULL on error). */
const float *kiln_tape_forward(kiln_tape_t *t, const float *x, int batch, bool training);
/* Backward pass of the last forward from one gradient per graph output (NULL: no loss on it). */
void kiln_tape_backward_outputs(kiln_tape_t *t, const float *const *douts);
/* Backward pass from the gradient dout (batch x numel) of output 0. */
void kiln_tape_backward(kiln_tape_t *t, const float *dout);
/* Gradient of every trainable parameter (kiln_graph_param_count floats), after backward. */
float *kiln_tape_param_grads(kiln_tape_t *t);
/* Gradient of the first input after backward, or NULL if the tape was created without it. */
const float *kiln_tape_input_grad(const kiln_tape_t *t);
/* Gradient of any node's output after backward (NULL where none is kept), for gradient checks. */
const float *kiln_tape_node_grad(const kiln_tape_t *t, int node);
/* Bytes of activations and saved state the tape keeps per example. */
size_t kiln_tape_bytes_per_example(const kiln_tape_t *t);
/* Turns per-layer forward/backward timing on (resetting it) or off. */
void kiln_tape_profile(kiln_tape_t *t, bool on);
/* Prints the per-layer seconds accumulated since profiling was turned on to a FILE*. */
void kiln_tape_profile_print(const kiln_tape_t *t, void *file);
/* The dropout generator state (for checkpoints): 4 words. */
uint64_t *kiln_tape_rng_state(kiln_tape_t *t);

/* Mean softmax cross-entropy of logits (batch x classes) against labels; writes dlogits (may be
 * NULL) and the count of correct argmax predictions (may be NULL). */
float kiln_loss_softmax_ce(const float *logits, const int *labels, int batch, int classes,
                           float *dlogits, int *correct);
/* Per-example softmax cross-entropy losses into loss[batch]. */
void kiln_loss_softmax_ce_each(const float *logits, const int *labels, int batch, int classes, float *loss);
/* Mean squared error over n values; writes dy (may be NULL). */
float kiln_loss_mse(const float *y, const float *target, size_t n, float *dy);

/* Losses on any output (src/train/losses.c). */
typedef enum {
    KILN_LOSS_CE,      /* softmax cross-entropy over a class axis; int32 targets, the output's shape
                        * without that axis (per token for sequence models) */
    KILN_LOSS_BCE,     /* binary cross-entropy with logits; float targets in [0, 1], same shape */
    KILN_LOSS_MSE,     /* mean squared error; float targets */
    KILN_LOSS_L1,      /* mean absolute error */
    KILN_LOSS_HUBER,   /* smooth L1 / Huber with threshold delta */
    KILN_LOSS_COUNT
} kiln_loss_kind;

/* One loss term on one graph output. */
typedef struct {
    kiln_loss_kind kind;
    float weight;        /* its weight in the total; 0 means 1 */
    int axis;            /* ce: the class axis of the output's per-example shape (-1: the last) */
    int ignore_index;    /* ce: targets equal to this count for nothing (PyTorch's -100) */
    float delta;         /* huber: 0 means 1 */
} kiln_loss_spec;

/* What one loss evaluation found. */
typedef struct {
    double loss;         /* the mean over counted elements (before the weight) */
    int64_t counted;     /* elements counted (ce: targets not ignored) */
    int64_t correct;     /* ce: argmax equal to the target */
} kiln_loss_stats;

/* The loss's name ("ce", "bce", "mse", "l1", "huber"), or NULL. */
const char *kiln_loss_name(kiln_loss_kind k);
/* Targets per example that loss ls on node `output` of g takes. */
size_t kiln_loss_target_numel(const kiln_loss_spec *ls, const kiln_graph_t *g, int output);
/* Evaluates ls on node `output`'s values y (batch examples) against target (int32 for ce, float
 * otherwise) with optional per-target weights; writes the gradient of weight x loss into dy
 * (may be NULL). An error names the output when the loss is not finite. */
kiln_status kiln_loss_eval(const kiln_loss_spec *ls, const kiln_graph_t *g, int output, int batch, const float *y,
                           const void *target, const float *weights, float *dy, kiln_loss_stats *st);

/* Optimizer kinds. */
typedef enum { KILN_OPT_SGD, KILN_OPT_MOMENTUM, KILN_OPT_NESTEROV, KILN_OPT_ADAM, KILN_OPT_ADAMW } kiln_opt_kind;
/* Learning-rate schedules; warm-up composes with each. */
typedef enum { KILN_SCHED_CONSTANT, KILN_SCHED_STEP, KILN_SCHED_COSINE } kiln_sched_kind;

/* Optimizer and schedule settings (PyTorch semantics). */
typedef struct {
    kiln_opt_kind kind;
    float lr;
    float momentum;        /* momentum/nesterov; 0 means 0.9 */
    float beta1, beta2;    /* adam; 0 means 0.9, 0.999 */
    float eps;             /* adam; 0 means 1e-8 */
    float weight_decay;    /* L2 added to the gradient (decoupled for adamw) */
    float clip_norm;       /* clip the global gradient norm to this; 0 = off */
    kiln_sched_kind schedule;
    int64_t warmup_steps;  /* linear warm-up from 0 over this many steps */
    int64_t step_size;     /* step schedule: multiply by gamma every step_size steps */
    float gamma;           /* step schedule factor; 0 means 0.1 */
    float min_lr;          /* cosine floor */
} kiln_optim_config;

/* Optimizer state (momentum buffers, Adam moments, step count) for a flat parameter vector. */
typedef struct kiln_optim kiln_optim_t;

/* An optimizer for n parameters. */
kiln_optim_t *kiln_optim_create(const kiln_optim_config *cfg, size_t n);
/* Frees an optimizer. */
void kiln_optim_free(kiln_optim_t *o);
/* The scheduled learning rate at a step out of total steps. */
float kiln_optim_lr(const kiln_optim_t *o, int64_t step, int64_t total);
/* One update of params from grads at learning rate lr (grads may be scaled by clipping);
 * returns the gradient norm before clipping. */
float kiln_optim_step(kiln_optim_t *o, float *params, float *grads, float lr);
/* The optimizer's state buffers: count (0, 1 or 2), each n floats, and the step counter. */
int kiln_optim_state(kiln_optim_t *o, float **bufs, int64_t **step);

/* Selective Backprop's selector (arXiv 1910.00762): the last R recorded losses, and from them
 * each new example's probability of being backpropagated. */
typedef struct kiln_sb_selector kiln_sb_selector_t;

/* A selector remembering the last history losses, with exponent beta >= 0. NULL on error. */
kiln_sb_selector_t *kiln_sb_selector_create(int history, float beta);
/* Frees a selector. */
void kiln_sb_selector_free(kiln_sb_selector_t *s);
/* P = (share of the recorded losses strictly below loss)^beta; 1 while nothing is recorded, and
 * for every loss when beta is 0. A NaN loss ranks above every recorded one. */
double kiln_sb_probability(const kiln_sb_selector_t *s, float loss);
/* Records a loss, forgetting the oldest once history losses are held. */
void kiln_sb_record(kiln_sb_selector_t *s, float loss);
/* The number of losses held; copies them, oldest first, to out (may be NULL). */
int kiln_sb_recorded(const kiln_sb_selector_t *s, float *out);

/* Spearman rank correlation of a[0..n) and b[0..n) (ties get their mean rank): 1 when both
 * order the examples alike. NaN if n < 2 or either is constant. */
double kiln_rank_correlation(const float *a, const float *b, int n);

/* Which inference model scores examples for Selective Backprop. */
typedef enum {
    KILN_SB_SCORER_AUTO,   /* int8 in every epoch where it ranks the calibration set like fp32 */
    KILN_SB_SCORER_FP32,
    KILN_SB_SCORER_INT8
} kiln_sb_scorer;

/* Selective Backprop settings of a training run. */
typedef struct {
    bool enabled;          /* off: standard training */
    float beta;            /* selection exponent; 0 keeps every example (standard training) */
    int history;           /* R, losses the selector ranks against; 0 means 1024 */
    int stale;             /* reuse an example's loss for this many epochs after scoring it; 0 = off */
    kiln_sb_scorer scorer; /* int8 scoring recalibrates on 512 training images each scoring epoch */
    float min_rank_correlation; /* auto: int8 needs at least this Spearman correlation; 0 means 0.95 */
} kiln_sb_config;

/* Counters and time split of a run so far (cumulative over the run, resumes included). */
typedef struct {
    int64_t examples;       /* examples drawn from the data (epochs x dataset size when done) */
    int64_t scored;         /* examples given an inference-mode scoring pass */
    int64_t scored_int8;    /* of those, examples the int8 model scored */
    int64_t selected;       /* examples queued for backprop */
    int64_t backpropagated; /* examples trained on (forward + backward) */
    int64_t updates;        /* optimizer steps */
    double score_s, forward_s, backward_s, update_s;   /* seconds in each phase */
} kiln_train_counters;

/* One progress report from the trainer. */
typedef struct {
    int epoch, epochs;              /* 1-based epoch */
    int64_t step, steps_per_epoch;  /* step within the epoch, 1-based */
    int64_t global_step, total_steps;
    float loss, accuracy;           /* running means over the epoch so far */
    float lr;
    double images_per_s, eta_s, elapsed_s;
    bool epoch_end;                 /* test_* valid */
    float test_loss, test_accuracy;
    kiln_train_counters counters;
    int scorer_int8;                /* selective: the current epoch scores in int8 (1), fp32 (0), unknown (-1) */
    float scorer_rank_correlation;  /* int8 vs fp32 losses on the calibration set; NaN if not measured */
} kiln_progress;

/* Trainer settings. */
typedef struct {
    int epochs;
    int batch;
    uint64_t seed;
    kiln_optim_config opt;
    int crop_pad;                   /* random crop after zero padding by this; 0 = off */
    bool flip;                      /* random horizontal flip */
    const char *checkpoint_path;    /* NULL = no checkpoints */
    int64_t checkpoint_every;       /* steps; 0 = at every epoch end */
    const char *resume_path;        /* continue from this checkpoint */
    const char *metrics_path;       /* JSON lines, one per report; NULL = none */
    int64_t stop_after_steps;       /* stop early (tests); 0 = run all */
    int64_t steps;                  /* the run's length in steps (the schedule's too), ending inside
                                     * an epoch if need be; 0 = epochs x steps per epoch */
    kiln_sb_config selective;       /* Selective Backprop; zeroes: standard training */
    kiln_loss_kind loss;            /* for float targets (mse, l1, huber, bce); class targets always
                                     * take cross-entropy over the output's last axis */
    float huber_delta;              /* 0 means 1 */
    void (*on_progress)(const kiln_progress *p, void *user);
    /* called with the dataset indices of every batch trained on (may be NULL) */
    void (*on_batch)(const int *indices, int n, int epoch, void *user);
    void *user;
} kiln_train_config;

/* What a training run reached. */
typedef struct {
    int64_t steps;
    double seconds, images_per_s;
    float train_loss, train_accuracy, test_loss, test_accuracy;
    size_t activation_bytes_per_example;
    kiln_train_counters counters;
} kiln_train_result;

/* Trains g in place on train, evaluating on test (may be NULL) after every epoch: shuffled
 * mini-batches, augmentation, optimizer and schedule, checkpoints, metrics log. With Selective
 * Backprop, every epoch after the first scores each incoming batch with an inference session
 * (eval mode, no stored activations), queues the examples it selects and trains on each full
 * queue; the last partial queue of an epoch is trained at its end. The schedule advances with
 * the incoming batches, so the learning rate follows the data position in both modes. */
kiln_status kiln_train(kiln_graph_t *g, const kiln_dataset *train, const kiln_dataset *test,
                       const kiln_train_config *cfg, kiln_train_result *res);

#ifdef __cplusplus
}
#endif
#endif
