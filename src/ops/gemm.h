/* fp32 matrix multiply: BLAS for speed, a plain C reference as the test oracle. */
#ifndef KILN_OPS_GEMM_H
#define KILN_OPS_GEMM_H

#include <stdbool.h>

/* Row-major C = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T; M x N result, K inner. */
void kiln_sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                const float *b, int ldb, float beta, float *c, int ldc);
/* The same product by plain loops (double accumulation); the oracle for tests. */
void kiln_sgemm_ref(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a,
                    int lda, const float *b, int ldb, float beta, float *c, int ldc);
/* Makes BLAS single-threaded (Kiln threads around it) once per process; safe to call from many
 * threads, and from any number of times. */
void kiln_gemm_init(void);
/* Routes kiln_sgemm through the reference (true) or BLAS (false); returns the previous setting. */
bool kiln_gemm_use_reference(bool on);

#endif
