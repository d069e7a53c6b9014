/* 2-D convolution forward by im2col + GEMM over the whole batch at once. */
#include <string.h>
#include "ops/gemm.h"
#include "ops/ops.h"

void kiln_im2col(const kiln_node *nd, const kiln_node *in, const float *x, int batch, float *col)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2];
    int ho = nd->shape[1], wo = nd->shape[2], kh = a->kernel[0], kw = a->kernel[1];
    size_t p = (size_t)ho * wo, cols = (size_t)batch * p;
    int rows = c * kh * kw;
    #pragma omp parallel for schedule(static) if (cols * rows > 32768)
    for (int r = 0; r < rows; r++) {
        int ci = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
        int oy0 = ki * a->dilation[0] - a->pad[0], ox0 = kj * a->dilation[1] - a->pad[1];
        float *dst = col + (size_t)r * cols;
        for (int b = 0; b < batch; b++) {
            const float *src = x + ((size_t)b * c + ci) * h * w;
            for (int oy = 0; oy < ho; oy++) {
                int iy = oy0 + oy * a->stride[0];
                float *d = dst + (size_t)b * p + (size_t)oy * wo;
                if (iy < 0 || iy >= h) {
                    memset(d, 0, (size_t)wo * sizeof(float));
                    continue;
                }
                const float *s = src + (size_t)iy * w;
                if (a->stride[1] == 1) {
                    for (int ox = 0; ox < wo; ox++) {
                        int ix = ox0 + ox;
                        d[ox] = (ix >= 0 && ix < w) ? s[ix] : 0.0f;
                    }
                } else {
                    for (int ox = 0; ox < wo; ox++) {
                        int ix = ox0 + ox * a->stride[1];
                        d[ox] = (ix >= 0 && ix < w) ? s[ix] : 0.0f;
                    }
                }
            }
        }
    }
}

void kiln_conv2d_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch,
                         float *y, float *col, float *work)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    int groups = nd->a.groups, cout = nd->shape[0], cg = cout / groups;
    int kg = nd->params[0].dims[1] * nd->a.kernel[0] * nd->a.kernel[1];
    size_t p = (size_t)nd->shape[1] * nd->shape[2], cols = (size_t)batch * p;
    const float *w = kiln_node_tensor(g, nd, 0);
    const float *bias = nd->a.no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    kiln_im2col(nd, in, x, batch, col);
    for (int gi = 0; gi < groups; gi++)
        kiln_sgemm(false, false, cg, (int)cols, kg, 1.0f, w + (size_t)gi * cg * kg, kg,
                   col + (size_t)gi * kg * cols, (int)cols, 0.0f, work + (size_t)gi * cg * cols, (int)cols);
    /* channel-major (cout, batch*p) -> batch-major (batch, cout, p), adding the bias */
    #pragma omp parallel for collapse(2) schedule(static) if (cols * cout > 32768)
    for (int b = 0; b < batch; b++) {
        for (int co = 0; co < cout; co++) {
            const float *s = work + (size_t)co * cols + (size_t)b * p;
            float *d = y + ((size_t)b * cout + co) * p;
            float bv = bias ? bias[co] : 0.0f;
            for (size_t i = 0; i < p; i++)
                d[i] = s[i] + bv;
        }
    }
}
