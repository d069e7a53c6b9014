/* int8 products: u8 x s8 -> s32, c[i][j] = sum_t x[i][t] w[j][t].
 *
 * Packed layouts: the generic and AVX2 kernels use plain rows (m x kpad); the VNNI kernel uses
 * groups of four k per 32-bit lane, [kpad/4][mpad][4] with mpad a multiple of 16, so that one
 * 256-bit load holds eight output channels' next four weights and vpdpbusd adds four products per
 * lane. Padding (k to kpad, m to mpad) is zero weights, contributing nothing. */
#include <cpuid.h>
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "ops/avx512_util.h"
#include "ops/qgemm.h"

static int force_generic = -1;   /* -1: not yet decided from the environment */

void kiln_qgemm_force_generic(bool on)
{
    force_generic = on;
}

#ifndef KILN_GENERIC_ONLY
/* AVX-VNNI (CPUID leaf 7, sub-leaf 1, EAX bit 4); asked directly since not every compiler's
 * __builtin_cpu_supports knows the name. */
static bool has_avx_vnni(void)
{
    unsigned a, b, c, d;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
}
#endif

kiln_qkernel kiln_qgemm_kernel(void)
{
#ifdef KILN_GENERIC_ONLY
    return KILN_QK_GENERIC;
#else
    if (force_generic < 0) {
        const char *e = getenv("KILN_GENERIC");
        force_generic = e && *e && *e != '0';
    }
    if (force_generic)
        return KILN_QK_GENERIC;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return KILN_QK_AVX512VNNI;
    if (__builtin_cpu_supports("avx2") && has_avx_vnni())
        return KILN_QK_AVXVNNI;
    if (__builtin_cpu_supports("avx2"))
        return KILN_QK_AVX2;
    return KILN_QK_GENERIC;
#endif
}

bool kiln_qgemm_cpu_runs(kiln_qkernel k)
{
#ifdef KILN_GENERIC_ONLY
    return k == KILN_QK_GENERIC;
#else
    __builtin_cpu_init();
    switch (k) {
    case KILN_QK_GENERIC:
        return true;
    case KILN_QK_AVX2:
        return __builtin_cpu_supports("avx2");
    case KILN_QK_AVXVNNI:
        return __builtin_cpu_supports("avx2") && has_avx_vnni();
    case KILN_QK_AVX512VNNI:
        return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    }
    return false;
#endif
}

const char *kiln_qkernel_name(kiln_qkernel k)
{
    return k == KILN_QK_AVX512VNNI ? "avx512-vnni" : k == KILN_QK_AVXVNNI ? "avx-vnni" : k == KILN_QK_AVX2 ? "avx2" : "generic";
}

int kiln_qgemm_kpad(int k)
{
    return (k + 3) / 4 * 4;
}

static int mpad16(int m)   /* channels padded for the VNNI layouts (a multiple of 32) */
{
    return (m + 31) / 32 * 32;
}

size_t kiln_qgemm_packed_bytes(int m, int k)
{
    return (size_t)mpad16(m) * (size_t)kiln_qgemm_kpad(k);
}

/* One weight to s8 at 1 / scale inv: the reference rounding every path matches. */
static inline int8_t quantize_one(float x, float inv)
{
    float v = x * inv;
    v = v == v ? v : 0.0f;
    v = v > 127.0f ? 127.0f : v;
    v = v < -127.0f ? -127.0f : v;
    return (int8_t)(int32_t)(v + (v < 0 ? -0.5f : 0.5f));
}

