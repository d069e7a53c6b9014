/* 16 floats as one value (GCC's vector extensions: one zmm, or two ymm without AVX-512) and the
 * row reductions built on them: whole vectors, then the tail, and a tree across the lanes. An
 * OpenMP simd reduction over a short row spills its partial vector to the stack and stalls
 * reading it back, and a lane-by-lane sum is a chain of 15 dependent adds. */
#ifndef KILN_OPS_VEC16_H
#define KILN_OPS_VEC16_H

#include <stdint.h>

/* The alignment of 4 lets a v16 load from any float. The functions take vectors by pointer: no
 * vector crosses a call by value (whose ABI differs with and without AVX-512). */
typedef float kiln_v16 __attribute__((vector_size(64), aligned(4)));
typedef int32_t kiln_v16i __attribute__((vector_size(64), aligned(4)));
typedef float kiln_v8 __attribute__((vector_size(32)));
typedef int32_t kiln_v8i __attribute__((vector_size(32)));
typedef float kiln_v4 __attribute__((vector_size(16)));
typedef int32_t kiln_v4i __attribute__((vector_size(16)));

/* *m = the larger of *m and the 16 floats at x in each lane. */
static inline void kiln_v16_max_into(kiln_v16 *m, const float *x)
{
    kiln_v16 a = *(const kiln_v16 *)x;
    kiln_v16i gt = a > *m;
    *m = (kiln_v16)(((kiln_v16i)a & gt) | ((kiln_v16i)*m & ~gt));
}

/* The sum of v's lanes by halves. */
static inline float kiln_hsum16(const kiln_v16 *p)
{
    kiln_v16 v = *p;
    kiln_v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    kiln_v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

/* The largest of v's lanes by halves. */
static inline float kiln_hmax16(const kiln_v16 *p)
{
    kiln_v16 v = *p;
    kiln_v8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
    kiln_v8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    kiln_v8i g8 = lo > hi;
    kiln_v8 a = (kiln_v8)(((kiln_v8i)lo & g8) | ((kiln_v8i)hi & ~g8));
    kiln_v4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3), d = __builtin_shufflevector(a, a, 4, 5, 6, 7);
    kiln_v4i g4 = c > d;
    kiln_v4 e = (kiln_v4)(((kiln_v4i)c & g4) | ((kiln_v4i)d & ~g4));
    float x = e[0] > e[1] ? e[0] : e[1], y = e[2] > e[3] ? e[2] : e[3];
    return x > y ? x : y;
}

/* The largest of m and x[0..n). */
static inline float kiln_row_max(const float *x, int n, float m)
{
    int j = 0;
    if (n >= 16) {
        kiln_v16 mv = *(const kiln_v16 *)x;
        for (j = 16; j + 16 <= n; j += 16)
            kiln_v16_max_into(&mv, x + j);
        float hm = kiln_hmax16(&mv);
        m = hm > m ? hm : m;
    }
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m;
}

/* The sum of (x[j] - c)^2 over x[0..n) (c 0: of squares) when sq, else of x[j]. */
static inline float kiln_row_sum_dev(const float *x, int n, float c, int sq)
{
    float s = 0.0f;
    int j = 0;
    if (n >= 16) {
        kiln_v16 sv = {0};
        for (; j + 16 <= n; j += 16) {
            kiln_v16 d = *(const kiln_v16 *)(x + j) - c;
            sv += sq ? d * d : d + c;
        }
        s = kiln_hsum16(&sv);
    }
    for (; j < n; j++)
        s += sq ? (x[j] - c) * (x[j] - c) : x[j];
    return s;
}

/* The sum of x[0..n). */
static inline float kiln_row_sum(const float *x, int n)
{
    return kiln_row_sum_dev(x, n, 0.0f, 0);
}

#endif
