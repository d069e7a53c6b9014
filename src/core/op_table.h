/* The op table: one record per op (docs/IR.md) with its spec keyword, arity, shape inference,
 * forward kernel, and space and memory rules. libkiln_train keeps the backward kernels in a
 * parallel table (src/train/backward.c). */
#ifndef KILN_CORE_OP_TABLE_H
#define KILN_CORE_OP_TABLE_H

#include "core/graph.h"

struct kiln_fwd_args;

/* How an op's output relates to its first input's buffer. */
typedef enum {
    KILN_MEM_OWN,       /* a buffer of its own */
    KILN_MEM_IN_PLACE,  /* may write over input 0 when nothing later reads it */
    KILN_MEM_VIEW       /* input 0's bytes under another shape: no buffer */
} kiln_mem_rule;

/* When an op is evaluated at graph construction (src/core/fold.c). */
typedef enum {
    KILN_FOLD_NEVER,    /* runs in kernels; an i64/bool input is an error */
    KILN_FOLD_CONST,    /* folded into a const when every input is one; else runs (f32) */
    KILN_FOLD_ONLY      /* exists only folded: an input computed at run time is an error */
} kiln_fold_rule;

/* One op's record. */
typedef struct {
    const char *name;          /* spec keyword */
    int min_inputs, max_inputs;
    kiln_mem_rule mem;
    /* Sets nd's output tensor from its inputs and attributes and reserves its parameters;
     * an error names nd, the op and the shapes. */
    kiln_status (*infer)(kiln_graph_t *g, kiln_node *nd);
    /* Computes nd's output (ops/ops.h: kiln_fwd_args). */
    void (*forward)(const kiln_graph_t *g, const kiln_node *nd, const struct kiln_fwd_args *a);
    /* Floats kept for backward at this batch (NULL: none). */
    size_t (*save_floats)(const kiln_graph_t *g, const kiln_node *nd, int batch);
    /* Floats of temporary space with this many threads at this batch (NULL: none). */
    size_t (*work_floats)(const kiln_graph_t *g, const kiln_node *nd, int batch, int threads);
    kiln_fold_rule fold;       /* constant folding (KILN_FOLD_NEVER unless given) */
} kiln_op_def;

/* The record of op (op in range). */
const kiln_op_def *kiln_op_def_of(kiln_op op);
/* Whether op's output is a view of its first input. */
static inline bool kiln_op_is_view(kiln_op op) { return kiln_op_def_of(op)->mem == KILN_MEM_VIEW; }

/* Whether op is an activation that dense, conv2d, batchnorm or add may carry fused (act=). */
static inline bool kiln_op_fusable_act(kiln_op op)
{
    return op == KILN_OP_RELU || op == KILN_OP_LEAKY_RELU || op == KILN_OP_SIGMOID || op == KILN_OP_TANH ||
           op == KILN_OP_GELU;
}

/* Shape inference of the ops from before the N-d IR (src/core/graph.c). */
kiln_status kiln_infer_legacy(kiln_graph_t *g, kiln_node *nd);
/* Shape inference of the N-d ops (src/core/shape.c). */
kiln_status kiln_infer_clip(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_param(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_linear(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_matmul(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_norm(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_softmax(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_reshape(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_transpose(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_slice(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_concat(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_broadcast(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_same(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_embedding(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_attention(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_reduce(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_upsample(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_conv_transpose(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_pad(kiln_graph_t *g, kiln_node *nd);
/* Constants and the ops on them (src/core/const.c). */
kiln_status kiln_infer_const(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_shape(kiln_graph_t *g, kiln_node *nd);
kiln_status kiln_infer_cast(kiln_graph_t *g, kiln_node *nd);

/* Evaluates nd, just inferred, when its fold rule and inputs allow and turns it into a const
 * holding the result; rejects i64/bool inputs anywhere else (src/core/fold.c). */
kiln_status kiln_fold_node(kiln_graph_t *g, kiln_node *nd);
/* The i64/bool values of const node nd (numel of them). */
static inline const int64_t *kiln_const_ints(const kiln_node *nd) { return (const int64_t *)nd->a.values; }

/* Reserves a parameter (trainable) or buffer tensor of the given dims for nd. */
kiln_status kiln_node_add_param(kiln_graph_t *g, kiln_node *nd, const char *name, bool trainable,
                                int rank, const int *dims);
/* Resolves a possibly negative axis of a rank-r tensor; -1 if out of range. */
static inline int kiln_axis(int axis, int r)
{
    int k = axis < 0 ? axis + r : axis;
    return k >= 0 && k < r ? k : -1;
}
/* Writes "AxBxC" (or "scalar") for a shape into buf. */
const char *kiln_shape_str(char *buf, size_t n, int rank, const int *dims);

#endif
