/* Fully connected layer forward. */
#include <string.h>
#include "ops/gemm.h"
#include "ops/ops.h"

void kiln_dense_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch, float *y)
{
    int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0];
    const float *w = kiln_node_tensor(g, nd, 0);
    float beta = 0.0f;
    if (!nd->a.no_bias) {
        const float *b = kiln_node_tensor(g, nd, 1);
        for (int i = 0; i < batch; i++)
            memcpy(y + (size_t)i * out_f, b, (size_t)out_f * sizeof(float));
        beta = 1.0f;
    }
    kiln_sgemm(false, true, batch, out_f, in_f, 1.0f, x, in_f, w, in_f, beta, y, out_f);
}
