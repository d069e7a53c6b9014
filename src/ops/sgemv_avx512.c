/* fp32 matrix-vector products with AVX-512: the batch-1 dense layers of inference, where the
 * weights are streamed once from cache or memory and nothing is worth packing. */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include "ops/avx512_util.h"
#include "ops/sgemm_avx512.h"

/* c[j] = alpha * dot(a, b row j) + beta * c[j] for rows j0 .. j0 + R - 1 (R <= 8): one
 * accumulator per row, the vector a loaded once per 16 values for all R rows. */
#define ROWS_DOT(R)                                                                                 \
    __attribute__((target("avx512f"))) static void rows_dot##R(int k, float alpha, const float *a, \
                                                               const float *b, int ldb, float beta, \
                                                               float *c)                            \
    {                                                                                               \
        __m512 acc[R];                                                                              \
        for (int r = 0; r < R; r++)                                                                 \
            acc[r] = _mm512_setzero_ps();                                                           \
        int p = 0;                                                                                  \
        for (; p + 16 <= k; p += 16) {                                                              \
            __m512 x = _mm512_loadu_ps(a + p);                                                      \
            for (int r = 0; r < R; r++)                                                             \
                acc[r] = _mm512_fmadd_ps(x, _mm512_loadu_ps(b + (size_t)r * ldb + p), acc[r]);     \
        }                                                                                           \
        if (p < k) {                                                                                \
            __mmask16 m = kiln_lanes16(k - p);                                                             \
            __m512 x = _mm512_maskz_loadu_ps(m, a + p);                                             \
            for (int r = 0; r < R; r++)                                                             \
                acc[r] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(m, b + (size_t)r * ldb + p), acc[r]); \
        }                                                                                           \
        for (int r = 0; r < R; r++) {                                                               \
            float s = alpha * _mm512_reduce_add_ps(acc[r]);                                         \
            c[r] = beta == 0.0f ? s : s + beta * c[r];                                              \
        }                                                                                           \
    }
ROWS_DOT(8)
ROWS_DOT(1)

/* c[j0 .. j0 + 16 * NV) (the last vector masked by last) = alpha * sum_p a[p] b[p][j] + beta * c. */
__attribute__((target("avx512f"))) static void cols_axpy(int nv, __mmask16 last, int k, float alpha, const float *a,
                                                         const float *b, int ldb, float beta, float *c)
{
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int p = 0; p < k; p++) {
        __m512 x = _mm512_set1_ps(a[p]);
        const float *bp = b + (size_t)p * ldb;
        for (int v = 0; v < nv; v++)
            acc[v] = _mm512_fmadd_ps(x, _mm512_maskz_loadu_ps(v == nv - 1 ? last : 0xffff, bp + 16 * v), acc[v]);
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int v = 0; v < nv; v++) {
        __mmask16 m = v == nv - 1 ? last : 0xffff;
        __m512 s = _mm512_mul_ps(va, acc[v]);
        if (beta != 0.0f)
            s = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, c + 16 * v), s);
        _mm512_mask_storeu_ps(c + 16 * v, m, s);
    }
}

__attribute__((target("avx512f"))) void kiln_sgemv_avx512(bool tb, int n, int k, float alpha, const float *a,
                                                          const float *b, int ldb, float beta, float *c)
{
    if (tb) {   /* c = B a, B n x k: eight rows at a time */
        int j = 0;
        for (; j + 8 <= n; j += 8)
            rows_dot8(k, alpha, a, b + (size_t)j * ldb, ldb, beta, c + j);
        for (; j < n; j++)
            rows_dot1(k, alpha, a, b + (size_t)j * ldb, ldb, beta, c + j);
        return;
    }
    for (int j = 0; j < n; j += 64) {   /* c = B^T a, B k x n: 64 columns at a time */
        int w = n - j < 64 ? n - j : 64, nv = (w + 15) / 16;
        cols_axpy(nv, kiln_lanes16(w - 16 * (nv - 1)), k, alpha, a, b + j, ldb, beta, c + j);
    }
}
