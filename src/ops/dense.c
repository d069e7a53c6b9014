/* Fully connected layer forward. */
#include <string.h>
#include "ops/gemm.h"
#include "ops/ops.h"

void kiln_dense_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch, float *y)
{
    int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0];
    const float *w = kiln_node_tensor(g, nd, 0);
    if (nd->a.no_bias)
        kiln_sgemm(false, true, batch, out_f, in_f, 1.0f, x, in_f, w, in_f, 0.0f, y, out_f);
    else
        kiln_sgemm_bias(true, batch, out_f, in_f, x, in_f, w, in_f, kiln_node_tensor(g, nd, 1), y, out_f);
}

bool kiln_dense_forward_packed(const kiln_graph_t *g, const kiln_node *nd, const float *packed, const float *x,
                               int rows, float *y)
{
    int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0];
    const float *bias = nd->a.no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    return kiln_sgemm_prepacked(rows, out_f, in_f, x, in_f, packed, bias, y, out_f);
}
