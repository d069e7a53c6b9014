/* Max, average and global average pooling backward. */
#include <string.h>
#include "train/backward.h"

static void maxpool_backward(const kiln_node *nd, const kiln_node *in, const kiln_bwd_args *a)
{
    size_t hw = (size_t)in->shape[1] * in->shape[2], p = (size_t)nd->shape[1] * nd->shape[2];
    int planes = a->batch * in->shape[0];
    #pragma omp parallel for schedule(static) if ((size_t)planes * hw > 32768)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = a->dx[0] + (size_t)pl * hw;
        const float *dy = a->dy + (size_t)pl * p;
        const int32_t *am = a->argmax + (size_t)pl * p;
        if (!a->acc[0])
            memset(dx, 0, hw * sizeof(float));
        if (a->relu_mask) {
            const float *y = a->out + (size_t)pl * p;
            for (size_t i = 0; i < p; i++)
                if (am[i] >= 0 && y[i] > 0.0f)
                    dx[am[i]] += dy[i];
        } else {
            for (size_t i = 0; i < p; i++)
                if (am[i] >= 0)
                    dx[am[i]] += dy[i];
        }
    }
}

static void avgpool_backward(const kiln_node *nd, const kiln_node *in, const kiln_bwd_args *a)
{
    const kiln_attrs *at = &nd->a;
    int h = in->shape[1], w = in->shape[2], ho = nd->shape[1], wo = nd->shape[2];
    int planes = a->batch * in->shape[0];
    float inv = 1.0f / (float)(at->kernel[0] * at->kernel[1]);
    #pragma omp parallel for schedule(static) if ((size_t)planes * h * w > 32768)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = a->dx[0] + (size_t)pl * h * w;
        const float *dy = a->dy + (size_t)pl * ho * wo;
        if (!a->acc[0])
            memset(dx, 0, (size_t)h * w * sizeof(float));
        for (int oy = 0; oy < ho; oy++) {
            for (int ox = 0; ox < wo; ox++) {
                float gv = dy[oy * wo + ox] * inv;
                int y0 = oy * at->stride[0] - at->pad[0], x0 = ox * at->stride[1] - at->pad[1];
                for (int ky = 0; ky < at->kernel[0]; ky++) {
                    int iy = y0 + ky;
                    if (iy < 0 || iy >= h)
                        continue;
                    for (int kx = 0; kx < at->kernel[1]; kx++) {
                        int ix = x0 + kx;
                        if (ix >= 0 && ix < w)
                            dx[iy * w + ix] += gv;
                    }
                }
            }
        }
    }
}

static void global_avgpool_backward(const kiln_node *in, const kiln_bwd_args *a)
{
    size_t hw = (size_t)in->shape[1] * in->shape[2];
    int planes = a->batch * in->shape[0];
    for (int pl = 0; pl < planes; pl++) {
        float gv = a->dy[pl] / (float)hw, *dx = a->dx[0] + (size_t)pl * hw;
        for (size_t i = 0; i < hw; i++)
            dx[i] = (a->acc[0] ? dx[i] : 0.0f) + gv;
    }
}

void kiln_pool_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    if (nd->op == KILN_OP_MAXPOOL2D)
        maxpool_backward(nd, in, a);
    else if (nd->op == KILN_OP_AVGPOOL2D)
        avgpool_backward(nd, in, a);
    else
        global_avgpool_backward(in, a);
}
