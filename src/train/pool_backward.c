/* Max, average and global average pooling backward. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "ops/gemm.h"
#include "train/backward.h"
#ifndef KILN_GENERIC_ONLY
#include <immintrin.h>

/* The 2x2, stride 2, unpadded window, 16 outputs at a time: each output's gradient goes to the
 * one of its four inputs the argmax names; the two input rows are built in registers (zeros
 * elsewhere) and stored, or added when dx accumulates. */
__attribute__((target("avx512f"))) static void pool2x2_back_plane(float *dx, const float *dy, const int32_t *am,
                                                                const float *y, int w, int ho, int wo, bool acc)
{
    const __m512i lo_idx = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi_idx = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i lane2 = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512 zero = _mm512_setzero_ps();
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox += 16) {
            int n = wo - ox < 16 ? wo - ox : 16;
            __mmask16 k = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
            size_t o = (size_t)oy * wo + ox;
            __m512 g = _mm512_maskz_loadu_ps(k, dy + o);
            if (y)
                g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_maskz_loadu_ps(k, y + o), zero, _CMP_GT_OQ), g);
            __m512i idx = _mm512_maskz_loadu_epi32(k, am + o);
            __m512i base = _mm512_add_epi32(_mm512_set1_epi32(2 * oy * w + 2 * ox), lane2);
            __m512i bw = _mm512_add_epi32(base, _mm512_set1_epi32(w)), one = _mm512_set1_epi32(1);
            __m512 e0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(idx, base), g);
            __m512 o0 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(idx, _mm512_add_epi32(base, one)), g);
            __m512 e1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(idx, bw), g);
            __m512 o1 = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(idx, _mm512_add_epi32(bw, one)), g);
            int cols = 2 * n;   /* input columns covered */
            __mmask16 k0 = cols >= 16 ? 0xffff : (__mmask16)((1u << cols) - 1);
            __mmask16 k1 = cols >= 32 ? 0xffff : (cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1));
            float *r0 = dx + (size_t)(2 * oy) * w + 2 * ox, *r1 = r0 + w;
            __m512 a0 = _mm512_permutex2var_ps(e0, lo_idx, o0), a1 = _mm512_permutex2var_ps(e0, hi_idx, o0);
            __m512 b0 = _mm512_permutex2var_ps(e1, lo_idx, o1), b1 = _mm512_permutex2var_ps(e1, hi_idx, o1);
            if (acc) {
                a0 = _mm512_add_ps(a0, _mm512_maskz_loadu_ps(k0, r0));
                a1 = _mm512_add_ps(a1, _mm512_maskz_loadu_ps(k1, r0 + 16));
                b0 = _mm512_add_ps(b0, _mm512_maskz_loadu_ps(k0, r1));
                b1 = _mm512_add_ps(b1, _mm512_maskz_loadu_ps(k1, r1 + 16));
            }
            _mm512_mask_storeu_ps(r0, k0, a0);
            _mm512_mask_storeu_ps(r0 + 16, k1, a1);
            _mm512_mask_storeu_ps(r1, k0, b0);
            _mm512_mask_storeu_ps(r1 + 16, k1, b1);
        }
}

#endif

static void maxpool_backward(const kiln_node *nd, const kiln_node *in, const kiln_bwd_args *a)
{
    size_t hw = (size_t)in->dims[1] * in->dims[2], p = (size_t)nd->dims[1] * nd->dims[2];
    int planes = a->batch * in->dims[0];
#ifndef KILN_GENERIC_ONLY
    const kiln_attrs *at = &nd->a;
    bool fast = at->kernel[0] == 2 && at->kernel[1] == 2 && at->stride[0] == 2 && at->stride[1] == 2 &&
                at->pad[0] == 0 && at->pad[1] == 0 && kiln_f32_avx512();
#endif
    #pragma omp parallel for schedule(static) if ((size_t)planes * hw > 32768)
    for (int pl = 0; pl < planes; pl++) {
        float *dx = a->dx[0] + (size_t)pl * hw;
        const float *dy = a->dy + (size_t)pl * p;
        const int32_t *am = a->argmax + (size_t)pl * p;
#ifndef KILN_GENERIC_ONLY
        if (fast) {
            if (!a->acc[0] && (in->dims[1] % 2 || in->dims[2] % 2))   /* a last odd row/column gets nothing */
                memset(dx, 0, hw * sizeof(float));
            pool2x2_back_plane(dx, dy, am, a->relu_mask ? a->out + (size_t)pl * p : NULL, in->dims[2], nd->dims[1],
                               nd->dims[2], a->acc[0] || in->dims[1] % 2 || in->dims[2] % 2);
            continue;
        }
#endif
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
    int h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    int planes = a->batch * in->dims[0];
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
    size_t hw = (size_t)in->dims[1] * in->dims[2];
    int planes = a->batch * in->dims[0];
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