#ifndef KILN_GENERIC_ONLY
/* kiln_qgemm_quantize_row, 16 weights per step. */
__attribute__((target("avx512f,avx512bw"))) static float quantize_row_avx512(const float *x, int n, int8_t *q)
{
    __m512 mx = _mm512_setzero_ps();
    int t = 0;
    for (; t + 16 <= n; t += 16)   /* max_ps returns its second operand on NaN: mx, NaN skipped */
        mx = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + t)), mx);
    float m = _mm512_reduce_max_ps(mx);
    for (; t < n; t++) {
        float a = fabsf(x[t]);
        m = a > m ? a : m;
    }
    float inv = m > 0 ? 127.0f / m : 1.0f;
    const __m512 vinv = _mm512_set1_ps(inv), hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
    const __m512i half = _mm512_castps_si512(_mm512_set1_ps(0.5f)), sign = _mm512_set1_epi32((int)0x80000000u);
    for (t = 0; t + 16 <= n; t += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + t), vinv);
        __mmask16 num = _mm512_cmp_ps_mask(v, v, _CMP_ORD_Q);
        v = _mm512_maskz_mov_ps(num, _mm512_max_ps(_mm512_min_ps(v, hi), lo));
        v = _mm512_add_ps(v, _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(v), sign), half)));
        _mm_storeu_si128((__m128i *)(q + t), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(v)));
    }
    for (; t < n; t++)
        q[t] = quantize_one(x[t], inv);
    return m > 0 ? m / 127.0f : 1.0f;
}
#endif

float kiln_qgemm_quantize_row(kiln_qkernel kind, const float *x, int n, int8_t *q)
{
#ifndef KILN_GENERIC_ONLY
    if (kind == KILN_QK_AVX512VNNI)
        return quantize_row_avx512(x, n, q);
#else
    (void)kind;
#endif
    /* the largest |x| in 16 independent chains: a serial max waits on each comparison's
     * latency, and compilers do not vectorise a float max reduction */
    float acc[16] = {0};
    int t = 0;
    for (; t + 16 <= n; t += 16)
        for (int l = 0; l < 16; l++) {
            float a = fabsf(x[t + l]);
            acc[l] = a > acc[l] ? a : acc[l];
        }
    float m = 0;
    for (; t < n; t++) {
        float a = fabsf(x[t]);
        m = a > m ? a : m;
    }
    for (int l = 0; l < 16; l++)
        m = acc[l] > m ? acc[l] : m;
    float inv = m > 0 ? 127.0f / m : 1.0f;
    for (t = 0; t < n; t++)
        q[t] = quantize_one(x[t], inv);
    return m > 0 ? m / 127.0f : 1.0f;
}

void kiln_qgemm_pack(kiln_qkernel kind, const int8_t *w, int m, int k, int8_t *packed)
{
    int kp = kiln_qgemm_kpad(k), mp = mpad16(m);
    bool vnni = kind == KILN_QK_AVXVNNI || kind == KILN_QK_AVX512VNNI;
    if (!vnni) {   /* rows of kp bytes, zero-padded */
        memset(packed, 0, (size_t)mp * kp);
        for (int j = 0; j < m; j++)
            memcpy(packed + (size_t)j * kp, w + (size_t)j * k, (size_t)k);
        return;
    }
    /* VNNI: 4-byte groups of k, all mp channels of a group together. Written in order, one group
     * at a time: the m source rows it reads from stay in L1 for the next group. */
    int k4 = k / 4;
    #pragma omp parallel for if ((size_t)m * k > 65536)
    for (int g = 0; g < kp / 4; g++) {
        int8_t *out = packed + (size_t)g * mp * 4;
        for (int j = 0; j < m; j++) {
            const int8_t *src = w + (size_t)j * k + 4 * g;
            if (g < k4)
                memcpy(out + 4 * j, src, 4);
            else
                for (int b = 0; b < 4; b++)
                    out[4 * j + b] = 4 * g + b < k ? src[b] : 0;
        }
        memset(out + 4 * m, 0, (size_t)(mp - m) * 4);
    }
}

static void qgemm_generic(const uint8_t *x, int n, int kp, const int8_t *w, int m, int32_t *c)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < m; j++) {
            int32_t s = 0;
            for (int t = 0; t < kp; t++)
                s += (int32_t)x[(size_t)i * kp + t] * w[(size_t)j * kp + t];
            c[(size_t)i * m + j] = s;
        }
}

#ifndef KILN_GENERIC_ONLY
/* AVX2 without VNNI: widen 16 values to 16 bits and multiply-add pairs exactly (vpmaddubsw
 * would saturate for u8 x s8 pairs). Tiles of 2 rows x 4 channels share loads. */
