/* Internal layout of the graph IR, shared by libkiln and libkiln_train. */
#ifndef KILN_CORE_GRAPH_H
#define KILN_CORE_GRAPH_H

#include "kiln/kiln.h"

/* One tensor a node owns, as an offset into the graph's flat parameter or buffer array. */
typedef struct {
    char name[16];          /* "weight", "bias", "running_mean", "running_var" */
    int ndim;
    int dims[KILN_MAX_RANK];
    size_t offset;          /* floats from the start of params (trainable) or buffers */
    size_t numel;
    bool trainable;         /* false: lives in buffers (batchnorm running statistics) */
} kiln_param_ref;

/* One layer: op, inputs, resolved attributes, output tensor, owned tensors (docs/IR.md). */
typedef struct {
    kiln_op op;
    char name[KILN_NAME_LEN];
    int inputs[KILN_MAX_INPUTS];
    int n_inputs;
    kiln_attrs a;           /* with defaults resolved */
    kiln_dtype dtype;       /* of the output: F32, I32 for token inputs, I64/BOOL for constants */
    int rank;               /* per-example rank, 0..KILN_MAX_RANK: (c, h, w) images, (n) vectors,
                             * (tokens, width) sequences */
    int dims[KILN_MAX_RANK];/* per-example dims; 1 past the rank */
    size_t numel;           /* per-example elements (product of dims) */
    bool batched;           /* holds batch examples (false: a param, one copy for all) */
    int n_params;
    kiln_param_ref params[KILN_MAX_PARAMS];
} kiln_node;

struct kiln_graph {
    kiln_node *nodes;
    int n, cap;
    int outputs[KILN_MAX_OUTPUTS];  /* the graph's outputs, by node id; none declared: the last node */
    int n_outputs;
    float *params;          /* every trainable tensor, contiguous */
    size_t n_params;
    float *buffers;         /* non-trainable state (running statistics, f32 constants) */
    size_t n_buffers;
    int64_t **consts;       /* the values of each i64/bool constant, one block per const node (so a
                             * node's a.values stays valid while the graph grows) */
    int n_consts, cap_consts;
    size_t n_const_values;  /* values in all blocks */
};

/* Pointer to a node's i-th tensor inside the graph's arrays. */
static inline float *kiln_node_tensor(const struct kiln_graph *g, const kiln_node *nd, int i)
{
    const kiln_param_ref *p = &nd->params[i];
    return (p->trainable ? g->params : g->buffers) + p->offset;
}

/* Conv/pool output extent along one axis. */
static inline int kiln_conv_out(int in, int k, int s, int p, int d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* Whether dt is a dtype only constants have (i64, bool: shape arithmetic, folded at load). */
static inline bool kiln_dtype_const_only(kiln_dtype dt)
{
    return dt == KILN_DT_I64 || dt == KILN_DT_BOOL;
}

/* Sets a node's per-example rank and dims (1 past the rank) and its numel. */
void kiln_node_set_shape(kiln_node *nd, int rank, const int *dims);

/* Frees the i64/bool constant blocks past the first keep (a node that failed to be added). */
void kiln_graph_drop_consts(struct kiln_graph *g, int keep);

/* Finds a node by name; -1 if none. */
int kiln_graph_find(const struct kiln_graph *g, const char *name);

#endif
