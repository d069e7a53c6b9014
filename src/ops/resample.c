/* Upsampling (nearest, bilinear, bicubic) and constant padding: forward kernels. */
#include <math.h>
#include <string.h>
#include "ops/ops.h"

double kiln_upsample_ratio(const kiln_attrs *a, int axis, int in, int out)
{
    return a->scale[axis] > 0 ? 1.0 / a->scale[axis] : (double)in / out;
}

/* The source coordinate of output sample o (a's coord; the mode's own by default). */
static double source_coord(const kiln_attrs *a, int o, int in, double r)
{
    int coord = a->coord ? a->coord : a->mode == 0 ? 2 : 1;
    /* align-corners spans in - 1 over the output's length less one: in / r, unrounded when a scale
     * was given (ONNX's in * scale) */
    double len = in / r;
    switch (coord) {
    case 2: return o * r;
    case 3: return len > 1 ? o * (double)(in - 1) / (len - 1) : 0.0;
    case 4: return len > 1 ? (o + 0.5) * r - 0.5 : 0.0;
    default: return (o + 0.5) * r - 0.5;
    }
}

void kiln_upsample_coord(const kiln_attrs *a, int o, int in, double r, int *i0, int *i1, float *w1)
{
    double c = source_coord(a, o, in, r);
    if (a->mode == 0) {
        double f = a->rounding == 1 ? ceil(c - 0.5) : a->rounding == 2 ? floor(c + 0.5)
                 : a->rounding == 3 ? ceil(c) : floor(c);
        *i0 = *i1 = f < 0 ? 0 : f > in - 1 ? in - 1 : (int)f;
        *w1 = 0.0f;
        return;
    }
    c = c < 0 ? 0 : c;
    int i = (int)c;
    *i0 = i < in - 1 ? i : in - 1;
    *i1 = i + 1 < in ? i + 1 : in - 1;
    *w1 = (float)(c - i);
}

void kiln_upsample_cubic_taps(const kiln_attrs *a, int o, int in, double r, int idx[4], float wt[4])
{
    double c = source_coord(a, o, in, r), f = floor(c), s = c - f, A = a->cubic_a != 0.0f ? a->cubic_a : -0.75;
    double x[4] = {s + 1, s, 1 - s, 2 - s}, w[4], sum = 0;
    for (int t = 0; t < 4; t++) {   /* Keys' kernel: |x| <= 1 and 1 < |x| < 2 */
        w[t] = x[t] <= 1 ? ((A + 2) * x[t] - (A + 3)) * x[t] * x[t] + 1
                         : ((A * x[t] - 5 * A) * x[t] + 8 * A) * x[t] - 4 * A;
        int i = (int)f - 1 + t;
        if (a->exclude && (i < 0 || i >= in))
            w[t] = 0;
        sum += w[t];
        idx[t] = i < 0 ? 0 : i >= in ? in - 1 : i;
    }
    for (int t = 0; t < 4; t++)
        wt[t] = (float)(a->exclude && sum != 0 ? w[t] / sum : w[t]);
}

/* Bicubic upsampling: 4 x 4 taps per output sample; the column taps are worked out once per block
 * of KILN_TAP_BLOCK columns for every plane and row. */
static void upsample_cubic(const kiln_node *nd, const float *x, float *y, size_t planes, int h, int w)
{
    int ho = nd->dims[1], wo = nd->dims[2];
    double ry = kiln_upsample_ratio(&nd->a, 0, h, ho), rx = kiln_upsample_ratio(&nd->a, 1, w, wo);
    for (int x0 = 0; x0 < wo; x0 += KILN_TAP_BLOCK) {
        int nx = wo - x0 < KILN_TAP_BLOCK ? wo - x0 : KILN_TAP_BLOCK, ix[KILN_TAP_BLOCK][4];
        float wx[KILN_TAP_BLOCK][4];
        for (int j = 0; j < nx; j++)
            kiln_upsample_cubic_taps(&nd->a, x0 + j, w, rx, ix[j], wx[j]);
        for (int oy = 0; oy < ho; oy++) {
            int iy[4];
            float wy[4];
            kiln_upsample_cubic_taps(&nd->a, oy, h, ry, iy, wy);
            for (size_t p = 0; p < planes; p++) {
                const float *src = x + p * h * w;
                float *dst = y + p * ho * wo + (size_t)oy * wo + x0;
                for (int j = 0; j < nx; j++) {
                    float acc = 0.0f;
                    for (int ty = 0; ty < 4; ty++) {
                        const float *row = src + (size_t)iy[ty] * w;
                        acc += wy[ty] * (wx[j][0] * row[ix[j][0]] + wx[j][1] * row[ix[j][1]] +
                                         wx[j][2] * row[ix[j][2]] + wx[j][3] * row[ix[j][3]]);
                    }
                    dst[j] = acc;
                }
            }
        }
    }
}

