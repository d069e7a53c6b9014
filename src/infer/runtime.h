/* Internal layout of inference models (fp32 and int8) and sessions. */
#ifndef KILN_INFER_RUNTIME_H
#define KILN_INFER_RUNTIME_H

#include <string.h>
#include "core/graph.h"
#include "infer/optimize.h"
#include "infer/planner.h"
#include "ops/qgemm.h"

/* Quantisation of one tensor: real = scale * (q - zero), q in 0..255. */
typedef struct {
    float scale;
    int zero;
} kiln_qparams;

/* An int8 conv2d or dense: weights symmetric per output channel. Owns its arrays. */
typedef struct {
    int m, k;            /* output channels, reduction length (cin * kh * kw, or in features) */
    int8_t *w;           /* m x k, row-major: the saved form */
    int8_t *packed;      /* for the kernel */
    float *w_scale;      /* [m] */
    float *bias;         /* [m] real bias */
    int32_t *bias_q;     /* [m] bias in accumulator units, minus the input zero point's share */
    float *deq;          /* [m] input scale x weight scale: accumulator to real */
    float *requant;      /* [m] deq / output scale: accumulator to u8 steps */
    kiln_qkernel kernel; /* the kernel packed is laid out for */
    void *narrow;        /* conv: the byte-permuting im2row's tables (qforward.c) where it applies, else NULL */
} kiln_qweights;

/* What quantisation adds to a model. Owns its arrays. */
typedef struct {
    kiln_qkernel kernel;
    kiln_calibration method;
    int *elem_bytes;     /* per node: 1 (u8 output) or 4 (fp32 output) */
    bool *int8;          /* per node: computes on u8 inputs */
    int *pool_of;        /* per node: for an int8 conv that also computes the 2x2 max pool that
                          * alone reads it, that pool's id (the pool is then a view of the conv's
                          * pooled output and does not run); else 0 */
    kiln_qparams *qp;    /* per node output (also for fp32 outputs an int8 node may read) */
    kiln_qweights *qw;   /* per node; m = 0 where not an int8 conv/dense */
    int8_t *repack;      /* kiln_model_requantize's reordering scratch (NULL until its first call) */
} kiln_qmodel;

struct kiln_model {
    kiln_graph_t *g;              /* optimised graph, owns the fp32 weights */
    kiln_optimize_stats stats;
    kiln_qmodel *q;               /* NULL for fp32 models */
    kiln_weight_origin *origin;   /* per node of g, for kiln_model_update; NULL if not optimised */
    size_t src_params;            /* trainable floats of the graph g was made from */
    float **wino;                 /* per node of g: the Winograd-transformed kernel of a conv that
                                   * runs by Winograd (kiln_winograd_applies), else NULL; NULL itself
                                   * in int8 models */
    float **packed;               /* per node of g: a linear's or dense layer's weight pre-packed for
                                   * the GEMM kernel (kiln_sgemm_pack_b), else NULL */
};

struct kiln_session {
    const kiln_model_t *m;
    int max_batch, threads;
    bool winograd;                /* runs the model's Winograd convolutions by Winograd */
    double *node_seconds;         /* per node, when profiling; else NULL */
    kiln_plan plan;
    float *arena;                 /* plan.arena_floats */
    float *scratch;               /* per-thread im2col space (fp32 and int8 kernels) */
    size_t scratch_floats;
    float *convert[KILN_MAX_INPUTS]; /* dtype conversions of inputs (int8 models) */
    void **at;                    /* per node: where its output lives (the arena; a param's in the
                                   * model; a view's where its input's is) */
    char int8_label[32];          /* "int8 <kernel family>" (kiln_session_node_kernel) */
};

/* As kiln_model_create, without Winograd kernels (wino NULL): the start of an int8 model, whose
 * convolutions that Winograd could run (groups 1) all run in int8. */
kiln_model_t *kiln_model_create_bare(const kiln_graph_t *g, bool optimize);
/* Decides which nodes run in int8 and which outputs are u8 (from the graph alone, so a loaded
 * model derives the same); allocates q's per-node arrays. */
