/* Dense layer backward. */
#include <string.h>
#include "ops/gemm.h"
#include "train/backward.h"

/* db[c] = the sum over the rows of dy[., c]: blocks of 16 columns on the threads, each column
 * summed in row order by one thread (the same result for any thread count). */
static void bias_grad(const float *dy, int rows, int n, float *db, int threads)
{
    int blocks = (n + 15) / 16;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1 && (size_t)rows * n > 65536)
    for (int blk = 0; blk < blocks; blk++) {
        int c0 = 16 * blk, w = n - c0 < 16 ? n - c0 : 16;
        float acc[16] = {0};
        for (int i = 0; i < rows; i++) {
            const float *r = dy + (size_t)i * n + c0;
            for (int c = 0; c < w; c++)
                acc[c] += r[c];
        }
        for (int c = 0; c < w; c++)
            db[c0 + c] = acc[c];
    }
}

void kiln_dense_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0], b = a->batch;   /* b: rows */
    const float *w = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    /* dW (out, in) = dY^T (out, batch) * X (batch, in) */
    kiln_sgemm(true, false, out_f, in_f, b, 1.0f, a->dy, out_f, a->in[0], in_f, 0.0f, dw, in_f);
    if (!nd->a.no_bias)
        bias_grad(a->dy, b, out_f, a->dparams + nd->params[1].offset, a->threads);
    /* dX (batch, in) = dY (batch, out) * W (out, in) */
    if (a->dx[0])
        kiln_sgemm(false, false, b, in_f, out_f, 1.0f, a->dy, out_f, w, in_f, a->acc[0] ? 1.0f : 0.0f,
                   a->dx[0], in_f);
}
