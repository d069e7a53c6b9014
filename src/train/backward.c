/* The backward table: one backward kernel per op, parallel to the op table of libkiln. */
#include <string.h>
#include "train/backward.h"

size_t kiln_node_backward_work_floats(const kiln_graph_t *g, int id, int batch, int threads)
{
    const kiln_node *nd = &g->nodes[id];
    switch (nd->op) {
    case KILN_OP_CONV2D:
        return kiln_conv2d_backward_work_floats(g, nd, threads);
    case KILN_OP_MUL: case KILN_OP_DIV: case KILN_OP_POW: case KILN_OP_MIN: case KILN_OP_MAX:
        return kiln_binary_backward_work_floats(g, nd, nd->batched ? batch : 1);
    case KILN_OP_ATTENTION:
        return kiln_attention_backward_work_floats(g, nd, threads);
    case KILN_OP_LAYERNORM: case KILN_OP_RMSNORM:
        return kiln_norm_backward_work_floats(nd, threads);
    default:
        return 0;
    }
}

/* Adds (or copies) dy into each input gradient: add, flatten, identity. */
static void pass_through(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    size_t n = nd->numel * (size_t)a->batch;
    for (int j = 0; j < nd->n_inputs; j++) {
        float *dx = a->dx[j];
        if (!dx)
            continue;
        if (!a->acc[j]) {
            if (dx != a->dy)   /* a flatten sharing its input's gradient buffer: nothing to do */
                memcpy(dx, a->dy, n * sizeof(float));
        }
        else
            for (size_t i = 0; i < n; i++)
                dx[i] += a->dy[i];
    }
}

typedef void (*backward_fn)(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a);

static const backward_fn backward_of[] = {
    [KILN_OP_INPUT] = NULL,
    [KILN_OP_DENSE] = kiln_dense_backward,
    [KILN_OP_CONV2D] = kiln_conv2d_backward,
    [KILN_OP_MAXPOOL2D] = kiln_pool_backward,
    [KILN_OP_AVGPOOL2D] = kiln_pool_backward,
    [KILN_OP_GLOBAL_AVGPOOL] = kiln_pool_backward,
    [KILN_OP_RELU] = kiln_activation_backward,
    [KILN_OP_LEAKY_RELU] = kiln_activation_backward,
    [KILN_OP_SIGMOID] = kiln_activation_backward,
    [KILN_OP_TANH] = kiln_activation_backward,
    [KILN_OP_GELU] = kiln_activation_backward,
    [KILN_OP_SOFTMAX] = kiln_softmax_backward,
    [KILN_OP_BATCHNORM] = kiln_batchnorm_backward,
    [KILN_OP_DROPOUT] = kiln_activation_backward,
    [KILN_OP_FLATTEN] = pass_through,
    [KILN_OP_ADD] = kiln_binary_backward,
    [KILN_OP_CONCAT] = kiln_concat_backward,
    [KILN_OP_PARAM] = kiln_param_backward,
    [KILN_OP_LINEAR] = kiln_linear_backward,
    [KILN_OP_MATMUL] = kiln_matmul_backward,
    [KILN_OP_LAYERNORM] = kiln_norm_backward,
    [KILN_OP_RMSNORM] = kiln_norm_backward,
    [KILN_OP_LOG_SOFTMAX] = kiln_softmax_backward,
    [KILN_OP_RESHAPE] = pass_through,
    [KILN_OP_TRANSPOSE] = kiln_transpose_backward,
    [KILN_OP_SLICE] = kiln_slice_backward,
    [KILN_OP_SUB] = kiln_binary_backward,
    [KILN_OP_MUL] = kiln_binary_backward,
    [KILN_OP_DIV] = kiln_binary_backward,
    [KILN_OP_SILU] = kiln_activation_backward,
    [KILN_OP_HARD_SWISH] = kiln_activation_backward,
    [KILN_OP_RELU6] = kiln_activation_backward,
    [KILN_OP_EMBEDDING] = kiln_embedding_backward,
    [KILN_OP_ATTENTION] = kiln_attention_backward,
    [KILN_OP_MEAN] = kiln_reduce_backward,
    [KILN_OP_SUM] = kiln_reduce_backward,
    [KILN_OP_UPSAMPLE] = kiln_upsample_backward,
    [KILN_OP_CONV_TRANSPOSE2D] = kiln_conv_transpose_backward,
    [KILN_OP_PAD] = kiln_pad_backward,
    /* constants have no gradient; the other ops on them never reach a tape (folded) */
    [KILN_OP_CONST] = NULL, [KILN_OP_SHAPE] = NULL, [KILN_OP_EQUAL] = NULL, [KILN_OP_LESS] = NULL,
    [KILN_OP_GREATER] = NULL, [KILN_OP_WHERE] = NULL, [KILN_OP_CAST] = NULL, [KILN_OP_NOT] = NULL,
    [KILN_OP_SQRT] = kiln_unary_backward, [KILN_OP_EXP] = kiln_unary_backward, [KILN_OP_LOG] = kiln_unary_backward,
    [KILN_OP_ABS] = kiln_unary_backward, [KILN_OP_NEG] = kiln_unary_backward,
    [KILN_OP_RECIPROCAL] = kiln_unary_backward, [KILN_OP_FLOOR] = kiln_unary_backward,
    [KILN_OP_CEIL] = kiln_unary_backward, [KILN_OP_ROUND] = kiln_unary_backward,
    [KILN_OP_ERF] = kiln_unary_backward, [KILN_OP_CLIP] = kiln_unary_backward,
    [KILN_OP_POW] = kiln_binary_backward, [KILN_OP_MIN] = kiln_binary_backward, [KILN_OP_MAX] = kiln_binary_backward,
};
_Static_assert(sizeof backward_of / sizeof backward_of[0] == KILN_OP_COUNT, "every op needs a backward entry");

void kiln_node_backward(const kiln_graph_t *g, int id, const kiln_bwd_args *a)
{
    const kiln_node *nd = &g->nodes[id];
    if (backward_of[nd->op])
        backward_of[nd->op](g, nd, a);
}
