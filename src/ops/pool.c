/* Max, average and global average pooling forward. */
#include <float.h>
#include <immintrin.h>
#include <stdlib.h>
#include "ops/gemm.h"
#include "ops/ops.h"

#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
/* 16 outputs at a time: the vertical maximum of the two rows, then of each even/odd pair. */
__attribute__((target("avx512f"))) static void pool_rows_avx512(const float *r0, const float *r1, float *d, int wo)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int ox = 0; ox < wo; ox += 16) {
        int n = 2 * (wo - ox < 16 ? wo - ox : 16);   /* input columns of this block */
        __mmask16 k0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        __mmask16 k1 = n >= 32 ? 0xffff : (n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1));
        __m512 m0 = _mm512_max_ps(_mm512_maskz_loadu_ps(k0, r0 + 2 * ox), _mm512_maskz_loadu_ps(k0, r1 + 2 * ox));
        __m512 m1 = _mm512_max_ps(_mm512_maskz_loadu_ps(k1, r0 + 2 * ox + 16),
                                  _mm512_maskz_loadu_ps(k1, r1 + 2 * ox + 16));
        __m512 v = _mm512_max_ps(_mm512_permutex2var_ps(m0, even, m1), _mm512_permutex2var_ps(m0, odd, m1));
        _mm512_mask_storeu_ps(d + ox, (__mmask16)(n >= 32 ? 0xffff : (1u << (n / 2)) - 1), v);
    }
}

/* The same with the argmax (index into the plane) of each output, for training; picks exactly as
 * the scalar loop does (strict comparisons, the first candidate on ties and NaN). */
__attribute__((target("avx512f"))) static void pool_rows_argmax_avx512(const float *r0, const float *r1, float *d,
                                                                      int32_t *am, int wo, int i0, int w)
{
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    const __m512i lane2 = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i one = _mm512_set1_epi32(1);
    for (int ox = 0; ox < wo; ox += 16) {
        int n = 2 * (wo - ox < 16 ? wo - ox : 16);
        __mmask16 k0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        __mmask16 k1 = n >= 32 ? 0xffff : (n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1));
        __mmask16 ko = (__mmask16)(n >= 32 ? 0xffff : (1u << (n / 2)) - 1);
        __m512 p0 = _mm512_maskz_loadu_ps(k0, r0 + 2 * ox), p1 = _mm512_maskz_loadu_ps(k1, r0 + 2 * ox + 16);
        __m512 q0 = _mm512_maskz_loadu_ps(k0, r1 + 2 * ox), q1 = _mm512_maskz_loadu_ps(k1, r1 + 2 * ox + 16);
        __m512 a0 = _mm512_permutex2var_ps(p0, even, p1), a1 = _mm512_permutex2var_ps(p0, odd, p1);
        __m512 b0 = _mm512_permutex2var_ps(q0, even, q1), b1 = _mm512_permutex2var_ps(q0, odd, q1);
        __mmask16 ga = _mm512_cmp_ps_mask(a1, a0, _CMP_GT_OQ), gb = _mm512_cmp_ps_mask(b1, b0, _CMP_GT_OQ);
        __m512 m0 = _mm512_mask_blend_ps(ga, a0, a1), m1 = _mm512_mask_blend_ps(gb, b0, b1);
        __mmask16 g = _mm512_cmp_ps_mask(m1, m0, _CMP_GT_OQ);
        __m512i base = _mm512_add_epi32(_mm512_set1_epi32(i0 + 2 * ox), lane2);
        __m512i ia = _mm512_mask_add_epi32(base, ga, base, one);
        __m512i ib = _mm512_add_epi32(_mm512_mask_add_epi32(base, gb, base, one), _mm512_set1_epi32(w));
        _mm512_mask_storeu_ps(d + ox, ko, _mm512_mask_blend_ps(g, m0, m1));
        _mm512_mask_storeu_epi32(am + ox, ko, _mm512_mask_blend_epi32(g, ia, ib));
    }
}
#endif

/* The common 2x2, stride 2, unpadded window: two input rows per output row, no bounds checks. */
void kiln_maxpool_2x2_plane(const float *src, float *dst, int32_t *am, int w, int ho, int wo)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    if (kiln_f32_avx512()) {
        for (int oy = 0; oy < ho; oy++) {
            const float *r0 = src + (size_t)(2 * oy) * w, *r1 = r0 + w;
            if (am)   /* training: keep the argmax */
                pool_rows_argmax_avx512(r0, r1, dst + (size_t)oy * wo, am + (size_t)oy * wo, wo, 2 * oy * w, w);
            else
                pool_rows_avx512(r0, r1, dst + (size_t)oy * wo, wo);
        }
        return;
    }
#endif
    for (int oy = 0; oy < ho; oy++) {
        const float *r0 = src + (size_t)(2 * oy) * w, *r1 = r0 + w;
        float *d = dst + (size_t)oy * wo;
        for (int ox = 0; ox < wo; ox++) {
            float a0 = r0[2 * ox], a1 = r0[2 * ox + 1], b0 = r1[2 * ox], b1 = r1[2 * ox + 1];
            float m0 = a1 > a0 ? a1 : a0, m1 = b1 > b0 ? b1 : b0;
            d[ox] = m1 > m0 ? m1 : m0;
            if (am) {
                int i0 = 2 * oy * w + 2 * ox + (a1 > a0), i1 = (2 * oy + 1) * w + 2 * ox + (b1 > b0);
                am[(size_t)oy * wo + ox] = m1 > m0 ? i1 : i0;
            }
        }
    }
}

void kiln_maxpool_forward(const kiln_node *nd, const kiln_node *in, const float *x, int batch,
                          float *y, int32_t *argmax)
{
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    int planes = batch * c;
    if (a->kernel[0] == 2 && a->kernel[1] == 2 && a->stride[0] == 2 && a->stride[1] == 2 && a->pad[0] == 0 &&
        a->pad[1] == 0) {
        if ((size_t)planes * h * w <= 32768) {   /* small: no parallel region */
            for (int pl = 0; pl < planes; pl++)
                kiln_maxpool_2x2_plane(x + (size_t)pl * h * w, y + (size_t)pl * ho * wo,
                                       argmax ? argmax + (size_t)pl * ho * wo : NULL, w, ho, wo);
            return;
        }
        #pragma omp parallel for schedule(static)
        for (int pl = 0; pl < planes; pl++)
            kiln_maxpool_2x2_plane(x + (size_t)pl * h * w, y + (size_t)pl * ho * wo,
                                   argmax ? argmax + (size_t)pl * ho * wo : NULL, w, ho, wo);
        return;
    }
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
    int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
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
    size_t hw = (size_t)in->dims[1] * in->dims[2];
    int planes = batch * in->dims[0];
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * hw;
        float s = 0.0f;
        for (size_t i = 0; i < hw; i++)
            s += src[i];
        y[pl] = s / (float)hw;
    }
}
