/* Conv2d backward: weight and bias gradients by GEMM against the saved im2col matrix, the input
 * gradient by GEMM into column space and col2im. */
#include <string.h>
#include "ops/gemm.h"
#include "train/backward.h"

/* Adds col (c*kh*kw rows, batch*ho*wo columns) back into image layout dx; each thread owns a
 * channel, so no two threads write the same element. */
static void col2im(const kiln_node *nd, const kiln_node *in, const float *col, int batch, float *dx, bool acc)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2];
    int ho = nd->shape[1], wo = nd->shape[2], kh = a->kernel[0], kw = a->kernel[1];
    size_t p = (size_t)ho * wo, cols = (size_t)batch * p;
    #pragma omp parallel for schedule(static) if (cols * c * kh * kw > 32768)
    for (int ci = 0; ci < c; ci++) {
        if (!acc)
            for (int b = 0; b < batch; b++)
                memset(dx + ((size_t)b * c + ci) * h * w, 0, (size_t)h * w * sizeof(float));
        for (int ki = 0; ki < kh; ki++) {
            for (int kj = 0; kj < kw; kj++) {
                const float *src = col + ((size_t)(ci * kh + ki) * kw + kj) * cols;
                int oy0 = ki * a->dilation[0] - a->pad[0], ox0 = kj * a->dilation[1] - a->pad[1];
                for (int b = 0; b < batch; b++) {
                    float *dst = dx + ((size_t)b * c + ci) * h * w;
                    const float *s = src + (size_t)b * p;
                    for (int oy = 0; oy < ho; oy++) {
                        int iy = oy0 + oy * a->stride[0];
                        if (iy < 0 || iy >= h)
                            continue;
                        float *d = dst + (size_t)iy * w;
                        const float *sr = s + (size_t)oy * wo;
                        for (int ox = 0; ox < wo; ox++) {
                            int ix = ox0 + ox * a->stride[1];
                            if (ix >= 0 && ix < w)
                                d[ix] += sr[ox];
                        }
                    }
                }
            }
        }
    }
}

void kiln_conv2d_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    int groups = nd->a.groups, cout = nd->shape[0], cg = cout / groups, batch = a->batch;
    int kg = nd->params[0].dims[1] * nd->a.kernel[0] * nd->a.kernel[1];
    size_t p = (size_t)nd->shape[1] * nd->shape[2], cols = (size_t)batch * p;
    const float *w = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    float *dyt = a->work, *col = a->save;
    /* batch-major dY (batch, cout, p) -> channel-major (cout, batch*p) */
    #pragma omp parallel for collapse(2) schedule(static) if (cols * cout > 32768)
    for (int co = 0; co < cout; co++)
        for (int b = 0; b < batch; b++)
            memcpy(dyt + (size_t)co * cols + (size_t)b * p, a->dy + ((size_t)b * cout + co) * p,
                   p * sizeof(float));
    if (!nd->a.no_bias) {
        float *db = a->dparams + nd->params[1].offset;
        #pragma omp parallel for schedule(static) if (cols * cout > 32768)
        for (int co = 0; co < cout; co++) {
            const float *s = dyt + (size_t)co * cols;
            float acc = 0.0f;
            for (size_t i = 0; i < cols; i++)
                acc += s[i];
            db[co] = acc;
        }
    }
    for (int gi = 0; gi < groups; gi++) {
        /* dW_g (cg, kg) = dYt_g (cg, cols) * col_g^T (cols, kg) */
        kiln_sgemm(false, true, cg, kg, (int)cols, 1.0f, dyt + (size_t)gi * cg * cols, (int)cols,
                   col + (size_t)gi * kg * cols, (int)cols, 0.0f, dw + (size_t)gi * cg * kg, kg);
    }
    if (!a->dx[0])
        return;
    for (int gi = 0; gi < groups; gi++) {
        /* dcol_g (kg, cols) = W_g^T (kg, cg) * dYt_g (cg, cols), written over the saved col */
        kiln_sgemm(true, false, kg, (int)cols, cg, 1.0f, w + (size_t)gi * cg * kg, kg,
                   dyt + (size_t)gi * cg * cols, (int)cols, 0.0f, col + (size_t)gi * kg * cols, (int)cols);
    }
    col2im(nd, in, col, batch, a->dx[0], a->acc[0]);
}
