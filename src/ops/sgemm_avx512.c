/* fp32 GEMM with AVX-512 (the training convolutions' and dense layers' products on CPUs that
 * have it): BLIS-style blocking into packed panels (thread-local, so a run allocates nothing) and
 * a 12 x 32 register tile of 24 accumulators. Row-major, op(X) = X or X^T as kiln_sgemm. */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>
#include "ops/avx512_util.h"
#include "ops/sgemm_avx512.h"

#define MR 12
#define NR 32
#define KC 256
#define MC 120
#define NC 1024

static _Thread_local float pack_a[MC * KC] __attribute__((aligned(64)));
static _Thread_local float pack_b[KC * NC] __attribute__((aligned(64)));

/* pack_a_block's non-transposed case, 16 values of p at a time through transposes. */
__attribute__((target("avx512f"))) static void pack_a_rows_avx512(const float *a, int lda, int row0, int mr, int p0,
                                                                  int kc, float *d)
{
    for (int p = 0; p < kc; p += 16) {
        int np = kc - p < 16 ? kc - p : 16;
        __mmask16 kp = kiln_lanes16(np);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < mr ? _mm512_maskz_loadu_ps(kp, a + (size_t)(row0 + i) * lda + p0 + p) : _mm512_setzero_ps();
        kiln_transpose16_avx512(r);
        for (int j = 0; j < np; j++)
            _mm512_mask_storeu_ps(d + (size_t)(p + j) * MR, 0x0fff, r[j]);
    }
}

/* pack_b_block's transposed case: columns of op(B) are rows of b; 16 rows x 16 values of p per
 * transpose. */
__attribute__((target("avx512f"))) static void pack_b_rows_avx512(const float *b, int ldb, int col0, int nr, int p0,
                                                                  int kc, float *d)
{
    for (int half = 0; half < 2; half++)
        for (int p = 0; p < kc; p += 16) {
            int np = kc - p < 16 ? kc - p : 16;
            __mmask16 kp = kiln_lanes16(np);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                int j = 16 * half + i;
                r[i] = j < nr ? _mm512_maskz_loadu_ps(kp, b + (size_t)(col0 + j) * ldb + p0 + p) : _mm512_setzero_ps();
            }
            kiln_transpose16_avx512(r);
            for (int q = 0; q < np; q++)
                _mm512_storeu_ps(d + (size_t)(p + q) * NR + 16 * half, r[q]);
        }
}

static void pack_a_block(bool ta, const float *a, int lda, int i0, int mc, int p0, int kc, float *dst)
{
    for (int ir = 0; ir < mc; ir += MR) {
        int mr = mc - ir < MR ? mc - ir : MR;
        float *d = dst + (size_t)ir * kc;
        if (ta) {   /* rows of op(A) are columns of a: contiguous along r */
            for (int p = 0; p < kc; p++) {
                const float *s = a + (size_t)(p0 + p) * lda + i0 + ir;
                for (int r = 0; r < MR; r++)
                    d[(size_t)p * MR + r] = r < mr ? s[r] : 0.0f;
            }
        } else {    /* contiguous along p: read rows, transpose */
            pack_a_rows_avx512(a, lda, i0 + ir, mr, p0, kc, d);
        }
    }
}

static void pack_b_block(bool tb, const float *b, int ldb, int p0, int kc, int j0, int nc, float *dst)
{
    for (int jr = 0; jr < nc; jr += NR) {
        int nr = nc - jr < NR ? nc - jr : NR;
        float *d = dst + (size_t)jr * kc;
        if (tb) {   /* columns of op(B) are rows of b: read rows, transpose */
            pack_b_rows_avx512(b, ldb, j0 + jr, nr, p0, kc, d);
            continue;
        }
        for (int p = 0; p < kc; p++) {
            const float *s = b + (size_t)(p0 + p) * ldb + j0 + jr;
            if (nr == NR) {
                memcpy(d + (size_t)p * NR, s, NR * sizeof(float));
                continue;
            }
            for (int j = 0; j < NR; j++)
                d[(size_t)p * NR + j] = j < nr ? s[j] : 0.0f;
        }
    }
}

__attribute__((target("avx512f"))) static void kernel(int kc, const float *ap, const float *bp, float *c, int ldc,
                                                     int mr, int nr, float alpha, float beta, const float *bias)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00,
           c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    for (int p = 0; p < kc; p++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        __m512 a;
#define ROW(r, x0, x1) a = _mm512_set1_ps(ap[r]); x0 = _mm512_fmadd_ps(a, b0, x0); x1 = _mm512_fmadd_ps(a, b1, x1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31) ROW(4, c40, c41) ROW(5, c50, c51)
        ROW(6, c60, c61) ROW(7, c70, c71) ROW(8, c80, c81) ROW(9, c90, c91) ROW(10, ca0, ca1) ROW(11, cb0, cb1)
#undef ROW
        ap += MR;
        bp += NR;
    }
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51},
                         {c60, c61}, {c70, c71}, {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}};
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = kiln_lanes16(nr);
    __mmask16 m1 = kiln_lanes16(nr - 16);
    __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
    __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
    for (int r = 0; r < mr; r++) {
        float *cr = c + (size_t)r * ldc;
        __m512 x0 = _mm512_fmadd_ps(acc[r][0], va, bias0), x1 = _mm512_fmadd_ps(acc[r][1], va, bias1);
        if (beta != 0.0f) {
            x0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, cr), vb, x0);
            x1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, cr + 16), vb, x1);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

