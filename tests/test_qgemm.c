/* int8 GEMM kernels (every one this CPU runs, the AVX-512 VNNI family with and without AMX)
 * against plain loops on random shapes and values, including the extremes (u8 255 x s8 -128)
 * where a saturating kernel would go wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/rng.h"
#include "ops/qgemm.h"

static kiln_rng rng;

/* 120 random products by kernel kind against the plain sums. */
static void check_kernel(int kind, const char *label)
{
    {
        int bad = 0;
        for (int rep = 0; rep < 120; rep++) {
            int n = 1 + (int)kiln_rng_below(&rng, 40), m = 1 + (int)kiln_rng_below(&rng, rep % 2 ? 70 : 200);
            int k = 1 + (int)kiln_rng_below(&rng, rep < 10 ? 20 : 600), kp = kiln_qgemm_kpad(k);
            bool extreme = rep % 5 == 0;
            uint8_t *x = calloc((size_t)n * kp, 1);
            int8_t *w = malloc((size_t)m * k), *packed = malloc(kiln_qgemm_packed_bytes(m, k));
            int32_t *c = malloc((size_t)n * m * 4);
            for (int i = 0; i < n; i++)
                for (int t = 0; t < k; t++)
                    x[(size_t)i * kp + t] = extreme ? 255 : (uint8_t)kiln_rng_below(&rng, 256);
            for (int i = 0; i < m * k; i++)
                w[i] = extreme ? -128 : (int8_t)((int)kiln_rng_below(&rng, 256) - 128);
            kiln_qgemm_pack((kiln_qkernel)kind, w, m, k, packed);
            kiln_qgemm((kiln_qkernel)kind, x, n, k, packed, m, c);
            for (int i = 0; i < n; i++)
                for (int j = 0; j < m; j++) {
                    int64_t s = 0;
                    for (int t = 0; t < k; t++)
                        s += (int64_t)x[(size_t)i * kp + t] * w[(size_t)j * k + t];
                    if (s != c[(size_t)i * m + j]) {
                        if (bad < 3)
                            fprintf(stderr, "%s n=%d m=%d k=%d [%d][%d]: %lld != %d\n",
                                    label, n, m, k, i, j, (long long)s,
                                    c[(size_t)i * m + j]);
                        bad++;
                    }
                }
            free(x), free(w), free(packed), free(c);
        }
        CHECK(bad == 0, "kernel %s: %d wrong sums", label, bad);
        printf("kernel %s: 120 random products exact\n", label);
    }
}

/* Weight quantisation (kiln_qgemm_quantize_row, the path this CPU takes) against the rule
 * written out: scale max|x| / 127, x / scale rounded half away from zero, NaN to 0; on random
 * rows of every length mod 16, with ties, NaNs, zeros and all-zero rows. */
static void check_quantize_row(void)
{
    int bad = 0;
    for (int rep = 0; rep < 200; rep++) {
        int n = 1 + (int)kiln_rng_below(&rng, 100);
        float *x = malloc((size_t)n * sizeof(float));
        int8_t *q = malloc((size_t)n);
        for (int i = 0; i < n; i++) {
            float u = kiln_rng_uniform(&rng) * 2 - 1;
            x[i] = rep % 7 == 0 ? 0.0f : rep % 5 == 0 ? (float)((int)(u * 20)) * 0.5f : u;
        }
        if (rep % 3 == 0 && n > 2)
            x[n / 2] = NAN;
        if (rep % 5 == 0)   /* the largest value exactly 127 halves: ties at every multiple of 0.5 */
            x[0] = 63.5f;
        float scale = kiln_qgemm_quantize_row(kiln_qgemm_kernel(), x, n, q);
        double mx = 0;
        for (int i = 0; i < n; i++)
            mx = isnan(x[i]) || fabs(x[i]) <= mx ? mx : fabs(x[i]);
        float want_scale = mx > 0 ? (float)mx / 127.0f : 1.0f;
        bad += scale != want_scale;
        float inv = mx > 0 ? 127.0f / (float)mx : 1.0f;
        for (int i = 0; i < n; i++) {
            float v = isnan(x[i]) ? 0.0f : x[i] * inv;
            long want = lroundf(v);   /* half away from zero */
            want = want > 127 ? 127 : want < -127 ? -127 : want;
            if (q[i] != want) {
                if (bad < 3)
                    fprintf(stderr, "quantize_row n=%d [%d]: %g -> %d, want %ld\n", n, i, x[i], q[i], want);
                bad++;
            }
        }
        free(x), free(q);
    }
    CHECK(bad == 0, "weight quantisation: %d wrong values or scales", bad);
    printf("weight quantisation (%s path): 200 random rows exact\n",
           kiln_qgemm_kernel() == KILN_QK_AVX512VNNI ? "avx512" : "portable");
}

int main(void)
{
    kiln_rng_seed(&rng, 5);
    kiln_qkernel best = kiln_qgemm_kernel();
    printf("best int8 kernel here: %s%s\n", kiln_qkernel_name(best), kiln_qgemm_amx() ? " (with AMX)" : "");
    for (int kind = KILN_QK_GENERIC; kind <= (int)best; kind++) {
        if (!kiln_qgemm_cpu_runs((kiln_qkernel)kind)) {
            printf("kernel %s: this CPU cannot run it\n", kiln_qkernel_name((kiln_qkernel)kind));
            continue;
        }
        bool amx = kind == KILN_QK_AVX512VNNI && kiln_qgemm_amx();
        check_kernel(kind, amx ? "avx512-vnni + amx" : kiln_qkernel_name((kiln_qkernel)kind));
        if (amx) {   /* and the same family without it */
            kiln_qgemm_use_amx(false);
            check_kernel(kind, "avx512-vnni without amx");
            kiln_qgemm_use_amx(true);
        }
    }
    check_quantize_row();
    kiln_qgemm_force_generic(true);   /* and the portable path */
    check_quantize_row();
    kiln_qgemm_force_generic(false);
    return check_report();
}
