/* Forward kernels of every op, shared by the inference runtime and the trainer. */
#ifndef KILN_OPS_OPS_H
#define KILN_OPS_OPS_H

#include "core/omp_compat.h"
#include <stdint.h>
#include "core/graph.h"
#include "core/rng.h"

/* What one node's forward pass reads and writes. Training fills the save fields, which the
 * backward pass reads; inference leaves them NULL. */
typedef struct kiln_fwd_args {
    int batch;                          /* examples of a batched node; 1 for an unbatched one */
    int in_batch[KILN_MAX_INPUTS];      /* examples each input holds (batch, or 1 if unbatched) */
    bool training;                      /* batch statistics for batchnorm, active dropout */
    const float *in[KILN_MAX_INPUTS];   /* input activations, batch-major */
    float *out;                         /* output activation, batch x numel */
    float *work;                        /* temporary space, kiln_node_work_floats() */
    float *save;                        /* kept for backward, kiln_node_save_floats() (batchnorm:
                                         * mean and inverse std, dropout: the mask) */
    int threads;                        /* most threads a kernel may use (work sized for them) */
    bool relu;                          /* apply relu to the output (a fused following relu) */
    int32_t *argmax;                    /* maxpool, training: input index of each output */
    kiln_rng *rng;                      /* dropout, training */
} kiln_fwd_args;

/* Floats of temporary space a node's forward needs with this many threads (conv: one im2col
 * matrix per thread). */
size_t kiln_node_work_floats(const kiln_graph_t *g, int id, int threads);
/* Floats a node's training forward keeps for backward at this batch. */
size_t kiln_node_save_floats(const kiln_graph_t *g, int id, int batch);
/* Runs one node forward. Training-mode batchnorm updates the graph's running statistics. */
void kiln_node_forward(const kiln_graph_t *g, int id, const kiln_fwd_args *a);

/* Forward kernels of the op table (src/core/op_table.c), one signature for all. */
void kiln_forward_legacy(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_softmax_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_binary_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_concat_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_linear_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_matmul_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_norm_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_transpose_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_slice_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_activation_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_unary_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
/* One elementwise math op (sqrt .. clip) on one value, as kiln_unary_fwd computes it. */
float kiln_unary_value(kiln_op op, const kiln_attrs *a, float x);
void kiln_embedding_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_attention_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_reduce_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_upsample_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_conv_transpose_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
void kiln_pad_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
/* The index in pad input x (one example) that element k of a reflect or edge pad's output reads. */
size_t kiln_pad_source(const kiln_node *nd, const kiln_node *x, size_t k);
void kiln_const_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a);
/* Where output coordinate o of an upsample along an axis of `in` samples at r input
 * samples per output sample: nearest (by default PyTorch's floor(o * r)) into *i0 with weight 1,
 * or bilinear (by default align_corners false: the centre (o + 0.5) r - 0.5, clamped at 0)
 * between *i0 and *i1 with weight *w1 on i1; a's coord and rounding choose ONNX's other modes. */
void kiln_upsample_coord(const kiln_attrs *a, int o, int in, double r, int *i0, int *i1, float *w1);
/* The 4 input samples output coordinate o of a bicubic upsample reads along one axis and their
 * weights (Keys' kernel with a's cubic_a; edge samples repeat, or weigh 0 with exclude). */
void kiln_upsample_cubic_taps(const kiln_attrs *a, int o, int in, double r, int idx[4], float wt[4]);
/* Output columns whose bicubic taps are worked out together (stack arrays, no allocation). */
enum { KILN_TAP_BLOCK = 64 };
/* Input pixels per output pixel along axis 0 (h) or 1 (w): 1/scale when a scale was given (as
 * PyTorch and ONNX), else in/out. */
double kiln_upsample_ratio(const kiln_attrs *a, int axis, int in, int out);
/* Saved floats: batchnorm's mean and inverse std, dropout's mask, a norm's per-row statistics
 * (layernorm: mean and rstd; rmsnorm: rstd), attention's probabilities. */
size_t kiln_batchnorm_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch);
size_t kiln_dropout_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch);
size_t kiln_norm_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch);
size_t kiln_attention_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch);
/* One head of attention for one example, by direct loops (small heads: no GEMM call overhead):
 * P (t x s) = softmax(Q K^T / sqrt(dh)) with a causal mask if asked, out = P V (row stride
 * ldo); kt holds dh x s floats of work (the scaled K^T). */
void kiln_attention_head_forward(const float *q, const float *k, const float *v, int ldq, int ldk, int ldv, int t,
                                 int s, int dh, bool causal, float *kt, float *p, float *out, int ldo);
/* row[0..n) = q . K_j for the keys j < n, from kt: K^T (dh rows of sp >= n floats, padded to a
 * multiple of 64 with zeros). */
