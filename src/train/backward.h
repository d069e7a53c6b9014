/* Backward kernels: each computes input gradients (written, or added when acc is true) and the
 * node's parameter gradients (written) from the output gradient dy. */
#ifndef KILN_TRAIN_BACKWARD_H
#define KILN_TRAIN_BACKWARD_H

#include "ops/ops.h"

/* What one node's backward reads and writes. */
typedef struct {
    int batch;                          /* examples of a batched node; 1 for an unbatched one */
    int in_batch[KILN_MAX_INPUTS];      /* examples each input holds (batch, or 1 if unbatched) */
    const float *in[KILN_MAX_INPUTS];   /* forward inputs */
    const float *out;                   /* forward output */
    const float *dy;                    /* gradient of the output */
    float *dx[KILN_MAX_INPUTS];         /* input gradients; NULL where not needed */
    bool acc[KILN_MAX_INPUTS];          /* add into dx (another consumer wrote first) */
    float *dparams;                     /* the graph-wide parameter gradient array */
    float *save;                        /* what the training forward kept */
    const int32_t *argmax;              /* maxpool */
    float *work;                        /* temporary, kiln_node_backward_work_floats() */
    int threads;                        /* most threads a kernel may use (work sized for them) */
    bool relu_mask;                     /* maxpool over a fused relu: pass gradient only where the
                                         * pooled value is positive (the relu's backward) */
} kiln_bwd_args;

/* Floats of temporary space a node's backward needs at this batch. */
size_t kiln_node_backward_work_floats(const kiln_graph_t *g, int id, int batch, int threads);
/* Runs one node backward. */
void kiln_node_backward(const kiln_graph_t *g, int id, const kiln_bwd_args *a);

/* Dense backward: dW, db and dx. */
void kiln_dense_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* Conv2d backward: im2col recomputed per image in cache, GEMM for dW; dx by Winograd (3x3 stride
 * 1) or by GEMM for the column gradient and col2im. */
void kiln_conv2d_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* Floats conv2d backward needs: per thread partial gradients and one im2col matrix, and the
 * Winograd kernel of the input gradient where that applies. */
size_t kiln_conv2d_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads);
/* Pooling backward (max, average, global average). */
void kiln_pool_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* Elementwise math backward (sqrt .. clip; floor, ceil and round pass no gradient). */
void kiln_unary_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* Elementwise activations and dropout backward. */
void kiln_activation_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* The N-d ops' backward (src/train/tensor_backward.c, norm_backward.c, matmul_backward.c,
 * attention_backward.c), one signature for all. */
void kiln_softmax_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_binary_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_concat_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_transpose_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_slice_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_reduce_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_embedding_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_param_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_norm_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_linear_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_matmul_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_attention_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_upsample_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_pad_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
void kiln_conv_transpose_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);
/* Work space of layer/RMS norm backward: each thread's dw and db. */
size_t kiln_norm_backward_work_floats(const kiln_node *nd, int threads);
/* Work space of mul/div backward (the other operand broadcast: batch x numel). */
size_t kiln_binary_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int batch);
/* Work space of attention backward: one probability gradient (queries x keys) per thread. */
size_t kiln_attention_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads);
/* Batchnorm backward in training mode (batch statistics). */
void kiln_batchnorm_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);

#endif
