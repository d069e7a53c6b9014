/* int8 matrix products for quantised inference: u8 activations x s8 weights -> s32. Kernels
 * picked at run time: AVX-512 VNNI (its blocks of 16 rows on AMX where the CPU has AMX-INT8),
 * AVX-VNNI, AVX2, and portable C (the reference; a build option or kiln_qgemm_force_generic()
 * selects it everywhere). */
#ifndef KILN_OPS_QGEMM_H
#define KILN_OPS_QGEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Which kernel family packs and runs the products. */
typedef enum { KILN_QK_GENERIC, KILN_QK_AVX2, KILN_QK_AVXVNNI, KILN_QK_AVX512VNNI } kiln_qkernel;

/* The best kernel this CPU runs (or generic when forced). */
kiln_qkernel kiln_qgemm_kernel(void);
/* Whether this CPU runs kernel family k (the families are not nested: AMD's AVX-512 VNNI CPUs
 * lack AVX-VNNI). */
bool kiln_qgemm_cpu_runs(kiln_qkernel k);
/* Its name: "generic", "avx2", "avx-vnni", "avx512-vnni". */
const char *kiln_qkernel_name(kiln_qkernel k);
/* Forces the generic kernel (true) or restores detection (false). */
void kiln_qgemm_force_generic(bool on);
/* Reduction length padded for the kernels (a multiple of 4). */
int kiln_qgemm_kpad(int k);
/* Bytes of packed weights for m outputs of k inputs. */
size_t kiln_qgemm_packed_bytes(int m, int k);
/* Quantises n weights x symmetric to s8 q (x / scale rounded half away from zero, clamped to
 * +-127, NaN to 0) and returns scale = max|x| / 127 (1 when every x is 0); vectorised for kernel
 * family kind, the same values for every kind. */
float kiln_qgemm_quantize_row(kiln_qkernel kind, const float *x, int n, int8_t *q);
/* Packs row-major s8 weights w (m x k) for kernel kind into packed. */
void kiln_qgemm_pack(kiln_qkernel kind, const int8_t *w, int m, int k, int8_t *packed);
/* c (n x m, s32) = x (n rows of kpad u8, zero beyond k) times the packed weights transposed:
 * c[i][j] = sum_t x[i][t] w[j][t]. */
void kiln_qgemm(kiln_qkernel kind, const uint8_t *x, int n, int k, const int8_t *packed, int m, int32_t *c);
/* Requantisation of the accumulators to u8, per output channel j:
 * out = clamp(round_even((acc + bias_q[j]) * scale[j]), lo - zero, 255 - zero) + zero, the
 * clamp in float (lo = zero fuses a relu). With max4, rows come in groups of four (the windows
 * of a 2x2 max pool) and out row i / 4 is the requantised largest sum of group i / 4: the same
 * as pooling the requantised rows, since requantisation never decreases (scale > 0). */
typedef struct {
    const int32_t *bias_q;
    const float *scale;
    int zero;
    float lo;
    bool max4;
} kiln_qrequant;
/* Whether the AVX-512 VNNI family runs its blocks of 16 rows on AMX here (the CPU has AMX-INT8,
 * Linux grants the tile state, kiln_qgemm_use_amx has not turned it off). */
bool kiln_qgemm_amx(void);
/* Whether a product of kernel kind over rows rows of k inputs runs (its first rows / 16 * 16
 * rows) on AMX. */
bool kiln_qgemm_uses_amx(kiln_qkernel kind, int rows, int k);
/* Lets that family use AMX (true, the default) or not; returns the previous setting. For tests
 * and benchmarks; not to be called while products run. */
bool kiln_qgemm_use_amx(bool on);
/* Whether kernel kind has kiln_qgemm_u8 (else: kiln_qgemm, then requantise the s32 result). */
bool kiln_qgemm_has_u8(kiln_qkernel kind);
/* out (n x m, u8; n / 4 x m with rq->max4, n then a multiple of 4) = the product of kiln_qgemm
 * requantised by rq while in registers (no s32 matrix is written). Only for kernels with
 * kiln_qgemm_has_u8. */
void kiln_qgemm_u8(kiln_qkernel kind, const uint8_t *x, int n, int k, const int8_t *packed, int m,
                   const kiln_qrequant *rq, uint8_t *out);

#endif
