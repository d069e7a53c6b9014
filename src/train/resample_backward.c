/* Backward of upsampling, padding and the transposed convolution. */
#include <string.h>
#include "train/backward.h"

void kiln_upsample_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* each output sample took (1 - wy)(1 - wx), ... of four inputs: it gives its gradient back
     * with the same weights */
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    int h = x->dims[1], w = x->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    double ry = kiln_upsample_ratio(&nd->a, 0, h, ho), rx = kiln_upsample_ratio(&nd->a, 1, w, wo);
    size_t planes = (size_t)x->dims[0] * (size_t)a->batch;
    if (!a->acc[0])
        memset(a->dx[0], 0, planes * h * w * sizeof(float));
    for (int x0 = 0; x0 < wo && nd->a.mode == 2; x0 += KILN_TAP_BLOCK) {   /* bicubic: 4 x 4 taps */
        int nx = wo - x0 < KILN_TAP_BLOCK ? wo - x0 : KILN_TAP_BLOCK, ix[KILN_TAP_BLOCK][4];
        float wx[KILN_TAP_BLOCK][4];
        for (int j = 0; j < nx; j++)
            kiln_upsample_cubic_taps(&nd->a, x0 + j, w, rx, ix[j], wx[j]);
        for (int oy = 0; oy < ho; oy++) {
            int iy[4];
            float wy[4];
            kiln_upsample_cubic_taps(&nd->a, oy, h, ry, iy, wy);
            for (size_t p = 0; p < planes; p++) {
                float *dst = a->dx[0] + p * h * w;
                const float *dy = a->dy + p * ho * wo + (size_t)oy * wo + x0;
                for (int j = 0; j < nx; j++)
                    for (int ty = 0; ty < 4; ty++)
                        for (int tx = 0; tx < 4; tx++)
                            dst[(size_t)iy[ty] * w + ix[j][tx]] += dy[j] * wy[ty] * wx[j][tx];
            }
        }
    }
    for (size_t p = 0; p < planes && nd->a.mode != 2; p++) {
        float *dst = a->dx[0] + p * h * w;
        const float *dy = a->dy + p * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0, y1, x0, x1;
            float wy, wx;
            kiln_upsample_coord(&nd->a, oy, h, ry, &y0, &y1, &wy);
            for (int ox = 0; ox < wo; ox++) {
                kiln_upsample_coord(&nd->a, ox, w, rx, &x0, &x1, &wx);
                float d = dy[oy * wo + ox];
                dst[y0 * w + x0] += d * (1 - wy) * (1 - wx);
                dst[y0 * w + x1] += d * (1 - wy) * wx;
                dst[y1 * w + x0] += d * wy * (1 - wx);
                dst[y1 * w + x1] += d * wy * wx;
            }
        }
    }
}

void kiln_pad_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    int r = x->rank;
    if (r == 0) {
        for (int b = 0; b < a->batch; b++)
            a->dx[0][b] = a->acc[0] ? a->dx[0][b] + a->dy[b] : a->dy[b];
        return;
    }
    if (nd->a.mode != 0) {   /* reflect, edge: each output element back to its source */
        if (!a->acc[0])
            memset(a->dx[0], 0, x->numel * (size_t)a->batch * sizeof(float));
        for (int b = 0; b < a->batch; b++)
            for (size_t k = 0; k < nd->numel; k++)
                a->dx[0][(size_t)b * x->numel + kiln_pad_source(nd, x, k)] += a->dy[(size_t)b * nd->numel + k];
        return;
    }
    size_t ost[KILN_MAX_RANK], s = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = s;
        s *= (size_t)nd->dims[i];
    }
    size_t base = 0;
    for (int i = 0; i < r; i++)
        base += (size_t)nd->a.pads[i] * ost[i];
    size_t inner = (size_t)x->dims[r - 1];
    for (int b = 0; b < a->batch; b++) {
        float *dst = a->dx[0] + (size_t)b * x->numel;
        const float *src = a->dy + (size_t)b * nd->numel + base;
        int idx[KILN_MAX_RANK] = {0};
        for (size_t o = 0; o < x->numel; o += inner) {
            size_t off = 0;
            for (int i = 0; i < r - 1; i++)
                off += (size_t)idx[i] * ost[i];
            for (size_t k = 0; k < inner; k++)
                dst[o + k] = a->acc[0] ? dst[o + k] + src[off + k] : src[off + k];
            for (int i = r - 2; i >= 0; i--) {
                if (++idx[i] < x->dims[i])
                    break;
                idx[i] = 0;
            }
        }
    }
}

void kiln_conv_transpose_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* In the forward pass this was y[o, iy s - p + ky d, ix s - p + kx d] += x[c, iy, ix] W[c, o, ky, kx].
     * So dx[c, iy, ix] = sum over o, ky, kx of dy[o, oy, ox] W[c, o, ky, kx], dW the same pairs'
     * x dy summed over the batch, db the sum of dy per channel. */
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    const kiln_attrs *at = &nd->a;
    int ci = x->dims[0], h = x->dims[1], w = x->dims[2], co = nd->dims[0], ho = nd->dims[1], wo = nd->dims[2];
    int kh = at->kernel[0], kw = at->kernel[1];
    const float *wt = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    memset(dw, 0, nd->params[0].numel * sizeof(float));
    if (!at->no_bias) {
        float *db = a->dparams + nd->params[1].offset;
        memset(db, 0, (size_t)co * sizeof(float));
        for (int b = 0; b < a->batch; b++)
            for (int o = 0; o < co; o++)
                for (int i = 0; i < ho * wo; i++)
                    db[o] += a->dy[(size_t)b * nd->numel + (size_t)o * ho * wo + i];
    }
    for (int b = 0; b < a->batch; b++) {
        const float *src = a->in[0] + (size_t)b * x->numel, *dy = a->dy + (size_t)b * nd->numel;
        float *dx = a->dx[0] ? a->dx[0] + (size_t)b * x->numel : NULL;
        for (int c = 0; c < ci; c++)
            for (int iy = 0; iy < h; iy++)
                for (int ix = 0; ix < w; ix++) {
                    size_t xi = ((size_t)c * h + iy) * w + ix;
                    float v = src[xi], g_sum = 0.0f;
                    for (int ky = 0; ky < kh; ky++) {
                        int oy = iy * at->stride[0] - at->pad[0] + ky * at->dilation[0];
                        if (oy < 0 || oy >= ho)
                            continue;
                        for (int kx = 0; kx < kw; kx++) {
                            int ox = ix * at->stride[1] - at->pad[1] + kx * at->dilation[1];
                            if (ox < 0 || ox >= wo)
                                continue;
                            size_t k = ((size_t)c * co * kh + ky) * kw + kx;
                            const float *d = dy + (size_t)oy * wo + ox;
                            for (int o = 0; o < co; o++) {
                                float gy = d[(size_t)o * ho * wo];
                                g_sum += gy * wt[k + (size_t)o * kh * kw];
                                dw[k + (size_t)o * kh * kw] += v * gy;
                            }
                        }
                    }
                    if (dx)
                        dx[xi] = a->acc[0] ? dx[xi] + g_sum : g_sum;
                }
    }
}
