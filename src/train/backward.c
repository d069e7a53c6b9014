/* Backward dispatch over ops. */
#include <string.h>
#include "train/backward.h"

size_t kiln_node_backward_work_floats(const kiln_graph_t *g, int id, int threads)
{
    const kiln_node *nd = &g->nodes[id];
    return nd->op == KILN_OP_CONV2D ? kiln_conv2d_backward_work_floats(g, nd, threads) : 0;
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

static void concat_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    size_t off = 0;
    for (int j = 0; j < nd->n_inputs; j++) {
        size_t m = g->nodes[nd->inputs[j]].numel;
        if (a->dx[j]) {
            for (int b = 0; b < a->batch; b++) {
                const float *s = a->dy + (size_t)b * nd->numel + off;
                float *d = a->dx[j] + (size_t)b * m;
                for (size_t i = 0; i < m; i++)
                    d[i] = a->acc[j] ? d[i] + s[i] : s[i];
            }
        }
        off += m;
    }
}

void kiln_node_backward(const kiln_graph_t *g, int id, const kiln_bwd_args *a)
{
    const kiln_node *nd = &g->nodes[id];
    switch (nd->op) {
    case KILN_OP_DENSE:
        kiln_dense_backward(g, nd, a);
        break;
    case KILN_OP_CONV2D:
        kiln_conv2d_backward(g, nd, a);
        break;
    case KILN_OP_MAXPOOL2D: case KILN_OP_AVGPOOL2D: case KILN_OP_GLOBAL_AVGPOOL:
        kiln_pool_backward(g, nd, a);
        break;
    case KILN_OP_RELU: case KILN_OP_LEAKY_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH:
    case KILN_OP_GELU: case KILN_OP_SOFTMAX: case KILN_OP_DROPOUT:
        kiln_activation_backward(g, nd, a);
        break;
    case KILN_OP_BATCHNORM:
        kiln_batchnorm_backward(g, nd, a);
        break;
    case KILN_OP_FLATTEN: case KILN_OP_ADD:
        pass_through(g, nd, a);
        break;
    case KILN_OP_CONCAT:
        concat_backward(g, nd, a);
        break;
    default:
        break;
    }
}