__attribute__((target("avx2,fma"))) static int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

__attribute__((target("avx2,fma"))) static void qgemm_avx2(const uint8_t *x, int n, int kp, const int8_t *w, int m,
                                                          int32_t *c)
{
    int k16 = kp / 16 * 16;
    for (int i = 0; i < n; i++) {
        const uint8_t *xr = x + (size_t)i * kp;
        for (int j = 0; j < m; j++) {
            const int8_t *wr = w + (size_t)j * kp;
            __m256i acc = _mm256_setzero_si256();
            for (int t = 0; t < k16; t += 16) {
                __m256i xv = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(xr + t)));
                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr + t)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
            }
            int32_t s = hsum8(acc);
            for (int t = k16; t < kp; t++)
                s += (int32_t)xr[t] * wr[t];
            c[(size_t)i * m + j] = s;
        }
    }
}

/* AVX-VNNI: tiles of 4 rows x 16 channels, eight accumulators; each step broadcasts four u8
 * activations of a row and adds their products with 2 x 8 channels' four weights. */
__attribute__((target("avx2,fma,avxvnni"))) static void qgemm_vnni(const uint8_t *x, int n, int kp,
                                                                  const int8_t *w, int m, int32_t *c)
{
    int mp = mpad16(m), kq = kp / 4;
    for (int j0 = 0; j0 < m; j0 += 16) {
        int i = 0;
        for (; i + 4 <= n; i += 4) {
            __m256i a00 = _mm256_setzero_si256(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00,
                    a30 = a00, a31 = a00;
            const uint8_t *x0 = x + (size_t)i * kp;
            for (int q = 0; q < kq; q++) {
                const int8_t *wq = w + ((size_t)q * mp + j0) * 4;
                __m256i w0 = _mm256_loadu_si256((const __m256i *)wq), w1 = _mm256_loadu_si256((const __m256i *)(wq + 32));
                int32_t v0, v1, v2, v3;
                memcpy(&v0, x0 + 4 * q, 4);
                memcpy(&v1, x0 + kp + 4 * q, 4);
                memcpy(&v2, x0 + 2 * (size_t)kp + 4 * q, 4);
                memcpy(&v3, x0 + 3 * (size_t)kp + 4 * q, 4);
                __m256i b0 = _mm256_set1_epi32(v0), b1 = _mm256_set1_epi32(v1), b2 = _mm256_set1_epi32(v2),
                        b3 = _mm256_set1_epi32(v3);
                a00 = _mm256_dpbusd_avx_epi32(a00, b0, w0);
                a01 = _mm256_dpbusd_avx_epi32(a01, b0, w1);
                a10 = _mm256_dpbusd_avx_epi32(a10, b1, w0);
                a11 = _mm256_dpbusd_avx_epi32(a11, b1, w1);
                a20 = _mm256_dpbusd_avx_epi32(a20, b2, w0);
                a21 = _mm256_dpbusd_avx_epi32(a21, b2, w1);
                a30 = _mm256_dpbusd_avx_epi32(a30, b3, w0);
                a31 = _mm256_dpbusd_avx_epi32(a31, b3, w1);
            }
            int32_t tmp[4][16];
            _mm256_storeu_si256((__m256i *)tmp[0], a00), _mm256_storeu_si256((__m256i *)(tmp[0] + 8), a01);
            _mm256_storeu_si256((__m256i *)tmp[1], a10), _mm256_storeu_si256((__m256i *)(tmp[1] + 8), a11);
            _mm256_storeu_si256((__m256i *)tmp[2], a20), _mm256_storeu_si256((__m256i *)(tmp[2] + 8), a21);
            _mm256_storeu_si256((__m256i *)tmp[3], a30), _mm256_storeu_si256((__m256i *)(tmp[3] + 8), a31);
            int cnt = m - j0 < 16 ? m - j0 : 16;
            for (int r = 0; r < 4; r++)
                memcpy(c + (size_t)(i + r) * m + j0, tmp[r], (size_t)cnt * sizeof(int32_t));
        }
        for (; i < n; i++) {   /* remaining rows one at a time */
            __m256i a0 = _mm256_setzero_si256(), a1 = a0;
            const uint8_t *xr = x + (size_t)i * kp;
            for (int q = 0; q < kq; q++) {
                const int8_t *wq = w + ((size_t)q * mp + j0) * 4;
                int32_t v;
                memcpy(&v, xr + 4 * q, 4);
                __m256i b = _mm256_set1_epi32(v);
                a0 = _mm256_dpbusd_avx_epi32(a0, b, _mm256_loadu_si256((const __m256i *)wq));
                a1 = _mm256_dpbusd_avx_epi32(a1, b, _mm256_loadu_si256((const __m256i *)(wq + 32)));
            }
            int32_t tmp[16];
            _mm256_storeu_si256((__m256i *)tmp, a0);
            _mm256_storeu_si256((__m256i *)(tmp + 8), a1);
            int cnt = m - j0 < 16 ? m - j0 : 16;
            memcpy(c + (size_t)i * m + j0, tmp, (size_t)cnt * sizeof(int32_t));
        }
    }
}

/* acc += dot4(u8 b, s8 w) per lane, in place: GCC 12 copies the accumulator around
 * _mm512_dpbusd_epi32 in loops, doubling the instruction count, so the instruction is written out. */
#define DPBUSD(acc, b, w) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(b), "vm"(w))

/* AVX-512 VNNI: register tiles of R rows x 16*NV channels (R*NV <= 16 accumulators), each step
 * of 4 inputs loading NV weight vectors and broadcasting R input words. A single row (a dense
 * layer at batch 1) runs two accumulator sets over alternate steps, so the dependency chains do
 * not bound it. Channel tails by masked stores (the packing pads channels to 32 with zero
 * weights, so full-width loads stay in bounds). */
/* Sixteen accumulators of one row requantised to u8 (see kiln_qrequant), the lanes in mask
 * stored at dst; as requant_rows_avx2 (src/infer/qforward.c), value for value. */
static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl"))) void
requant16(__m512i acc, __m512i bq, __m512 sc, const kiln_qrequant *rq, __mmask16 mask, uint8_t *dst)
{
    __m512 vlo = _mm512_set1_ps(rq->lo - (float)rq->zero), vhi = _mm512_set1_ps(255.0f - (float)rq->zero);
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(acc, bq)), sc);
    f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
    __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(rq->zero));
    _mm_mask_storeu_epi8(dst, mask, _mm512_cvtusepi32_epi8(q));
}

