/* Small AVX-512 helpers shared by the kernels: tail masks, and a 16 x 16 fp32 transpose for the
 * ones that change layouts (GEMM packing, Winograd convolution). Include only where AVX-512 code
 * is compiled. */
#ifndef KILN_OPS_AVX512_UTIL_H
#define KILN_OPS_AVX512_UTIL_H

#include <immintrin.h>

/* Lanes [0, n) of a 16-lane mask (none for n <= 0, all for n >= 16). */
static inline __mmask16 kiln_lanes16(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* In-register transpose of 16 rows of 16 floats: r[i][j] -> r[j][i]. */
__attribute__((target("avx512f"))) static inline void kiln_transpose16_avx512(__m512 r[16])
{
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {   /* u[4g + c]: column 4L + c of rows 4g..4g+3 in 128-bit lane L */
        __m512 *tg = t + 4 * g;
        u[4 * g] = _mm512_shuffle_ps(tg[0], tg[2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(tg[0], tg[2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(tg[1], tg[3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(tg[1], tg[3], 0xEE);
    }
    for (int h = 0; h < 2; h++)     /* rows 8h..8h+7 */
        for (int c = 0; c < 4; c++) {
            v[8 * h + c] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + c + 4], 0x88);
            v[8 * h + c + 4] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + c + 4], 0xDD);
        }
    for (int c = 0; c < 8; c++) {
        r[c] = _mm512_shuffle_f32x4(v[c], v[c + 8], 0x88);
        r[c + 8] = _mm512_shuffle_f32x4(v[c], v[c + 8], 0xDD);
    }
}

#endif
