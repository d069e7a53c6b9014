/* Portable fp32 GEMM: kiln_sgemm's engine in builds without BLAS (KILN_MINIMAL), built and tested
 * in every build.
 *
 * The classic blocked scheme: op(B) in blocks of KC rows x NC columns is packed into panels NR
 * columns wide (kept in L2/L3), op(A) in blocks of MC x KC into panels MR rows high (L2), and a
 * micro-kernel multiplies one A panel by one B panel (L1) into an MR x NR tile held in registers,
 * then adds alpha times the tile into C (beta applied with the first KC block only). Panels are
 * zero-padded to whole tiles, so the kernel never branches on the edge; edge tiles are written
 * through a small buffer. Two kernels: AVX2/FMA (6 x 16: twelve 8-float accumulators) chosen at
 * run time, and portable C (6 x 8 in GNU C vectors, which the compiler maps onto whatever the
 * target has; plain loops for other compilers). Single-row products (batch-1 dense layers) skip
 * the packing: a matrix-vector product straight from B. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "ops/gemm.h"

#if !defined(KILN_GENERIC_ONLY) && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define KILN_F32_AVX2 1
#include <immintrin.h>
#endif

enum {
    KC = 256,               /* rows of a packed B block (the reduction depth per pass) */
    MC = 120,               /* rows of a packed A block (a multiple of both MRs) */
    NC = 1024,              /* columns of a packed B block (a multiple of both NRs) */
    GMR = 6, GNR = 8,       /* the C kernel's tile */
    AMR = 6, ANR = 16       /* the AVX2 kernel's tile */
};

/* ---- dispatch ---------------------------------------------------------------------------- */

static atomic_int force_generic = -1;   /* -1: not yet read from the environment */
#ifdef KILN_F32_AVX2
static atomic_int cpu_avx2 = -1;        /* -1: not yet asked */
#endif

/* The forced setting, first read from KILN_GENERIC. */
static int forced(void)
{
    int f = atomic_load(&force_generic);
    if (f < 0) {
        const char *e = getenv("KILN_GENERIC");
        f = e && *e && *e != '0';
        atomic_store(&force_generic, f);
    }
    return f;
}

bool kiln_f32_force_generic(bool on)
{
    int old = forced();
    atomic_store(&force_generic, on);
    return old;
}

bool kiln_f32_avx2(void)
{
#ifdef KILN_F32_AVX2
    if (forced())
        return false;
    int c = atomic_load(&cpu_avx2);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        atomic_store(&cpu_avx2, c);
    }
    return c;
#else
    return false;
#endif
}

/* ---- per-thread packing space ------------------------------------------------------------ */

/* One 64-byte-aligned block per thread, for the largest A and B blocks, allocated on the thread's
 * first product (untouched pages cost nothing) and freed when the thread exits; later products
 * allocate nothing. */
enum { PACK_A = (MC * KC + 15) / 16 * 16, PACK_FLOATS = PACK_A + KC * NC };

static pthread_key_t buf_key;
static pthread_once_t buf_once = PTHREAD_ONCE_INIT;
static int buf_key_ok;

static void buf_key_create(void)
{
    buf_key_ok = pthread_key_create(&buf_key, free) == 0;
}

static float *pack_space(void)
{
    pthread_once(&buf_once, buf_key_create);
    if (!buf_key_ok)
        return NULL;
    float *p = pthread_getspecific(buf_key);
    if (!p && (p = aligned_alloc(64, PACK_FLOATS * sizeof(float))) && pthread_setspecific(buf_key, p)) {
        free(p);
        p = NULL;
    }
    return p;
}

/* ---- packing ----------------------------------------------------------------------------- */

/* op(A) rows [i0, i0+mc), columns [p0, p0+kc) into panels of mr rows: panel r holds for each p
 * the mr values of its rows (zero past row mc). */