static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512vnni"))) void
vnni512_tile(const uint8_t *x, int kp, const int8_t *w, int mp, int j0, int kq, int R, int NV, int32_t *c, int m,
             const __mmask16 *mask, const kiln_qrequant *rq, uint8_t *out)
{
    /* every loop over R and NV is unrolled (the pragmas) so that the accumulators live in
     * registers: GCC kept them on the stack otherwise (the reference CNN's conv2 at batch 1 on
     * VNNI: 27.5 us, 14.2 us unrolled) */
    __m512i acc[4][4], acc2[4];
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[r][v] = _mm512_setzero_si512();
    #pragma GCC unroll 4
    for (int v = 0; v < NV; v++)
        acc2[v] = _mm512_setzero_si512();
    int q = 0;
    if (R == 1)
        for (; q + 2 <= kq; q += 2) {
            const int8_t *wq = w + ((size_t)q * mp + j0) * 4;
            int32_t u0, u1;
            memcpy(&u0, x + 4 * q, 4);
            memcpy(&u1, x + 4 * q + 4, 4);
            __m512i b0 = _mm512_set1_epi32(u0), b1 = _mm512_set1_epi32(u1);
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                DPBUSD(acc[0][v], b0, _mm512_loadu_si512(wq + 64 * v));
                DPBUSD(acc2[v], b1, _mm512_loadu_si512(wq + (size_t)mp * 4 + 64 * v));
            }
        }
    for (; q < kq; q++) {
        const int8_t *wq = w + ((size_t)q * mp + j0) * 4;
        __m512i wv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            wv[v] = _mm512_loadu_si512(wq + 64 * v);
        #pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            int32_t u;
            memcpy(&u, x + (size_t)r * kp + 4 * q, 4);
            __m512i b = _mm512_set1_epi32(u);
            #pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                DPBUSD(acc[r][v], b, wv[v]);
        }
    }
    if (R == 1)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[0][v] = _mm512_add_epi32(acc[0][v], acc2[v]);
    if (rq) {   /* requantise in registers */
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            __m512i bq = _mm512_maskz_loadu_epi32(mask[v], rq->bias_q + j0 + 16 * v);
            __m512 sc = _mm512_maskz_loadu_ps(mask[v], rq->scale + j0 + 16 * v);
            if (R == 4 && rq->max4) {   /* one pool window (n is a multiple of 4) */
                __m512i mx = _mm512_max_epi32(_mm512_max_epi32(acc[0][v], acc[1][v]),
                                              _mm512_max_epi32(acc[2][v], acc[3][v]));
                requant16(mx, bq, sc, rq, mask[v], out + j0 + 16 * v);
                continue;
            }
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                requant16(acc[r][v], bq, sc, rq, mask[v], out + (size_t)r * m + j0 + 16 * v);
        }
        return;
    }
    #pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_epi32(c + (size_t)r * m + j0 + 16 * v, mask[v], acc[r][v]);
}