void kiln_attention_scores_row(const float *q, const float *kt, int dh, int sp, int n, float *row);
/* kiln_attention_scores_row for nr <= 4 query rows (ldq apart) into nr score rows (ldr apart). */
void kiln_attention_scores_rows(const float *q, int ldq, int nr, const float *kt, int dh, int sp, int n, float *rows,
                                int ldr);
/* out[0..dh) (+)= sum over j < n of w[j] v_j (rows of v ldv apart). */
void kiln_attention_weighted_rows(const float *w, int n, const float *v, int ldv, int dh, float *out, bool add);
/* kiln_attention_weighted_rows for nr <= 4 weight rows (ldw apart) into nr output rows (ldo apart). */
void kiln_attention_weighted_rows4(const float *w, int ldw, int nr, int n, const float *v, int ldv, int dh, float *out,
                                   int ldo, bool add);
/* Floats of kiln_attention_head_forward's work space (dh x keys rounded up to 64). */
size_t kiln_attention_head_work_floats(const kiln_graph_t *g, const kiln_node *nd);
/* Attention's work space: one block of scores (or one K^T) per thread. */
size_t kiln_attention_work_floats(const kiln_graph_t *g, const kiln_node *nd, int batch, int threads);
/* A mean/sum node's input shape with its reduced axes set to 1 into kd; returns how many input
 * elements fall into each output element. */
size_t kiln_reduce_kept_dims(const kiln_node *nd, const kiln_node *x, int *kd);
/* A softmax-like op's (outer, n, inner) split of its per-example shape around its axis. */
void kiln_axis_split(const kiln_node *nd, int axis, size_t *outer, int *n, size_t *inner);

/* This thread's index inside a parallel region (0 outside). */
static inline int kiln_thread_id(void) { return omp_get_thread_num(); }
/* Lowers one image x (c, h, w) into col (c*kh*kw rows, ho*wo columns). */
void kiln_im2col(const kiln_node *nd, const kiln_node *in, const float *x, float *col);
/* Floats of one image's im2col matrix. */
size_t kiln_conv2d_col_floats(const kiln_node *nd);
/* y (batch, units) = x (batch, in) * W^T + b. */
void kiln_dense_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch, float *y);
/* kiln_dense_forward with the weight pre-packed for the GEMM kernel (kiln_sgemm_pack_b, W^T):
 * false, with nothing computed, where that kernel does not run (then call kiln_dense_forward). */
bool kiln_dense_forward_packed(const kiln_graph_t *g, const kiln_node *nd, const float *packed, const float *x,
                               int rows, float *y);
/* Whether conv node nd (input in) is depthwise (groups = in = out channels): a direct kernel. */
bool kiln_conv2d_is_depthwise(const kiln_node *nd, const kiln_node *in);
/* Convolution, images in parallel on up to threads threads (0: all): depthwise by the direct
 * kernel, otherwise im2col + GEMM per image with col holding one im2col matrix per thread; act
 * (KILN_OP_INPUT for none) is applied while the image is in cache. */
void kiln_conv2d_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch,
                         float *y, float *col, int threads, kiln_op act);
/* Max pooling; argmax (may be NULL) receives each output's input offset within its plane. */
void kiln_maxpool_forward(const kiln_node *nd, const kiln_node *in, const float *x, int batch,
                          float *y, int32_t *argmax);
/* One plane of 2x2, stride-2, unpadded max pooling (am, if not NULL, gets input offsets). */
void kiln_maxpool_2x2_plane(const float *src, float *dst, int32_t *am, int w, int ho, int wo);
/* Floats of space kiln_conv2d_pool_forward needs with this many threads. */
size_t kiln_conv2d_pool_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads);
/* Training form of conv2d + relu + 2x2 max pool: each image convolved (by Winograd where
 * kiln_winograd_applies, else im2col + GEMM) into per-thread space and
 * pooled while in cache, so the full-size activation is never stored; writes the pooled output
 * and the argmax (the relu's backward is the pool's, through the positive pooled values). */
void kiln_conv2d_pool_forward(const kiln_graph_t *g, const kiln_node *nd, const kiln_node *pool, const float *x,
                              int batch, float *pooled, int32_t *argmax, float *work, int threads);
/* Average pooling, padding counted in the divisor (PyTorch's default). */
void kiln_avgpool_forward(const kiln_node *nd, const kiln_node *in, const float *x, int batch, float *y);
/* Mean over each channel plane. */
void kiln_global_avgpool_forward(const kiln_node *in, const float *x, int batch, float *y);
/* Elementwise activations (relu, leaky_relu, sigmoid, tanh, gelu, silu, hard_swish, relu6) over
 * n values. */
void kiln_activation_forward(kiln_op op, float alpha, const float *x, float *y, size_t n);
/* Batchnorm; training uses batch statistics, stores mean/inv-std in save and updates running stats. */
void kiln_batchnorm_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch,
                            float *y, bool training, float *save);

#endif
