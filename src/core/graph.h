/* Internal layout of the graph IR, shared by libkiln and libkiln_train. */
#ifndef KILN_CORE_GRAPH_H
#define KILN_CORE_GRAPH_H

#include "kiln/kiln.h"

/* One tensor a node owns, as an offset into the graph's flat parameter or buffer array. */
typedef struct {
    char name[16];          /* "weight", "bias", "running_mean", "running_var" */
    int ndim;
    int dims[4];
    size_t offset;          /* floats from the start of params (trainable) or buffers */
    size_t numel;
    bool trainable;         /* false: lives in buffers (batchnorm running statistics) */
} kiln_param_ref;

/* One layer: op, inputs, resolved attributes, per-example output shape, owned tensors. */
typedef struct {
    kiln_op op;
    char name[KILN_NAME_LEN];
    int inputs[KILN_MAX_INPUTS];
    int n_inputs;
    kiln_attrs a;           /* with defaults resolved */
    int ndim;               /* 1 (features) or 3 (c, h, w) */
    int shape[3];           /* unused dims are 1 */
    size_t numel;
    int n_params;
    kiln_param_ref params[KILN_MAX_PARAMS];
} kiln_node;

struct kiln_graph {
    kiln_node *nodes;
    int n, cap;
    float *params;          /* every trainable tensor, contiguous */
    size_t n_params;
    float *buffers;         /* non-trainable state (running statistics) */
    size_t n_buffers;
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

/* Finds a node by name; -1 if none. */
int kiln_graph_find(const struct kiln_graph *g, const char *name);

#endif