/* The rows of one channel block j0 (NV vectors): 4-row tiles, then the remaining rows. */
#define VNNI512_TILE(R, NV)                                                                             \
    vnni512_tile(x + (size_t)i * kp, kp, w, mp, j0, kq, R, NV, c ? c + (size_t)i * m : NULL, m, mask, rq, \
                 out ? out + (size_t)(rq->max4 ? i / 4 : i) * m : NULL)
#define VNNI512_ROWS(NV)                                                                              \
    do {                                                                                              \
        int i = 0;                                                                                    \
        for (; i + 4 <= n; i += 4)                                                                    \
            VNNI512_TILE(4, NV);                                                                          \
        switch (n - i) {                                                                              \
        case 3: VNNI512_TILE(3, NV); break;                                                               \
        case 2: VNNI512_TILE(2, NV); break;                                                               \
        case 1: VNNI512_TILE(1, NV); break;                                                               \
        default: break;                                                                               \
        }                                                                                             \
    } while (0)

#if defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define KILN_HAVE_AMX 1
#include <sys/syscall.h>
#include <unistd.h>

/* AMX (Intel's tile unit) runs the VNNI family's products 16 rows x 64 channels at a time:
 * TDPBUSD multiplies a 16 x 64-byte tile of u8 rows by a 16 x 64-byte tile of the packed
 * weights, which the [kpad/4][mpad][4] layout already holds (row stride mpad x 4), into 16 x 16
 * s32 sums: the same integer sums as vpdpbusd, so the same results bit for bit. Used for blocks
 * of 16 rows where the CPU has AMX-INT8 and Linux grants the tile state; -1 unknown, 0 no, 1 yes. */
static int amx_state = -1;
static bool amx_off;   /* kiln_qgemm_use_amx(false) */

static bool amx_ready(void)
{
    if (amx_off)
        return false;
    if (amx_state < 0) {
        __builtin_cpu_init();
        bool cpu = __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-int8");
        /* ARCH_REQ_XCOMP_PERM (0x1023) for XFEATURE_XTILEDATA (18): once per process */
        amx_state = cpu && syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }
    return amx_state == 1;
}

/* The tile configuration: palette 1, colsb and rows per tile register. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

/* One k block of 16 rows into up to 4 sum tiles: rows into tile A, each channel block's weights
 * into tile B (tile numbers are immediates, hence a macro). */
#define AMX_BLOCK(A, B)                          \
    do {                                         \
        _tile_loadd(A, xa, kp);                  \
        _tile_loadd(B, wb, ws);                  \
        _tile_dpbusd(0, A, B);                   \
        if (nt > 1) {                            \
            _tile_loadd(B, wb + 64, ws);         \
            _tile_dpbusd(1, A, B);               \
        }                                        \
        if (nt > 2) {                            \
            _tile_loadd(B, wb + 128, ws);        \
            _tile_dpbusd(2, A, B);               \
        }                                        \
        if (nt > 3) {                            \
            _tile_loadd(B, wb + 192, ws);        \
            _tile_dpbusd(3, A, B);               \
        }                                        \
    } while (0)

