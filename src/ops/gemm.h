/* fp32 matrix multiply: BLAS for speed (or, built without BLAS, a portable blocked GEMM), a plain C
 * reference as the test oracle; and the depthwise convolution kernel, which needs no GEMM. */
#ifndef KILN_OPS_GEMM_H
#define KILN_OPS_GEMM_H

#include <stdbool.h>
#include <stddef.h>

/* Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; M x N result, K inner. */
void kiln_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);
/* Row-major C = A * op(B) + bias (n values added to every row): the bias in the AVX-512
 * kernel's first pass where it runs (no separate pass over C), else copied into C first. */
void kiln_sgemm_bias(bool trans_b, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
                     const float *bias, float *c, int ldc);
/* Floats of B (k x n) packed for kiln_sgemm_prepacked: 0 when the CPU or build has no packed
 * kernel (AVX-512) or the shape would not run on it. */
size_t kiln_sgemm_packed_floats(int n, int k);
/* Packs op(B) (tb: b is n x k) into dst (kiln_sgemm_packed_floats of them, 64-byte aligned). */
void kiln_sgemm_pack_b(bool trans_b, int n, int k, const float *b, int ldb, float *dst);
/* C = A B + bias (n values or NULL) from a pre-packed B; false (nothing done) where the packed
 * kernel does not run (one row, the reference forced, a multi-threaded product): call
 * kiln_sgemm_bias then. */
bool kiln_sgemm_prepacked(int m, int n, int k, const float *a, int lda, const float *packed, const float *bias,
                          float *c, int ldc);
/* The same product by plain loops (double accumulation); the oracle for tests. */
void kiln_sgemm_ref(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* Makes BLAS single-threaded (Kiln threads around it) once per process; safe to call from many
 * threads, and from any number of times. */
void kiln_gemm_init(void);
/* Routes kiln_sgemm through the reference (true) or BLAS (false); returns the previous setting. */
bool kiln_gemm_use_reference(bool on);

/* The portable GEMM (src/ops/gemm_portable.c), kiln_sgemm's engine in builds without BLAS
 * (KILN_BLAS off): packed panels with cache blocking and a register-tiled micro-kernel, AVX2/FMA
 * or plain C (see kiln_f32_avx2). Single-threaded (kiln_sgemm splits the work around it). Same
 * arguments as kiln_sgemm. */
void kiln_sgemm_portable(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* Whether the fp32 kernels with two versions (the portable GEMM, depthwise convolution) run their
 * AVX2/FMA one: the CPU has AVX2 and FMA, the environment has no KILN_GENERIC (other than "0"),
 * nothing forced the C versions, and the build is not KILN_GENERIC_ONLY. */
bool kiln_f32_avx2(void);
/* Whether the AVX-512 fp32 paths (GEMM, im2col/col2im rows, pooling) run: the CPU has AVX-512F,
 * the build allows it, and generic kernels are not forced (KILN_GENERIC). */
bool kiln_f32_avx512(void);
/* Forces the plain C versions of those kernels (true) or lets the CPU decide (false); returns the
 * previous setting. For tests; not to be called while kernels run. */
bool kiln_f32_force_generic(bool on);

/* Geometry of one depthwise channel plane: input h x w, output ho x wo, kernel kh x kw, stride,
 * zero padding and dilation (all >= 1 but the padding, as in the graph's attributes). */
typedef struct {
    int h, w, ho, wo;
    int kh, kw, sh, sw, ph, pw, dh, dw;
} kiln_dw_geom;
/* One output plane of a depthwise convolution (src/ops/depthwise.c): y (ho x wo) = bias + the
 * kernel k (kh x kw) correlated with the plane x (h x w), taps summed in row-major kernel order.
 * AVX2/FMA or plain C as kiln_f32_avx2() says. */
void kiln_depthwise_plane(const kiln_dw_geom *geom, const float *x, const float *k, float bias, float *y);

#endif