/* The same product for a tile of at most R = 2, 4 or 8 rows (the last rows of m when m is not a
 * multiple of 12): fewer accumulators, so no work on padding rows. The packed A keeps its stride
 * of MR floats per p. */
#define SMALL_KERNEL(NAME, R)                                                                            \
    __attribute__((target("avx512f"))) static void NAME(int kc, const float *ap, const float *bp, float *c, \
                                                       int ldc, int mr, int nr, float alpha, float beta,  \
                                                       const float *bias)                                 \
    {                                                                                                    \
        __m512 acc[R][2];                                                                                \
        for (int r = 0; r < R; r++)                                                                      \
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();                                                 \
        for (int p = 0; p < kc; p++) {                                                                   \
            __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);                                \
            for (int r = 0; r < R; r++) {                                                                \
                __m512 a = _mm512_set1_ps(ap[r]);                                                        \
                acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);                                           \
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);                                           \
            }                                                                                            \
            ap += MR;                                                                                    \
            bp += NR;                                                                                    \
        }                                                                                                \
        __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);                                    \
        __mmask16 m0 = kiln_lanes16(nr);                                                                 \
        __mmask16 m1 = kiln_lanes16(nr - 16);                                                            \
        __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();                     \
        __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();                \
        for (int r = 0; r < mr; r++) {                                                                   \
            float *cr = c + (size_t)r * ldc;                                                             \
            __m512 x0 = _mm512_fmadd_ps(acc[r][0], va, bias0), x1 = _mm512_fmadd_ps(acc[r][1], va, bias1); \
            if (beta != 0.0f) {                                                                          \
                x0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, cr), vb, x0);                             \
                x1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, cr + 16), vb, x1);                        \
            }                                                                                            \
            _mm512_mask_storeu_ps(cr, m0, x0);                                                           \
            _mm512_mask_storeu_ps(cr + 16, m1, x1);                                                      \
        }                                                                                                \
    }
SMALL_KERNEL(kernel2, 2)
SMALL_KERNEL(kernel4, 4)
SMALL_KERNEL(kernel8, 8)
#undef SMALL_KERNEL

void kiln_sgemm_avx512(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc)
{
    kiln_sgemm_avx512_bias(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, NULL, c, ldc);
}

/* The blocked product; B's panels come from packed (kiln_sgemm_avx512_pack_b's layout) or, when
 * packed is NULL, are packed here per block. */
static void gemm_blocks(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                        int ldb, const float *packed, float beta, const float *bias, float *c, int ldc)
{
    for (int j0 = 0; j0 < n; j0 += NC) {
        int nc = n - j0 < NC ? n - j0 : NC, ncr = (nc + NR - 1) / NR * NR;
        for (int p0 = 0; p0 < k || p0 == 0; p0 += KC) {
            int kc = k - p0 < KC ? k - p0 : KC;
            float bt = p0 == 0 ? beta : 1.0f;
            const float *pb = packed;
            if (packed) {
                packed += (size_t)kc * ncr;
            } else {
                pack_b_block(tb, b, ldb, p0, kc, j0, nc, pack_b);
                pb = pack_b;
            }
            for (int i0 = 0; i0 < m; i0 += MC) {
                int mc = m - i0 < MC ? m - i0 : MC;
                pack_a_block(ta, a, lda, i0, mc, p0, kc, pack_a);
                for (int jr = 0; jr < nc; jr += NR)
                    for (int ir = 0; ir < mc; ir += MR)
                        (mc - ir <= 2 ? kernel2 : mc - ir <= 4 ? kernel4 : mc - ir <= 8 ? kernel8 : kernel)(
                            kc, pack_a + (size_t)ir * kc, pb + (size_t)jr * kc, c + (size_t)(i0 + ir) * ldc + j0 + jr,
                            ldc, mc - ir < MR ? mc - ir : MR, nc - jr < NR ? nc - jr : NR, alpha, bt,
                            bias && p0 == 0 ? bias + j0 + jr : NULL);
            }
            if (k == 0)
                break;
        }
    }
}

void kiln_sgemm_avx512_bias(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, const float *bias, float *c, int ldc)
{
    gemm_blocks(ta, tb, m, n, k, alpha, a, lda, b, ldb, NULL, beta, bias, c, ldc);
}

size_t kiln_sgemm_avx512_packed_floats(int n, int k)
{
    size_t total = 0;
    for (int j0 = 0; j0 < n; j0 += NC) {
        int nc = n - j0 < NC ? n - j0 : NC, ncr = (nc + NR - 1) / NR * NR;
        for (int p0 = 0; p0 < k || p0 == 0; p0 += KC) {
            total += (size_t)(k - p0 < KC ? k - p0 : KC) * ncr;
            if (k == 0)
                break;
        }
    }
    return total;
}

void kiln_sgemm_avx512_pack_b(bool tb, int n, int k, const float *b, int ldb, float *dst)
{
    for (int j0 = 0; j0 < n; j0 += NC) {
        int nc = n - j0 < NC ? n - j0 : NC, ncr = (nc + NR - 1) / NR * NR;
        for (int p0 = 0; p0 < k || p0 == 0; p0 += KC) {
            int kc = k - p0 < KC ? k - p0 : KC;
            pack_b_block(tb, b, ldb, p0, kc, j0, nc, dst);
            dst += (size_t)kc * ncr;
            if (k == 0)
                break;
        }
    }
}

void kiln_sgemm_avx512_prepacked(int m, int n, int k, const float *a, int lda, const float *packed,
                                 const float *bias, float *c, int ldc)
{
    gemm_blocks(false, false, m, n, k, 1.0f, a, lda, NULL, 0, packed, 0.0f, bias, c, ldc);
}