/* Rows [0, 16) of x times the packed weights, channel blocks of 64 (tiles 0-3), full 64-byte k
 * blocks through tiles 4 (rows) and 5 (weights), the k tail through tiles 6 and 7; sums go
 * through buf to c (s32) or, with rq, requantised to out. */
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl"))) static void
amx_rows16(const uint8_t *x, int kp, const int8_t *w, int mp, int m, int32_t *c, const kiln_qrequant *rq, uint8_t *out,
           int32_t *buf)
{
    const int kb = kp / 64, tail = kp % 64;
    const size_t ws = (size_t)mp * 4;   /* bytes from one group of four k to the next */
    for (int j0 = 0; j0 < m; j0 += 64) {
        int nt = (m - j0 + 15) / 16;
        nt = nt > 4 ? 4 : nt;
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
        for (int b = 0; b <= kb; b++) {
            if (b == kb && !tail)
                break;
            const uint8_t *xa = x + 64 * (size_t)b;
            const int8_t *wb = w + (16 * (size_t)b * mp + j0) * 4;
            if (b < kb)
                AMX_BLOCK(4, 5);   /* a full 64-byte k block */
            else
                AMX_BLOCK(6, 7);   /* the k tail */
        }
        _tile_stored(0, buf, 256);
        _tile_stored(1, buf + 16, 256);
        _tile_stored(2, buf + 32, 256);
        _tile_stored(3, buf + 48, 256);
        for (int v = 0; v < nt; v++) {
            int left = m - j0 - 16 * v;
            __mmask16 mask = kiln_lanes16(left);
            if (rq) {
                __m512i bq = _mm512_maskz_loadu_epi32(mask, rq->bias_q + j0 + 16 * v);
                __m512 sc = _mm512_maskz_loadu_ps(mask, rq->scale + j0 + 16 * v);
                if (rq->max4)   /* four pool windows of four rows */
                    for (int r = 0; r < 4; r++) {
                        const int32_t *g = buf + 256 * r + 16 * v;
                        __m512i mx = _mm512_max_epi32(_mm512_max_epi32(_mm512_loadu_si512(g), _mm512_loadu_si512(g + 64)),
                                                      _mm512_max_epi32(_mm512_loadu_si512(g + 128),
                                                                       _mm512_loadu_si512(g + 192)));
                        requant16(mx, bq, sc, rq, mask, out + (size_t)r * m + j0 + 16 * v);
                    }
                else
                    for (int r = 0; r < 16; r++)
                        requant16(_mm512_loadu_si512(buf + 64 * r + 16 * v), bq, sc, rq, mask,
                                  out + (size_t)r * m + j0 + 16 * v);
            } else {
                for (int r = 0; r < 16; r++)
                    _mm512_mask_storeu_epi32(c + (size_t)r * m + j0 + 16 * v, mask,
                                             _mm512_loadu_si512(buf + 64 * r + 16 * v));
            }
        }
    }
}

/* The first n / 16 * 16 rows by AMX; returns how many rows it did. */
__attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl"))) static int
qgemm_amx(const uint8_t *x, int n, int kp, const int8_t *w, int m, int32_t *c, const kiln_qrequant *rq, uint8_t *out)
{
    int mp = mpad16(m), tail = kp % 64;
    amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 6; t++) {   /* 0-3 sums, 4 rows, 5 weights: 16 x 64 bytes */
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    if (tail) {
        cfg.rows[6] = 16;              /* rows: 16 x tail bytes */
        cfg.colsb[6] = (uint16_t)tail;
        cfg.rows[7] = (uint8_t)(tail / 4);   /* weights: tail / 4 groups x 64 bytes */
        cfg.colsb[7] = 64;
    }
    int32_t buf[16 * 64] __attribute__((aligned(64)));
    _tile_loadconfig(&cfg);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        amx_rows16(x + (size_t)i * kp, kp, w, mp, m, c ? c + (size_t)i * m : NULL, rq,
                   out ? out + (size_t)(rq->max4 ? i / 4 : i) * m : NULL, buf);
    _tile_release();
    return i;
}
#undef AMX_BLOCK
#endif

