/* Dense layer backward. */
#include <string.h>
#include "ops/gemm.h"
#include "train/backward.h"

void kiln_dense_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0], b = a->batch;   /* b: rows */
    const float *w = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    /* dW (out, in) = dY^T (out, batch) * X (batch, in) */
    kiln_sgemm(true, false, out_f, in_f, b, 1.0f, a->dy, out_f, a->in[0], in_f, 0.0f, dw, in_f);
    if (!nd->a.no_bias) {
        float *db = a->dparams + nd->params[1].offset;
        memset(db, 0, (size_t)out_f * sizeof(float));
        for (int i = 0; i < b; i++)
            for (int o = 0; o < out_f; o++)
                db[o] += a->dy[(size_t)i * out_f + o];
    }
    /* dX (batch, in) = dY (batch, out) * W (out, in) */
    if (a->dx[0])
        kiln_sgemm(false, false, b, in_f, out_f, 1.0f, a->dy, out_f, w, in_f, a->acc[0] ? 1.0f : 0.0f,
                   a->dx[0], in_f);
}
