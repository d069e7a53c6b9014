/* fp32 GEMM through CBLAS (OpenBLAS), or through the portable GEMM (gemm_portable.c) in builds
 * without BLAS (KILN_BLAS undefined: KILN_MINIMAL), with a reference path. */
#ifdef KILN_BLAS
#include <cblas.h>
#endif
#include <pthread.h>
#include <string.h>
#include "core/omp_compat.h"
#include "kiln/kiln.h"
#include "ops/gemm.h"
#include "ops/sgemm_avx512.h"

static bool use_reference;

bool kiln_gemm_use_reference(bool on)
{
    bool old = use_reference;
    use_reference = on;
    return old;
}

void kiln_sgemm_ref(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc)
{
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int p = 0; p < k; p++) {
                float av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                s += (double)av * bv;
            }
            float *cv = &c[(size_t)i * ldc + j];
            *cv = (float)(alpha * s + (beta == 0 ? 0.0 : (double)beta * *cv));
        }
    }
}

#ifndef KILN_BLAS
/* One single-threaded product, CBLAS's way. */
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };

static void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)order;
    kiln_sgemm_portable(ta == CblasTrans, tb == CblasTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
#endif

bool kiln_f32_avx512(void)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    static int ok = -1;
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("avx512f");
    }
    return ok && kiln_f32_avx2();   /* kiln_f32_avx2 is false when generic kernels are forced */
#else
    return false;
#endif
}

/* One single-threaded product: the AVX-512 kernel where it pays (it packs both operands, so the
 * product must be large enough in every dimension), else BLAS (or the portable GEMM). */
static bool avx512_pays(int m, int n, int k)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    return m >= 8 && n >= 24 && k >= 8 && kiln_f32_avx512();
#else
    return false;
#endif
}

/* bias (n values added to every row, or NULL) only where avx512_pays. */
static void gemm1(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                  int ldb, float beta, const float *bias, float *c, int ldc)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    if (avx512_pays(m, n, k)) {
        kiln_sgemm_avx512_bias(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, bias, c, ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}

static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;

static void gemm_init_once(void)
{
#ifdef KILN_BLAS
    int n = omp_get_max_threads();   /* see kiln_set_threads */
    openblas_set_num_threads(1);
    omp_set_num_threads(n);
#endif
}

void kiln_gemm_init(void)
{
    pthread_once(&gemm_once, gemm_init_once);
}

static void sgemm_split(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                        int ldb, float beta, const float *bias, float *c, int ldc);

void kiln_sgemm_bias(bool tb, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                     const float *bias, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    kiln_gemm_init();
    if (!use_reference && m > 1 && avx512_pays(m, n, k)) {   /* the bias in the kernel's first pass */
        sgemm_split(false, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, bias, c, ldc);
        return;
    }
    for (int i = 0; i < m; i++)
        memcpy(c + (size_t)i * ldc, bias, (size_t)n * sizeof(float));
    kiln_sgemm(false, tb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, c, ldc);
}

size_t kiln_sgemm_packed_floats(int n, int k)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    return kiln_f32_avx512() && n >= 24 && k >= 8 ? kiln_sgemm_avx512_packed_floats(n, k) : 0;
#else
    (void)n, (void)k;
    return 0;
#endif
}

void kiln_sgemm_pack_b(bool tb, int n, int k, const float *b, int ldb, float *dst)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    kiln_sgemm_avx512_pack_b(tb, n, k, b, ldb, dst);
#else
    (void)tb, (void)n, (void)k, (void)b, (void)ldb, (void)dst;
#endif
}

bool kiln_sgemm_prepacked(int m, int n, int k, const float *a, int lda, const float *packed, const float *bias,
                          float *c, int ldc)
{
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (!packed || use_reference || m <= 1 || !avx512_pays(m, n, k) || (nt > 1 && (double)m * n * k >= 2e5))
        return false;   /* the one-row, reference and multi-threaded cases go kiln_sgemm's way */
    kiln_sgemm_avx512_prepacked(m, n, k, a, lda, packed, bias, c, ldc);
    return true;
#else
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)packed, (void)bias, (void)c, (void)ldc;
    return false;
#endif
}

void kiln_sgemm(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (use_reference) {
        kiln_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    kiln_gemm_init();
    if (m == 1 && !ta) {
        /* a single row (batch-1 dense layers): a matrix-vector product, no packing of B */
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
        if (kiln_f32_avx512()) {   /* 3136 x 128, weights in L2: 11.7 us vs OpenBLAS 15.1 (equal from L3) */
            kiln_sgemv_avx512(tb, n, k, alpha, a, b, ldb, beta, c);
            return;
        }
#endif
#ifdef KILN_BLAS
        if (tb)   /* c = B (n x k) a */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, alpha, b, ldb, a, 1, beta, c, 1);
        else      /* c = B^T a, B (k x n) */
            cblas_sgemv(CblasRowMajor, CblasTrans, k, n, alpha, b, ldb, a, 1, beta, c, 1);
#else
        kiln_sgemm_portable(false, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
        return;
    }
    sgemm_split(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, NULL, c, ldc);
}

/* gemm1 on one block of the larger output dimension per thread (one block when small). */
static void sgemm_split(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                        int ldb, float beta, const float *bias, float *c, int ldc)
{
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > 1 && (double)m * n * k < 2e5)
        nt = 1;
    if (nt == 1) {
        gemm1(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, bias, c, ldc);
        return;
    }
    /* BLAS runs single-threaded (see kiln_set_threads); split the larger output dimension into
     * one block per thread. Each output element is computed by one thread over the whole K, so
     * the result does not depend on the thread count. */
    bool split_m = m >= n;
    int len = split_m ? m : n, step = (len + nt - 1) / nt;
    step = (step + 15) / 16 * 16;
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (int i0 = 0; i0 < len; i0 += step) {
        int cnt = len - i0 < step ? len - i0 : step;
        if (split_m)
            gemm1(ta, tb, cnt, n, k, alpha, ta ? a + i0 : a + (size_t)i0 * lda, lda, b, ldb, beta, bias,
                  c + (size_t)i0 * ldc, ldc);
        else
            gemm1(ta, tb, m, cnt, k, alpha, a, lda, tb ? b + (size_t)i0 * ldb : b + i0, ldb, beta,
                  bias ? bias + i0 : NULL, c + i0, ldc);
    }
}

void kiln_set_threads(int n)
{
    if (n < 1)
        n = 1;
    kiln_gemm_init();
    /* Kiln parallelises around BLAS calls itself; OpenBLAS threads inside our OpenMP regions
     * oversubscribe the cores (measured: 2.3x slower training). OpenBLAS's OpenMP build sets the
     * OpenMP thread count in openblas_set_num_threads, so ours comes after it. */
#ifdef KILN_BLAS
    openblas_set_num_threads(1);
#endif
    omp_set_num_threads(n);
}