static void pack_a(bool ta, const float *a, int lda, int i0, int mc, int p0, int kc, int mr, float *dst)
{
    for (int ir = 0; ir < mc; ir += mr, dst += (size_t)mr * kc) {
        int rows = mc - ir < mr ? mc - ir : mr;
        if (ta) {   /* A(i, p) = a[p][i]: each p's rows are contiguous */
            for (int p = 0; p < kc; p++) {
                const float *s = a + (size_t)(p0 + p) * lda + i0 + ir;
                float *d = dst + (size_t)p * mr;
                for (int r = 0; r < rows; r++)
                    d[r] = s[r];
                for (int r = rows; r < mr; r++)
                    d[r] = 0.0f;
            }
        }
        else {
            for (int r = 0; r < rows; r++) {
                const float *s = a + (size_t)(i0 + ir + r) * lda + p0;
                for (int p = 0; p < kc; p++)
                    dst[(size_t)p * mr + r] = s[p];
            }
            for (int r = rows; r < mr; r++)
                for (int p = 0; p < kc; p++)
                    dst[(size_t)p * mr + r] = 0.0f;
        }
    }
}

/* op(B) rows [p0, p0+kc), columns [j0, j0+nc) into panels of nr columns: panel j holds for each p
 * the nr values of its columns (zero past column nc). */
static void pack_b(bool tb, const float *b, int ldb, int p0, int kc, int j0, int nc, int nr, float *dst)
{
    for (int jr = 0; jr < nc; jr += nr, dst += (size_t)nr * kc) {
        int cols = nc - jr < nr ? nc - jr : nr;
        if (!tb) {
            for (int p = 0; p < kc; p++) {
                const float *s = b + (size_t)(p0 + p) * ldb + j0 + jr;
                float *d = dst + (size_t)p * nr;
                memcpy(d, s, (size_t)cols * sizeof(float));
                for (int c = cols; c < nr; c++)
                    d[c] = 0.0f;
            }
        }
        else {   /* B(p, j) = b[j][p]: each column's p run is contiguous */
            for (int c = 0; c < cols; c++) {
                const float *s = b + (size_t)(j0 + jr + c) * ldb + p0;
                for (int p = 0; p < kc; p++)
                    dst[(size_t)p * nr + c] = s[p];
            }
            for (int c = cols; c < nr; c++)
                for (int p = 0; p < kc; p++)
                    dst[(size_t)p * nr + c] = 0.0f;
        }
    }
}

/* C (mr x nr of a tile) = alpha * acc + beta * C; C is not read when beta is 0. Not inlined:
 * inside kernel_c its variable bounds would keep the tile out of vector registers. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void tile_update(const float *acc, int ld_acc, float *c, int ldc, float alpha, float beta, int mr, int nr)
{
    for (int i = 0; i < mr; i++) {
        const float *t = acc + (size_t)i * ld_acc;
        float *cr = c + (size_t)i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < nr; j++)
                cr[j] = alpha * t[j];
        else
            for (int j = 0; j < nr; j++)
                cr[j] = alpha * t[j] + beta * cr[j];
    }
}

/* ---- micro-kernels ----------------------------------------------------------------------- */

#if defined(__GNUC__)
/* GNU C vectors (any target: SSE2 pairs, AVX, NEON...): the compiler keeps the tile in registers,
 * where plain loops are left to its vectoriser's mood (ten times slower in some contexts). */
typedef float v8f __attribute__((vector_size(32)));

static void kernel_c(int kc, const float *restrict ap, const float *restrict bp, float *c, int ldc, float alpha,
                     float beta, int mr, int nr)
{
    v8f acc[GMR];
    for (int i = 0; i < GMR; i++)
        acc[i] = (v8f){0};
    for (int p = 0; p < kc; p++, ap += GMR, bp += GNR) {
        v8f b;
        memcpy(&b, bp, sizeof b);
        for (int i = 0; i < GMR; i++)
            acc[i] += ap[i] * b;
    }
    float t[GMR][GNR];
    memcpy(t, acc, sizeof t);
    tile_update(&t[0][0], GNR, c, ldc, alpha, beta, mr, nr);
}
#else
static void kernel_c(int kc, const float *restrict ap, const float *restrict bp, float *c, int ldc, float alpha,
                     float beta, int mr, int nr)
{
    float acc[GMR][GNR] = {{0}};
    for (int p = 0; p < kc; p++, ap += GMR, bp += GNR)
        for (int i = 0; i < GMR; i++)
            for (int j = 0; j < GNR; j++)
                acc[i][j] += ap[i] * bp[j];
    tile_update(&acc[0][0], GNR, c, ldc, alpha, beta, mr, nr);
}
#endif

