/* fp32 GEMM kernel for AVX-512 CPUs. */
#ifndef KILN_OPS_SGEMM_AVX512_H
#define KILN_OPS_SGEMM_AVX512_H

#include <stdbool.h>
#include <stddef.h>

/* Row-major C = alpha * op(A) * op(B) + beta * C on one thread; needs AVX-512F (check with
 * __builtin_cpu_supports("avx512f")). */
void kiln_sgemm_avx512(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                       int ldb, float beta, float *c, int ldc);
/* As kiln_sgemm_avx512, plus bias (n values, or NULL) added to every row of C: the first
 * pass over K writes alpha * A B + beta * C + bias straight from the registers. */
void kiln_sgemm_avx512_bias(bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, const float *bias, float *c, int ldc);
/* Floats of a pre-packed B (n columns, k deep) in the kernel's panel layout (64-byte aligned use). */
size_t kiln_sgemm_avx512_packed_floats(int n, int k);
/* Packs op(B) (k x n; tb: b is n x k) once, for kiln_sgemm_avx512_prepacked (a layer's weight at
 * model load, so batch-1 products skip packing it on every run). */
void kiln_sgemm_avx512_pack_b(bool tb, int n, int k, const float *b, int ldb, float *dst);
/* C = A B + bias (n values or NULL) on one thread, B pre-packed; needs AVX-512F. */
void kiln_sgemm_avx512_prepacked(int m, int n, int k, const float *a, int lda, const float *packed,
                                 const float *bias, float *c, int ldc);
/* The one-row case (src/ops/sgemv_avx512.c): c (n) = alpha * op(B) a + beta * c, with B n x k
 * (tb) or k x n, row stride ldb; needs AVX-512F. */
void kiln_sgemv_avx512(bool tb, int n, int k, float alpha, const float *a, const float *b, int ldb, float beta,
                       float *c);

#endif
