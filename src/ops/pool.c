/* Max, average and global average pooling forward. */
#include <float.h>
#include "ops/ops.h"

void kiln_maxpool_forward(const kiln_node *nd, const kiln_node *in, const float *x, int batch,
                          float *y, int32_t *argmax)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2], ho = nd->shape[1], wo = nd->shape[2];
    int planes = batch * c;
    #pragma omp parallel for schedule(static) if ((size_t)planes * h * w > 32768)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * h * w;
        float *dst = y + (size_t)pl * ho * wo;
        int32_t *am = argmax ? argmax + (size_t)pl * ho * wo : NULL;
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                int y0 = oy * a->stride[0] - a->pad[0], x0 = ox * a->stride[1] - a->pad[1];
                float best = -FLT_MAX;
                int bi = -1;
                for (int ky = 0; ky < a->kernel[0]; ky++) {
                    int iy = y0 + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < a->kernel[1]; kx++) {
                        int ix = x0 + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        float v = src[iy * w + ix];
                        if (v > best || bi < 0 || v != v) {
                            best = v;
                            bi = iy * w + ix;
                        }
                    }
                }
                dst[oy * wo + ox] = best;
                if (am)
                    am[oy * wo + ox] = bi;
            }
        }
    }
}

void kiln_avgpool_forward(const kiln_node *nd, const kiln_node *in, const float *x, int batch, float *y)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2], ho = nd->shape[1], wo = nd->shape[2];
    int planes = batch * c;
    float inv = 1.0f / (float)(a->kernel[0] * a->kernel[1]);
    #pragma omp parallel for schedule(static) if ((size_t)planes * h * w > 32768)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * h * w;
        float *dst = y + (size_t)pl * ho * wo;
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                int y0 = oy * a->stride[0] - a->pad[0], x0 = ox * a->stride[1] - a->pad[1];
                float s = 0.0f;
                for (int ky = 0; ky < a->kernel[0]; ky++) {
                    int iy = y0 + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < a->kernel[1]; kx++) {
                        int ix = x0 + kx;
                        if (ix >= 0 && ix < w)
                            s += src[iy * w + ix];
                    }
                }
                dst[oy * wo + ox] = s * inv;
            }
        }
    }
}

void kiln_global_avgpool_forward(const kiln_node *in, const float *x, int batch, float *y)
{
    size_t hw = (size_t)in->shape[1] * in->shape[2];
    int planes = batch * in->shape[0];
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * hw;
        float s = 0.0f;
        for (size_t i = 0; i < hw; i++)
            s += src[i];
        y[pl] = s / (float)hw;
    }
}