#ifdef KILN_F32_AVX2
__attribute__((target("avx2,fma"))) static void kernel_avx2(int kc, const float *restrict ap,
                                                             const float *restrict bp, float *c, int ldc,
                                                             float alpha, float beta, int mr, int nr)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int p = 0; p < kc; p++, ap += AMR, bp += ANR) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), av;
        av = _mm256_broadcast_ss(ap + 0);
        c00 = _mm256_fmadd_ps(av, b0, c00), c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(ap + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10), c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(ap + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20), c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(ap + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30), c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(ap + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40), c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(ap + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50), c51 = _mm256_fmadd_ps(av, b1, c51);
    }
    __m256 acc[AMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (mr == AMR && nr == ANR) {
        __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
        for (int i = 0; i < AMR; i++) {
            float *cr = c + (size_t)i * ldc;
            __m256 r0 = _mm256_mul_ps(va, acc[i][0]), r1 = _mm256_mul_ps(va, acc[i][1]);
            if (beta != 0.0f) {
                r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr), r0);
                r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(cr + 8), r1);
            }
            _mm256_storeu_ps(cr, r0);
            _mm256_storeu_ps(cr + 8, r1);
        }
        return;
    }
    float tmp[AMR][ANR];
    for (int i = 0; i < AMR; i++) {
        _mm256_storeu_ps(tmp[i], acc[i][0]);
        _mm256_storeu_ps(tmp[i] + 8, acc[i][1]);
    }
    tile_update(&tmp[0][0], ANR, c, ldc, alpha, beta, mr, nr);
}
#endif

/* ---- matrix-vector products (m == 1, A not transposed) ----------------------------------- */

/* 16 partial sums: the compiler vectorises them at 4, 8 or 16 lanes */
static float dot_c(const float *restrict x, const float *restrict y, int k)
{
    float s[16] = {0};
    int p = 0;
    for (; p + 16 <= k; p += 16)
        for (int l = 0; l < 16; l++)
            s[l] += x[p + l] * y[p + l];
    for (int l = 0; l < 8; l++)
        s[l] += s[l + 8];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; p < k; p++)
        t += x[p] * y[p];
    return t;
}

/* c (n) = alpha * B (n x k) a + beta * c */
static void gemv_rows_c(int n, int k, float alpha, const float *a, const float *b, int ldb, float beta, float *c)
{
    for (int j = 0; j < n; j++) {
        float s = alpha * dot_c(a, b + (size_t)j * ldb, k);
        c[j] = beta == 0.0f ? s : s + beta * c[j];
    }
}

/* c (n) = alpha * B^T a + beta * c, B (k x n): scaled rows of B added into c */
static void gemv_cols_c(int n, int k, float alpha, const float *a, const float *b, int ldb, float beta, float *c)
{
    for (int j = 0; j < n; j++)
        c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    for (int p = 0; p < k; p++) {
        float s = alpha * a[p];
        const float *br = b + (size_t)p * ldb;
        for (int j = 0; j < n; j++)
            c[j] += s * br[j];
    }
}

#ifdef KILN_F32_AVX2
__attribute__((target("avx2,fma"))) static float hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static void gemv_rows_avx2(int n, int k, float alpha, const float *a,
                                                               const float *b, int ldb, float beta, float *c)
{
    int j = 0;
    for (; j + 4 <= n; j += 4) {   /* four rows of B share each load of a */
        const float *b0 = b + (size_t)j * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int p = 0;
        for (; p + 8 <= k; p += 8) {
            __m256 av = _mm256_loadu_ps(a + p);
            s0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b0 + p), s0);
            s1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b1 + p), s1);
            s2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b2 + p), s2);
            s3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b3 + p), s3);
        }
        float t[4] = {hsum_avx2(s0), hsum_avx2(s1), hsum_avx2(s2), hsum_avx2(s3)};
        for (; p < k; p++) {
            t[0] += a[p] * b0[p], t[1] += a[p] * b1[p];
            t[2] += a[p] * b2[p], t[3] += a[p] * b3[p];
        }
        for (int r = 0; r < 4; r++)
            c[j + r] = beta == 0.0f ? alpha * t[r] : alpha * t[r] + beta * c[j + r];
    }
    if (j < n)
        gemv_rows_c(n - j, k, alpha, a, b + (size_t)j * ldb, ldb, beta, c + j);
}

