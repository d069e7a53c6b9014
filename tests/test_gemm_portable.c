/* The portable GEMM (the fp32 GEMM of builds without BLAS), both kernels (AVX2/FMA when the CPU has
 * it, and plain C), against the double-accumulating reference: every transpose combination,
 * shapes on and around the tile and block edges, leading dimensions wider than the matrices,
 * alpha and beta (beta 0 never reads C), and C outside the product left alone. Prints a timing
 * against kiln_sgemm (OpenBLAS in the normal build). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "core/rng.h"
#include "ops/gemm.h"

static kiln_rng rng;

static float urand(void) { return 2.0f * kiln_rng_uniform(&rng) - 1.0f; }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One product against the reference; the error is measured against the sum of the magnitudes of
 * the terms (the scale of fp32 rounding), 1e-5 of it allowed. Returns 1 on a mismatch. */
static int check_case(const char *kernel, bool ta, bool tb, int m, int n, int k, float alpha, float beta, int pad)
{
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *a = malloc((na + 1) * sizeof(float)), *b = malloc((nb + 1) * sizeof(float));
    float *c0 = malloc(nc * sizeof(float)), *c = malloc(nc * sizeof(float)), *ref = malloc(nc * sizeof(float));
    float *aa = malloc((na + 1) * sizeof(float)), *ab = malloc((nb + 1) * sizeof(float)), *mag = malloc(nc * sizeof(float));
    for (size_t i = 0; i < na; i++)
        a[i] = urand(), aa[i] = fabsf(a[i]);
    for (size_t i = 0; i < nb; i++)
        b[i] = urand(), ab[i] = fabsf(b[i]);
    for (size_t i = 0; i < nc; i++) {
        bool inside = (int)(i % ldc) < n;
        c0[i] = beta == 0.0f && inside ? NAN : urand();   /* beta 0: C must not be read */
        mag[i] = inside ? fabsf(c0[i]) : 0.0f;
    }
    memcpy(c, c0, nc * sizeof(float));
    memcpy(ref, c0, nc * sizeof(float));
    kiln_sgemm_portable(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    kiln_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, ref, ldc);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++)
            mag[i] = 0.0f;
    kiln_sgemm_ref(ta, tb, m, n, k, fabsf(alpha), aa, lda, ab, ldb, fabsf(beta), mag, ldc);
    double worst = 0;
    int bad_outside = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= n) {   /* outside the product: untouched, bit for bit */
                bad_outside += memcmp(&c[at], &c0[at], sizeof(float)) != 0;
                continue;
            }
            double e = fabs((double)c[at] - ref[at]) / ((double)mag[at] + 1e-30);
            if (!(e <= worst))
                worst = e;   /* NaN sticks */
        }
    int fail = !(worst <= 1e-5) || bad_outside;
    CHECK(!fail, "%s ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d: error %.3g of the magnitude, %d changed "
          "outside", kernel, ta, tb, m, n, k, alpha, beta, pad, worst, bad_outside);
    free(a), free(b), free(c0), free(c), free(ref), free(aa), free(ab), free(mag);
    return fail;
}

