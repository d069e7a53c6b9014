/* Upsampling (nearest, bilinear) and constant padding: forward kernels. */
#include <math.h>
#include <string.h>
#include "ops/ops.h"

double kiln_upsample_ratio(const kiln_attrs *a, int axis, int in, int out)
{
    return a->scale[axis] > 0 ? 1.0 / a->scale[axis] : (double)in / out;
}

void kiln_upsample_coord(const kiln_attrs *a, int o, int in, double r, int *i0, int *i1, float *w1)
{
    int coord = a->coord ? a->coord : a->mode == 0 ? 2 : 1;
    /* align-corners spans in - 1 over the output's length less one: in / r, unrounded when a scale
     * was given (ONNX's in * scale) */
    double len = in / r;
    double c = coord == 1 ? (o + 0.5) * r - 0.5 : coord == 3 ? (len > 1 ? o * (double)(in - 1) / (len - 1) : 0.0)
                                                             : o * r;
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

void kiln_upsample_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    int h = x->dims[1], w = x->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    double ry = kiln_upsample_ratio(&nd->a, 0, h, ho), rx = kiln_upsample_ratio(&nd->a, 1, w, wo);
    size_t planes = (size_t)x->dims[0] * (size_t)a->batch;
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

void kiln_pad_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    int r = x->rank;
    size_t n = nd->numel * (size_t)a->batch;
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