__attribute__((target("avx2,fma"))) static void gemv_cols_avx2(int n, int k, float alpha, const float *a,
                                                               const float *b, int ldb, float beta, float *c)
{
    for (int j = 0; j < n; j++)
        c[j] = beta == 0.0f ? 0.0f : beta * c[j];
    int p = 0;
    for (; p + 4 <= k; p += 4) {   /* four rows of B per pass over c */
        const float *b0 = b + (size_t)p * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        float x0 = alpha * a[p], x1 = alpha * a[p + 1], x2 = alpha * a[p + 2], x3 = alpha * a[p + 3];
        __m256 v0 = _mm256_set1_ps(x0), v1 = _mm256_set1_ps(x1), v2 = _mm256_set1_ps(x2), v3 = _mm256_set1_ps(x3);
        int j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 s = _mm256_loadu_ps(c + j);
            s = _mm256_fmadd_ps(v0, _mm256_loadu_ps(b0 + j), s);
            s = _mm256_fmadd_ps(v1, _mm256_loadu_ps(b1 + j), s);
            s = _mm256_fmadd_ps(v2, _mm256_loadu_ps(b2 + j), s);
            s = _mm256_fmadd_ps(v3, _mm256_loadu_ps(b3 + j), s);
            _mm256_storeu_ps(c + j, s);
        }
        for (; j < n; j++)
            c[j] += x0 * b0[j] + x1 * b1[j] + x2 * b2[j] + x3 * b3[j];
    }
    for (; p < k; p++) {
        float x = alpha * a[p];
        const float *br = b + (size_t)p * ldb;
        for (int j = 0; j < n; j++)
            c[j] += x * br[j];
    }
}
#endif

/* ---- the driver -------------------------------------------------------------------------- */

void kiln_sgemm_portable(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || alpha == 0.0f) {   /* C = beta * C */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float *cv = &c[(size_t)i * ldc + j];
                *cv = beta == 0.0f ? 0.0f : beta * *cv;
            }
        return;
    }
    bool avx2 = kiln_f32_avx2();
    if (m == 1 && !ta) {
#ifdef KILN_F32_AVX2
        if (avx2) {
            (tb ? gemv_rows_avx2 : gemv_cols_avx2)(n, k, alpha, a, b, ldb, beta, c);
            return;
        }
#endif
        (tb ? gemv_rows_c : gemv_cols_c)(n, k, alpha, a, b, ldb, beta, c);
        return;
    }
    int mr = avx2 ? AMR : GMR, nr = avx2 ? ANR : GNR;
    void (*kernel)(int, const float *restrict, const float *restrict, float *, int, float, float, int, int) = kernel_c;
#ifdef KILN_F32_AVX2
    if (avx2)
        kernel = kernel_avx2;
#endif
    float *ap = pack_space();
    if (!ap) {   /* no memory for packing: correct, if slow */
        kiln_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    float *bp = ap + PACK_A;
    for (int jc = 0; jc < n; jc += NC) {
        int nc = n - jc < NC ? n - jc : NC;
        for (int pc = 0; pc < k; pc += KC) {
            int kc = k - pc < KC ? k - pc : KC;
            float be = pc == 0 ? beta : 1.0f;
            pack_b(tb, b, ldb, pc, kc, jc, nc, nr, bp);
            for (int ic = 0; ic < m; ic += MC) {
                int mc = m - ic < MC ? m - ic : MC;
                pack_a(ta, a, lda, ic, mc, pc, kc, mr, ap);
                for (int jr = 0; jr < nc; jr += nr) {
                    int nv = nc - jr < nr ? nc - jr : nr;
                    const float *bpan = bp + (size_t)jr * kc;
                    for (int ir = 0; ir < mc; ir += mr) {
                        int mv = mc - ir < mr ? mc - ir : mr;
                        kernel(kc, ap + (size_t)ir * kc, bpan, c + (size_t)(ic + ir) * ldc + jc + jr, ldc, alpha, be,
                               mv, nv);
                    }
                }
            }
        }
    }
}