kiln_status kiln_qmodel_layout(const kiln_graph_t *g, kiln_qmodel *q);
/* Gives every int8 max pool and every u8 flatten its input's quantisation: they pass their
 * input's bytes through (a range calibrated on their own output would misread them). */
void kiln_qmodel_tie_views(const kiln_graph_t *g, kiln_qmodel *q);
/* Lets int8 models made from now on fuse 2x2 max pools into the conv before them (true, the
 * default) or not; returns the previous setting. For tests and benchmarks. */
bool kiln_quantize_fuse_pools(bool on);
/* Whether node id of an int8 model is a max pool its input conv computes (kiln_qmodel.pool_of). */
bool kiln_qnode_pooled(const kiln_model_t *m, int id);
/* Frees a quantisation record. */
void kiln_qmodel_free(kiln_qmodel *q, int n);
/* Output channels of an int8 conv2d, dense or linear node (a linear's units). */
int kiln_qweights_outputs(const kiln_node *nd);
/* Recomputes node id's packed weights, bias_q, deq and requant (allocated already) from w,
 * w_scale, bias and the quantisation parameters; hwc is m x k bytes of scratch. */
void kiln_qweights_derive(const kiln_graph_t *g, kiln_qmodel *q, int id, int8_t *hwc);
/* An int8 copy of fp32 model m with each node's output quantised by qp[node] (as recorded by an
 * earlier kiln_model_quantize of a model with m's structure). NULL on error. */
kiln_model_t *kiln_model_quantize_with(const kiln_model_t *m, const kiln_qparams *qp, kiln_calibration method);
/* The quantisation parameters of every node of an int8 model (NULL for fp32 models). */
const kiln_qparams *kiln_model_qparams(const kiln_model_t *m);
/* KILN_OK if g is the graph optimised model m was made from (same structure; kiln_model_update's
 * precondition), else an error naming who. */
kiln_status kiln_model_check_source(const kiln_model_t *m, const kiln_graph_t *g, const char *who);
/* As kiln_model_requantize, with the weights taken from g, the graph fp32 model m was created
 * from, through m's optimisation (batchnorm folded) but without refreshing m itself: for an int8
 * copy that follows a model in training while m is not run. */
kiln_status kiln_model_requantize_graph(kiln_model_t *qm, const kiln_model_t *m, const kiln_graph_t *g);
/* Fills the derived fields of node id's int8 weights (packed in NHWC column order, bias_q, deq)
 * from w, w_scale, bias and the input's quantisation; allocates them. */
kiln_status kiln_qweights_prepare(const kiln_graph_t *g, kiln_qmodel *q, int id);
/* The (channels, pixels) layout of node id's u8 tensor (NHWC; through a flatten, its source's). */
void kiln_qtensor_dims(const kiln_graph_t *g, int id, int *c, size_t *hw);
/* The (channels, pixels) layout in which node consumer reads its u8 input src: NHWC as
 * kiln_qtensor_dims says, but in order (c = all, hw = 1) for a linear layer's rows. */
void kiln_qinput_dims(const kiln_graph_t *g, int consumer, int src, int *c, size_t *hw);
/* Scratch floats an int8 node needs: per thread for conv2d, for the whole batch for dense and
 * linear. */
size_t kiln_qnode_scratch_floats(const kiln_model_t *m, int id, int batch);
/* Rows of each int8 product int8 conv or dense node id runs for a batch on threads threads (a
 * conv: one image's pixels, or its pool windows' four each; a dense layer: its thread's share). */
int kiln_qnode_product_rows(const kiln_model_t *m, int id, int batch, int threads);
/* Runs int8 node id: u8 input(s) in[], output (u8 or fp32 per elem_bytes) out. */
void kiln_qnode_forward(const kiln_model_t *m, int id, const void *const *in, void *out, int batch,
                        float *scratch, int threads);
/* Quantises batch NCHW fp32 tensors of (c, hw) to NHWC u8 with qp (hw 1: in order). */
void kiln_quantize_u8(const float *x, int c, size_t hw, int batch, kiln_qparams qp, uint8_t *q);
/* Dequantises batch NHWC u8 tensors of (c, hw) to NCHW fp32 with qp. */
void kiln_dequantize_u8(const uint8_t *q, int c, size_t hw, int batch, kiln_qparams qp, float *x);

#endif
