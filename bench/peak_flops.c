/* Measures this machine's peak fp32 FLOP/s with an FMA-throughput loop, on 1 thread and on 2
 * threads (OpenMP), for the bench's efficiency figure (bench/RESULTS.md).
 *
 * Each thread runs ACC independent chains of vfmadd (a = a * m + c) on 8-lane ymm registers:
 * an FMA has a latency of 4-5 cycles and modern x86 cores issue two per cycle, so at least
 * 2 x 5 = 10 chains are needed to keep both FMA pipes busy; 12 leaves margin and still fits the
 * 16 ymm registers with the two constants. One FMA = 2 FLOPs per lane.
 * When the CPU has AVX-512F, the same loop on 16-lane zmm registers is measured as well
 * (reported separately: Kiln's GEMMs run OpenBLAS's AVX2 kernels here, OPENBLAS_CORETYPE=Haswell).
 *
 * build: cc -O2 -mavx2 -mfma -fopenmp bench/peak_flops.c -o peak_flops
 * usage: peak_flops [SECONDS_PER_MEASUREMENT]   (prints one JSON object) */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACC 12
#define INNER 1000  /* iterations between clock reads */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Runs FMA chains for about `seconds`; returns FLOPs done and stores a checksum (so the
 * compiler keeps the work). */
static double fma_avx2(double seconds, float *sink)
{
    __m256 a[ACC];
    for (int i = 0; i < ACC; i++)
        a[i] = _mm256_set1_ps(1.0f + 1e-3f * (float)i);
    /* m slightly below 1 and c small keep the values bounded (a -> c / (1 - m)) and normal. */
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    double t0 = now_s(), flops = 0;
    do {
        for (int it = 0; it < INNER; it++) {
#define STEP(i) a[i] = _mm256_fmadd_ps(a[i], m, c);
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5)
            STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
        }
        flops += (double)INNER * ACC * 8 * 2;
    } while (now_s() - t0 < seconds);
    __m256 s = a[0];
    for (int i = 1; i < ACC; i++)
        s = _mm256_add_ps(s, a[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    *sink = out[0];
    return flops;
}

__attribute__((target("avx512f"))) static double fma_avx512(double seconds, float *sink)
{
    __m512 a[ACC];
    for (int i = 0; i < ACC; i++)
        a[i] = _mm512_set1_ps(1.0f + 1e-3f * (float)i);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    double t0 = now_s(), flops = 0;
    do {
        for (int it = 0; it < INNER; it++) {
#define STEP(i) a[i] = _mm512_fmadd_ps(a[i], m, c);
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5)
            STEP(6) STEP(7) STEP(8) STEP(9) STEP(10) STEP(11)
#undef STEP
        }
        flops += (double)INNER * ACC * 16 * 2;
    } while (now_s() - t0 < seconds);
    __m512 s = a[0];
    for (int i = 1; i < ACC; i++)
        s = _mm512_add_ps(s, a[i]);
    *sink = _mm512_reduce_add_ps(s);
    return flops;
}

/* Best of `reps` measurements of the FLOP rate of `threads` threads running kernel at once. */
static double measure(double (*kernel)(double, float *), int threads, double seconds, int reps, float *sink)
{
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double total = 0, t0 = 0, t1 = 0;
        #pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            float s;
            #pragma omp barrier
            #pragma omp master
            t0 = now_s();
            total += kernel(seconds, &s);
            #pragma omp atomic
            *sink += s;
            #pragma omp barrier
            #pragma omp master
            t1 = now_s();
        }
        double rate = total / (t1 - t0);
        if (rate > best)
            best = rate;
    }
    return best;
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    if (!(seconds > 0))
        seconds = 0.5;
    int reps = 3, maxt = omp_get_num_procs();
    float sink = 0;
    measure(fma_avx2, 1, 0.2, 1, &sink); /* warm-up: clocks up, pages in */
    double a1 = measure(fma_avx2, 1, seconds, reps, &sink);
    double a2 = measure(fma_avx2, 2, seconds, reps, &sink);
    printf("{\"accumulators\":%d,\"seconds_per_measurement\":%g,\"best_of\":%d,\"procs\":%d,"
           "\"avx2_fma_gflops_1t\":%.2f,\"avx2_fma_gflops_2t\":%.2f",
           ACC, seconds, reps, maxt, a1 * 1e-9, a2 * 1e-9);
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        double z1 = measure(fma_avx512, 1, seconds, reps, &sink);
        double z2 = measure(fma_avx512, 2, seconds, reps, &sink);
        printf(",\"avx512_fma_gflops_1t\":%.2f,\"avx512_fma_gflops_2t\":%.2f", z1 * 1e-9, z2 * 1e-9);
    } else {
        printf(",\"avx512_fma_gflops_1t\":null,\"avx512_fma_gflops_2t\":null");
    }
    printf(",\"checksum\":%g}\n", (double)sink);
    return 0;
}