void kiln_upsample_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    int h = x->dims[1], w = x->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    double ry = kiln_upsample_ratio(&nd->a, 0, h, ho), rx = kiln_upsample_ratio(&nd->a, 1, w, wo);
    size_t planes = (size_t)x->dims[0] * (size_t)a->batch;
    if (nd->a.mode == 2) {
        upsample_cubic(nd, a->in[0], a->out, planes, h, w);
        return;
    }
    for (size_t p = 0; p < planes; p++) {
        const float *src = a->in[0] + p * h * w;
        float *dst = a->out + p * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            int y0, y1, x0, x1;
            float wy, wx;
            kiln_upsample_coord(&nd->a, oy, h, ry, &y0, &y1, &wy);
            for (int ox = 0; ox < wo; ox++) {
                kiln_upsample_coord(&nd->a, ox, w, rx, &x0, &x1, &wx);
                float top = src[y0 * w + x0] * (1 - wx) + src[y0 * w + x1] * wx;
                float bot = src[y1 * w + x0] * (1 - wx) + src[y1 * w + x1] * wx;
                dst[oy * wo + ox] = top * (1 - wy) + bot * wy;
            }
        }
    }
}

size_t kiln_pad_source(const kiln_node *nd, const kiln_node *x, size_t k)
{
    size_t at = 0, stride = 1;
    for (int d = nd->rank - 1; d >= 0; d--) {
        int len = x->dims[d], c = (int)(k % (size_t)nd->dims[d]) - nd->a.pads[d];
        k /= (size_t)nd->dims[d];
        if (c < 0)
            c = nd->a.mode == 1 ? -c : 0;
        else if (c >= len)
            c = nd->a.mode == 1 ? 2 * (len - 1) - c : len - 1;
        at += (size_t)c * stride;
        stride *= (size_t)len;
    }
    return at;
}

void kiln_pad_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    int r = x->rank;
    size_t n = nd->numel * (size_t)a->batch;
    if (nd->a.mode != 0 && r > 0) {   /* reflect, edge: every output element from its source */
        for (int b = 0; b < a->batch; b++)
            for (size_t k = 0; k < nd->numel; k++)
                a->out[(size_t)b * nd->numel + k] = a->in[0][(size_t)b * x->numel + kiln_pad_source(nd, x, k)];
        return;
    }
    for (size_t i = 0; i < n; i++)
        a->out[i] = nd->a.value;
    if (r == 0) {
        memcpy(a->out, a->in[0], (size_t)a->batch * sizeof(float));
        return;
    }
    size_t ost[KILN_MAX_RANK], s = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = s;
        s *= (size_t)nd->dims[i];
    }
    size_t base = 0;   /* where x's first element lands */
    for (int i = 0; i < r; i++)
        base += (size_t)nd->a.pads[i] * ost[i];
    size_t inner = (size_t)x->dims[r - 1];
    for (int b = 0; b < a->batch; b++) {
        const float *src = a->in[0] + (size_t)b * x->numel;
        float *dst = a->out + (size_t)b * nd->numel + base;
        int idx[KILN_MAX_RANK] = {0};
        for (size_t o = 0; o < x->numel; o += inner) {   /* each input row to its place */
            size_t off = 0;
            for (int i = 0; i < r - 1; i++)
                off += (size_t)idx[i] * ost[i];
            memcpy(dst + off, src + o, inner * sizeof(float));
            for (int i = r - 2; i >= 0; i--) {
                if (++idx[i] < x->dims[i])
                    break;
                idx[i] = 0;
            }
        }
    }
}