static void test_kernel(const char *kernel)
{
    /* edges of the tiles (4x8, 6x16) and blocks (MC 120, KC 256, NC 1024) */
    static const int ms[] = {1, 2, 4, 5, 6, 7, 13, 119, 120, 121, 250};
    static const int ns[] = {1, 7, 8, 9, 15, 16, 17, 100, 1023, 1025};
    static const int ks[] = {1, 3, 8, 255, 256, 257, 600};
    int fails = 0;
    for (int t = 0; t < 4; t++)
        fails += check_case(kernel, t & 1, t & 2, 130, 1100, 300, 1.0f, 1.0f, 3);   /* every block edge */
    for (int it = 0; it < 160 && fails < 5; it++) {
        bool ta = kiln_rng_below(&rng, 2), tb = kiln_rng_below(&rng, 2);
        int m = ms[kiln_rng_below(&rng, sizeof ms / sizeof *ms)], n = ns[kiln_rng_below(&rng, sizeof ns / sizeof *ns)];
        int k = ks[kiln_rng_below(&rng, sizeof ks / sizeof *ks)];
        if ((double)m * n * k > 4e7)
            k = 3;
        static const float alphas[] = {1.0f, -0.5f, 2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
        fails += check_case(kernel, ta, tb, m, n, k, alphas[it % 3], betas[(it / 3) % 3], (int)kiln_rng_below(&rng, 3));
    }
    /* single rows (the matrix-vector paths) and degenerate products */
    for (int t = 0; t < 4; t++) {
        fails += check_case(kernel, t & 1, t & 2, 1, 10, 784, 1.0f, 1.0f, 0);
        fails += check_case(kernel, t & 1, t & 2, 1, 133, 37, 0.5f, 0.0f, 2);
        fails += check_case(kernel, t & 1, t & 2, 1, 5, 3, 1.0f, 0.5f, 1);
    }
    fails += check_case(kernel, false, false, 5, 7, 0, 1.0f, 0.5f, 1);   /* k = 0: C = beta C */
    fails += check_case(kernel, false, false, 5, 7, 0, 1.0f, 0.0f, 1);
    fails += check_case(kernel, true, false, 6, 9, 11, 0.0f, 0.5f, 1);   /* alpha = 0 */
    printf("%s kernel: %s\n", kernel, fails ? "MISMATCHES" : "all shapes agree with the reference");
}

/* GFLOP/s of f over a few repetitions (best). */
static double rate(void (*f)(bool, bool, int, int, int, float, const float *, int, const float *, int, float, float *,
                             int), bool ta, bool tb, int m, int n, int k)
{
    float *a = malloc((size_t)m * k * sizeof(float)), *b = malloc((size_t)k * n * sizeof(float));
    float *c = calloc((size_t)m * n, sizeof(float));
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = urand();
    for (size_t i = 0; i < (size_t)k * n; i++)
        b[i] = urand();
    double best = 1e30;
    int reps = (int)(2e8 / ((double)m * n * k)) + 1;
    for (int r = 0; r < 3; r++) {
        double t0 = now();
        for (int i = 0; i < reps; i++)
            f(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, c, n);
        double t = (now() - t0) / reps;
        best = t < best ? t : best;
    }
    free(a), free(b), free(c);
    return 2.0 * m * n * k / best * 1e-9;
}

static void timing(void)
{
    static const int shapes[][5] = {{0, 0, 256, 256, 256}, {0, 0, 32, 3136, 288}, {0, 1, 64, 128, 784},
                                    {0, 0, 64, 784, 576}, {0, 1, 1, 128, 784}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int *d = shapes[s];
        double sg = rate(kiln_sgemm, d[0], d[1], d[2], d[3], d[4]);
        double pa = -1, pc;
        if (kiln_f32_avx2())
            pa = rate(kiln_sgemm_portable, d[0], d[1], d[2], d[3], d[4]);
        bool old = kiln_f32_force_generic(true);
        pc = rate(kiln_sgemm_portable, d[0], d[1], d[2], d[3], d[4]);
        kiln_f32_force_generic(old);
        char avx[32] = "n/a";
        if (pa >= 0)
            snprintf(avx, sizeof avx, "%.1f", pa);
        printf("GFLOP/s m=%d n=%d k=%d tb=%d: kiln_sgemm %.1f, portable avx2 %s, portable C %.1f\n", d[2], d[3], d[4],
               d[1], sg, avx, pc);
    }
}

int main(void)
{
    kiln_rng_seed(&rng, 42);
    bool avx2 = kiln_f32_avx2();
    if (avx2)
        test_kernel("avx2");
    else
        printf("avx2 kernel: not run (this CPU or build has no AVX2/FMA path, or KILN_GENERIC is set)\n");
    bool old = kiln_f32_force_generic(true);
    CHECK(!kiln_f32_avx2(), "forcing the C kernels did not take");
    test_kernel("C");
    kiln_f32_force_generic(old);
    CHECK(kiln_f32_avx2() == avx2, "restoring the kernel choice did not take");
    /* kiln_sgemm itself (BLAS, or the portable GEMM without it) */
    float a[6 * 5], b[5 * 7], c[6 * 7], r[6 * 7];
    for (int i = 0; i < 30; i++)
        a[i] = urand();
    for (int i = 0; i < 35; i++)
        b[i] = urand();
    kiln_sgemm(false, false, 6, 7, 5, 1.0f, a, 5, b, 7, 0.0f, c, 7);
    kiln_sgemm_ref(false, false, 6, 7, 5, 1.0f, a, 5, b, 7, 0.0f, r, 7);
    double e = 0;
    for (int i = 0; i < 42; i++)
        e = fmax(e, fabs((double)c[i] - r[i]));
    CHECK(e < 1e-5, "kiln_sgemm differs from the reference by %g", e);
    if (!getenv("KILN_SANITIZED"))
        timing();
    return check_report();
}