/* c (s32) or, with rq, out (u8): see kiln_qgemm and kiln_qgemm_u8. */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void qgemm_vnni512(const uint8_t *x, int n, int kp,
                                                                                const int8_t *w, int m, int32_t *c,
                                                                                const kiln_qrequant *rq, uint8_t *out)
{
#ifdef KILN_HAVE_AMX
    if (kiln_qgemm_uses_amx(KILN_QK_AVX512VNNI, n, kp)) {   /* blocks of 16 rows by AMX, the rest below */
        int done = qgemm_amx(x, n, kp, w, m, c, rq, out);
        x += (size_t)done * kp;
        n -= done;
        c = c ? c + (size_t)done * m : NULL;
        out = out ? out + (size_t)(rq->max4 ? done / 4 : done) * m : NULL;
    }
#endif
    int mp = mpad16(m), kq = kp / 4;
    for (int j0 = 0; j0 < m; j0 += 64) {
        int cnt = m - j0 < 64 ? m - j0 : 64;
        __mmask16 mask[4];
        for (int v = 0; v < 4; v++) {
            int left = cnt - 16 * v;
            mask[v] = kiln_lanes16(left);
        }
        if (cnt > 32) {   /* the padded width is a multiple of 32: 64 columns are loadable */
            VNNI512_ROWS(4);
        } else {
            VNNI512_ROWS(2);
        }
    }
}
#undef VNNI512_ROWS
#undef VNNI512_TILE
#endif

void kiln_qgemm(kiln_qkernel kind, const uint8_t *x, int n, int k, const int8_t *packed, int m, int32_t *c)
{
    int kp = kiln_qgemm_kpad(k);
#ifndef KILN_GENERIC_ONLY
    if (kind == KILN_QK_AVX512VNNI) {
        qgemm_vnni512(x, n, kp, packed, m, c, NULL, NULL);
        return;
    }
    if (kind == KILN_QK_AVXVNNI) {
        qgemm_vnni(x, n, kp, packed, m, c);
        return;
    }
    if (kind == KILN_QK_AVX2) {
        qgemm_avx2(x, n, kp, packed, m, c);
        return;
    }
#endif
    qgemm_generic(x, n, kp, packed, m, c);
}

bool kiln_qgemm_has_u8(kiln_qkernel kind)
{
#ifndef KILN_GENERIC_ONLY
    return kind == KILN_QK_AVX512VNNI;
#else
    (void)kind;
    return false;
#endif
}

void kiln_qgemm_u8(kiln_qkernel kind, const uint8_t *x, int n, int k, const int8_t *packed, int m,
                   const kiln_qrequant *rq, uint8_t *out)
{
#ifndef KILN_GENERIC_ONLY
    if (kind == KILN_QK_AVX512VNNI)
        qgemm_vnni512(x, n, kiln_qgemm_kpad(k), packed, m, NULL, rq, out);
#else
    (void)kind, (void)x, (void)n, (void)k, (void)packed, (void)m, (void)rq, (void)out;
#endif
}

bool kiln_qgemm_use_amx(bool on)
{
#ifdef KILN_HAVE_AMX
    bool old = !amx_off;
    amx_off = !on;
    return old;
#else
    (void)on;
    return false;
#endif
}

bool kiln_qgemm_uses_amx(kiln_qkernel kind, int rows, int k)
{
    /* a k of at least one 64-byte tile: shorter ones waste most of each tile step */
    return kind == KILN_QK_AVX512VNNI && rows >= 16 && kiln_qgemm_kpad(k) >= 64 && kiln_qgemm_amx();
}

bool kiln_qgemm_amx(void)
{
#ifdef KILN_HAVE_AMX
    return amx_ready();
#else
    return false;
#endif
}
