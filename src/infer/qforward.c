/* int8 node execution: conv2d (u8 im2col rows + int8 GEMM + requantisation, per image), dense
 * (int8 GEMM over the batch) and max pooling on u8. Requantisation goes through the real value,
 * so any fused activation applies exactly as in fp32. */
#include <immintrin.h>
#include <math.h>
#include "core/omp_compat.h"
#include <stdlib.h>
#include "core/error.h"
#include "infer/runtime.h"
#include "ops/ops.h"

void kiln_qmodel_free(kiln_qmodel *q, int n)
{
    if (!q)
        return;
    for (int i = 0; q->qw && i < n; i++) {
        kiln_qweights *w = &q->qw[i];
        free(w->w), free(w->packed), free(w->w_scale), free(w->bias), free(w->bias_q), free(w->deq), free(w->requant), free(w->narrow);
    }
    free(q->qw), free(q->qp), free(q->int8), free(q->pool_of), free(q->elem_bytes), free(q->repack);
    free(q);
}

/* The tensor whose layout an int8 node's input has: through a flatten, the tensor flattened. */
static const kiln_node *layout_source(const kiln_graph_t *g, int src)
{
    const kiln_node *s = &g->nodes[src];
    return s->op == KILN_OP_FLATTEN ? &g->nodes[s->inputs[0]] : s;
}

int kiln_qweights_outputs(const kiln_node *nd)
{
    return nd->op == KILN_OP_LINEAR ? nd->a.units : nd->dims[0];
}

void kiln_qtensor_dims(const kiln_graph_t *g, int id, int *c, size_t *hw)
{
    const kiln_node *s = layout_source(g, id);
    *c = s->dims[0];
    *hw = (size_t)s->dims[1] * s->dims[2];
}

void kiln_qinput_dims(const kiln_graph_t *g, int consumer, int src, int *c, size_t *hw)
{
    if (g->nodes[consumer].op == KILN_OP_LINEAR) {   /* a linear's rows keep their order: no NHWC */
        *c = (int)g->nodes[src].numel;
        *hw = 1;
        return;
    }
    kiln_qtensor_dims(g, src, c, hw);
}

void kiln_qweights_derive(const kiln_graph_t *g, kiln_qmodel *q, int id, int8_t *hwc)
{
    kiln_qweights *qw = &q->qw[id];
    const kiln_node *nd = &g->nodes[id];
    kiln_qparams in = q->qp[nd->inputs[0]];
    int m = qw->m, k = qw->k;
    qw->kernel = q->kernel;
    /* u8 activations are NHWC: reorder weight columns from (c, y, x) to (y, x, c) */
    int c = 1;
    size_t hw = 1;
    if (nd->op == KILN_OP_CONV2D) {
        c = g->nodes[nd->inputs[0]].dims[0];
        hw = (size_t)nd->a.kernel[0] * nd->a.kernel[1];
    } else if (nd->op == KILN_OP_LINEAR) {   /* a linear's rows keep their order */
        c = k;
    } else {
        /* dense: a flattened (c, h, w) input arrives NHWC, whether it was u8 already or is
         * quantised on the way in (kiln_quantize_u8 transposes); a vector keeps its order */
        kiln_qtensor_dims(g, nd->inputs[0], &c, &hw);
    }
    /* rows in parallel when large (Selective Backprop requantises its scorer after every update) */
    const int8_t *w = qw->w;   /* a local: stores through int8_t* could alias qw's fields */
    #pragma omp parallel for if ((size_t)m * k > 65536)
    for (int j = 0; j < m; j++) {
        const int cc = c;   /* private copies: the shared ones would be re-read after each store */
        const size_t n = hw;
        const int8_t *src = w + (size_t)j * k;
        int8_t *dst = hwc + (size_t)j * k;
        for (size_t s = 0; s < n; s++, dst += cc) {
            const int8_t *col = src + s;
            for (int ci = 0; ci < cc; ci++, col += n)
                dst[ci] = *col;
        }
    }
    kiln_qgemm_pack(q->kernel, hwc, m, k, qw->packed);
    for (int j = 0; j < m; j++) {
        const int8_t *src = w + (size_t)j * k;
        int32_t wsum = 0;   /* |w| <= 127: no overflow below 2^24 columns */
        for (int t = 0; t < k; t++)
            wsum += src[t];
        qw->deq[j] = in.scale * qw->w_scale[j];
        qw->requant[j] = qw->deq[j] / q->qp[id].scale;
        double b = qw->deq[j] > 0 ? qw->bias[j] / qw->deq[j] : 0;
        if (b > 1e9) b = 1e9;
        if (b < -1e9) b = -1e9;
        qw->bias_q[j] = (int32_t)(llround(b) - (int64_t)in.zero * wsum);
    }
}

static kiln_status narrow_prepare(const kiln_graph_t *g, kiln_qkernel kind, int id, void **out);

kiln_status kiln_qweights_prepare(const kiln_graph_t *g, kiln_qmodel *q, int id)
{
    kiln_qweights *qw = &q->qw[id];
    int m = qw->m, k = qw->k;
    free(qw->packed), free(qw->bias_q), free(qw->deq), free(qw->requant), free(qw->narrow);
    qw->narrow = NULL;
    if (narrow_prepare(g, q->kernel, id, &qw->narrow) != KILN_OK)
        return KILN_ERR_NOMEM;
    qw->requant = malloc((size_t)m * sizeof(float));
    qw->packed = malloc(kiln_qgemm_packed_bytes(m, k));
    qw->bias_q = malloc((size_t)m * sizeof(int32_t));
    qw->deq = malloc((size_t)m * sizeof(float));
    int8_t *hwc = malloc((size_t)m * k);
    if (!qw->packed || !qw->bias_q || !qw->deq || !qw->requant || !hwc) {
        free(hwc);
        return kiln_error(KILN_ERR_NOMEM, "out of memory for int8 weights");
    }
    kiln_qweights_derive(g, q, id, hwc);
    free(hwc);
    return KILN_OK;
}

static float act_apply(kiln_op act, float alpha, float v)
{
    switch (act) {
    case KILN_OP_RELU: return v > 0.0f ? v : 0.0f;
    case KILN_OP_LEAKY_RELU: return v > 0.0f ? v : alpha * v;
    case KILN_OP_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case KILN_OP_TANH: return tanhf(v);
    case KILN_OP_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
    }
}

static inline uint8_t to_u8(float real, kiln_qparams qp)
{
    float q = nearbyintf(real / qp.scale) + (float)qp.zero;
    return (uint8_t)(q < 0.0f ? 0.0f : (q > 255.0f ? 255.0f : q));
}

void kiln_quantize_u8(const float *x, int c, size_t hw, int batch, kiln_qparams qp, uint8_t *q)
{
    float inv = 1.0f / qp.scale, zf = (float)qp.zero;
    if (hw == 1) {   /* no transposition: one pass the compiler vectorises */
        size_t n = (size_t)batch * c;
        for (size_t i = 0; i < n; i++) {
            float v = nearbyintf(x[i] * inv) + zf;
            q[i] = (uint8_t)(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
        }
        return;
    }
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * c * hw;
        uint8_t *qb = q + (size_t)b * c * hw;
        for (int k = 0; k < c; k++)          /* NCHW fp32 -> NHWC u8 */
            for (size_t i = 0; i < hw; i++) {
                float v = nearbyintf(xb[(size_t)k * hw + i] * inv) + (float)qp.zero;
                qb[i * c + k] = (uint8_t)(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
            }
    }
}

void kiln_dequantize_u8(const uint8_t *q, int c, size_t hw, int batch, kiln_qparams qp, float *x)
{
    for (int b = 0; b < batch; b++) {
        const uint8_t *qb = q + (size_t)b * c * hw;
        float *xb = x + (size_t)b * c * hw;
        for (int k = 0; k < c; k++)          /* NHWC u8 -> NCHW fp32 */
            for (size_t i = 0; i < hw; i++)
                xb[(size_t)k * hw + i] = qp.scale * (float)((int)qb[i * c + k] - qp.zero);
    }
}

#ifndef KILN_GENERIC_ONLY
/* 8 channels at a time: (acc + bias) * multiplier, rounded to nearest even, plus the zero point,
 * clamped to [lo, 255], packed to bytes. */
__attribute__((target("avx2,fma"))) static void requant_rows_avx2(const int32_t *acc, int rows, int m,
                                                                 const int32_t *bq, const float *rq, float zf,
                                                                 float lo, uint8_t *out)
{
    __m256 vz = _mm256_set1_ps(zf), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(255.0f);
    int m8 = m / 8 * 8;
    for (int r = 0; r < rows; r++) {
        const int32_t *a = acc + (size_t)r * m;
        uint8_t *o = out + (size_t)r * m;
        for (int j = 0; j < m8; j += 8) {
            __m256i v = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(a + j)),
                                         _mm256_loadu_si256((const __m256i *)(bq + j)));
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(rq + j));
            f = _mm256_add_ps(_mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
            f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);
            __m256i i32 = _mm256_cvtps_epi32(f);
            __m128i i16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
            _mm_storel_epi64((__m128i *)(o + j), _mm_packus_epi16(i16, i16));
        }
        for (int j = m8; j < m; j++) {
            float f = nearbyintf((float)(a[j] + bq[j]) * rq[j]) + zf;
            o[j] = (uint8_t)(f < lo ? lo : (f > 255.0f ? 255.0f : f));
        }
    }
}

#endif

/* Requantises rows x m accumulators (row-major, also the output's NHWC order): u8 through
 * per-channel multipliers (relu or none fused), else through the real value. */
static void requantize(const kiln_qweights *qw, const kiln_node *nd, const int32_t *acc, int rows, bool out_u8,
                       kiln_qparams oq, void *out)
{
    kiln_op act = nd->a.act;
    int m = qw->m;
    if (out_u8 && (act == KILN_OP_INPUT || act == KILN_OP_RELU)) {
        float zf = (float)oq.zero, lo = act == KILN_OP_RELU ? zf : 0.0f;
        uint8_t *o = out;
#ifndef KILN_GENERIC_ONLY
        /* (the AVX-512 VNNI family requantises inside its kernel: kiln_qgemm_u8) */
        if (qw->kernel != KILN_QK_GENERIC) {
            requant_rows_avx2(acc, rows, m, qw->bias_q, qw->requant, zf, lo, o);
            return;
        }
#endif
        for (int r = 0; r < rows; r++) {
            const int32_t *a = acc + (size_t)r * m;
            uint8_t *or = o + (size_t)r * m;
            for (int j = 0; j < m; j++) {
                float v = nearbyintf((float)(a[j] + qw->bias_q[j]) * qw->requant[j]) + zf;
                v = v < lo ? lo : (v > 255.0f ? 255.0f : v);
                or[j] = (uint8_t)v;
            }
        }
        return;
    }
    if (!out_u8) {   /* fp32: dequantise row by row (vectorises), then the fused activation */
        float *o = out;
        for (int r = 0; r < rows; r++) {
            const int32_t *a = acc + (size_t)r * m;
            float *or = o + (size_t)r * m;
            for (int j = 0; j < m; j++)
                or[j] = (float)(a[j] + qw->bias_q[j]) * qw->deq[j];
        }
        if (act != KILN_OP_INPUT)
            kiln_activation_forward(act, nd->a.alpha, o, o, (size_t)rows * m);
        return;
    }
    for (size_t e = 0; e < (size_t)rows * m; e++) {
        int j = (int)(e % (size_t)m);
        float real = act_apply(act, nd->a.alpha, (float)(acc[e] + qw->bias_q[j]) * qw->deq[j]);
        ((uint8_t *)out)[e] = to_u8(real, oq);
    }
}

/* The product of rows u8 rows x and node id's weights, requantised to u8 out; fused into the
 * kernel where it can be (acc unused), else through the s32 matrix acc. With max4 (u8 output,
 * relu or no activation) the rows are 2x2 pool windows, four each, and out gets one row per
 * window: the requantised maximum (see kiln_qrequant). */
static void gemm_requantize(const kiln_qmodel *q, int id, const kiln_node *nd, const uint8_t *x, int rows,
                            int32_t *acc, bool out_u8, bool max4, void *out)
{
    const kiln_qweights *qw = &q->qw[id];
    kiln_qparams oq = q->qp[id];
    kiln_op act = nd->a.act;
    if (out_u8 && (act == KILN_OP_INPUT || act == KILN_OP_RELU) && kiln_qgemm_has_u8(q->kernel)) {
        kiln_qrequant rq = {qw->bias_q, qw->requant, oq.zero, act == KILN_OP_RELU ? (float)oq.zero : 0.0f, max4};
        kiln_qgemm_u8(q->kernel, x, rows, qw->k, qw->packed, qw->m, &rq, out);
        return;
    }
    kiln_qgemm(q->kernel, x, rows, qw->k, qw->packed, qw->m, acc);
    if (max4) {   /* each window's largest sums into its first row's place, in order */
        int m = qw->m;
        for (int r = 0; r < rows / 4; r++) {
            const int32_t *g = acc + (size_t)4 * r * m;
            int32_t *d = acc + (size_t)r * m;
            for (int j = 0; j < m; j++) {
                int32_t a = g[j] > g[m + j] ? g[j] : g[m + j], b = g[2 * m + j] > g[3 * m + j] ? g[2 * m + j] : g[3 * m + j];
                d[j] = a > b ? a : b;
            }
        }
        rows /= 4;
    }
    requantize(qw, nd, acc, rows, out_u8, oq, out);
}

/* Copies len bytes (a window row) from s to r. Short rows move as one 4- or 8-byte word when
 * r_room and s_room (bytes writable at r in this row, readable at s in this image) allow: the
 * extra bytes land where later segments or the row's zero tail are written afterwards. */
static inline void copy_segment(uint8_t *r, const uint8_t *s, size_t len, size_t r_room, size_t s_room)
{
    if (len <= 4 && r_room >= 4 && s_room >= 4) {
        uint32_t v;
        memcpy(&v, s, 4);
        memcpy(r, &v, 4);
    } else if (len <= 8 && r_room >= 8 && s_room >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        memcpy(r, &v, 8);
    } else if (len >= 32) {   /* 32-byte moves, the last one overlapping: no call */
        size_t t = 0;
        for (; t + 32 <= len; t += 32)
            memcpy(r + t, s + t, 32);
        if (t < len)
            memcpy(r + len - 32, s + len - 32, 32);
    } else {
        for (size_t t = 0; t < len; t++)
            r[t] = s[t];
    }
}

/* Bytes of a zero-point-padded copy of conv node nd's input image (0 without padding). */
static size_t padded_bytes(const kiln_node *nd, const kiln_node *in)
{
    if (nd->a.pad[0] == 0 && nd->a.pad[1] == 0)
        return 0;
    return (size_t)in->dims[0] * (in->dims[1] + 2 * nd->a.pad[0]) * (in->dims[2] + 2 * nd->a.pad[1]);
}

/* Row of output pixel (oy, ox) in pool-window order (pw windows per pooled row): window
 * (oy / 2, ox / 2), then (oy % 2, ox % 2) within it; -1 for a pixel no window covers. */
static inline long pool_row(int oy, int ox, int ph, int pw)
{
    if (oy >= 2 * ph || ox >= 2 * pw)
        return -1;
    return ((long)(oy / 2) * pw + ox / 2) * 4 + (oy % 2) * 2 + ox % 2;
}

#ifndef KILN_GENERIC_ONLY
enum { NARROW_VECS = 8, NARROW_ROWS = 8 };   /* most output vectors per block, window rows */

/* Whether narrow_im2row applies: every window inside (dilation 1, padding already applied), a
 * block of P pixels (P kp bytes, a multiple of 64) whose window rows span at most 64 input bytes,
 * AVX-512 VBMI, and products by a kernel other than the generic one (kind). Sets *pix to P. The
 * first layers of image models (1 or 3 channels) qualify. */
static bool narrow_fits(const kiln_node *nd, int c, int kp, kiln_qkernel kind, int *pix)
{
    static int vbmi = -1;
    if (vbmi < 0) {
        __builtin_cpu_init();
        vbmi = __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
    }
    int g = 64;
    while (kp % g)
        g /= 2;
    int p = 64 / g, len = nd->a.kernel[1] * c;
    *pix = p;
    return vbmi && kind != KILN_QK_GENERIC && nd->a.dilation[0] == 1 && nd->a.dilation[1] == 1 &&
           nd->a.kernel[0] <= NARROW_ROWS && p * kp / 64 <= NARROW_VECS && (p - 1) * nd->a.stride[1] * c + len <= 64;
}

static inline __mmask64 first_bytes(long n)
{
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* narrow_im2row's permutation of one block: per output vector, the input byte each output byte
 * takes and, per window row, the output bytes that come from it. */
typedef struct {
    int pix, nv;   /* pixels per block, output vectors per block */
    uint8_t idx[NARROW_VECS][64];
    uint64_t sel[NARROW_VECS][NARROW_ROWS];
} narrow_tab;

/* The tables of conv nd over c channels, kp bytes per row, pix pixels per block (narrow_fits). */
static void narrow_tables(const kiln_node *nd, int c, int kp, int pix, narrow_tab *t)
{
    const int kh = nd->a.kernel[0], len = nd->a.kernel[1] * c, k = kh * len, sx = nd->a.stride[1];
    t->pix = pix;
    t->nv = pix * kp / 64;
    memset(t->sel, 0, sizeof t->sel);
    for (int v = 0; v < t->nv; v++)   /* byte b of the block: pixel b / kp, window byte b % kp */
        for (int i = 0; i < 64; i++) {
            int b = 64 * v + i, p = b / kp, off = b % kp;
            t->idx[v][i] = off < k ? (uint8_t)(p * sx * c + off % len) : 0;
            if (off < k)
                t->sel[v][off / len] |= (uint64_t)1 << i;
        }
}

static kiln_status narrow_prepare(const kiln_graph_t *g, kiln_qkernel kind, int id, void **out)
{
    const kiln_node *nd = &g->nodes[id];
    if (nd->op != KILN_OP_CONV2D)
        return KILN_OK;
    int c = g->nodes[nd->inputs[0]].dims[0], pix, kp = kiln_qgemm_kpad((int)(nd->params[0].numel / nd->dims[0]));
    if (!narrow_fits(nd, c, kp, kind, &pix))
        return KILN_OK;
    narrow_tab *t = malloc(sizeof *t);
    if (!t)
        return kiln_error(KILN_ERR_NOMEM, "out of memory for int8 weights");
    narrow_tables(nd, c, kp, pix, t);
    *out = t;
    return KILN_OK;
}

/* im2row for narrow windows: per block of P pixels of an output row, each window row's 64 input
 * bytes are loaded once and byte-permuted (vpermb) into the block's P x kp output bytes by the
 * tables t; the zero tail of every row comes from the masks. x is the (padded) image of h x w
 * pixels of c channels. Rows in pixel order, or with ph > 0 in pool-window order (pool_row), each
 * block then through a local copy. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void narrow_im2row(const kiln_node *nd, int c, int w,
                                                                                size_t image, const uint8_t *x,
                                                                                int kp, const narrow_tab *t, int ph,
                                                                                int pw, uint8_t *rows)
{
    const int kh = nd->a.kernel[0], len = nd->a.kernel[1] * c;
    const int sy = nd->a.stride[0], sx = nd->a.stride[1], pix = t->pix, nv = t->nv;
    __m512i idx[NARROW_VECS];
    for (int v = 0; v < nv; v++)
        idx[v] = _mm512_loadu_si512(t->idx[v]);
    const long span = (long)(pix - 1) * sx * c + len;   /* input bytes a block's window row reads */
    const int ho = ph ? 2 * ph : nd->dims[1], wo = ph ? 2 * pw : nd->dims[2];   /* pooling: windows only */
    uint8_t block[NARROW_VECS * 64 + 64];   /* + 64: a row's full-vector load stays inside */
    for (int oy = 0; oy < ho; oy++)
        for (int ox0 = 0; ox0 < wo; ox0 += pix) {
            int np = wo - ox0 < pix ? wo - ox0 : pix;
            __m512i src[NARROW_ROWS];
            for (int r = 0; r < kh; r++) {
                size_t at = ((size_t)(oy * sy + r) * w + (size_t)ox0 * sx) * c;
                long room = (long)(image - at);
                src[r] = _mm512_maskz_loadu_epi8(first_bytes(span < room ? span : room), x + at);
            }
            uint8_t *d = ph ? block : rows + ((size_t)oy * nd->dims[2] + ox0) * kp;
            long out = (long)np * kp;
            for (int v = 0; v < nv && 64 * v < out; v++) {
                __m512i o = _mm512_maskz_permutexvar_epi8(t->sel[v][0], idx[v], src[0]);
                for (int r = 1; r < kh; r++)
                    o = _mm512_mask_permutexvar_epi8(o, t->sel[v][r], idx[v], src[r]);
                _mm512_mask_storeu_epi8(d + 64 * v, first_bytes(out - 64 * v), o);
            }
            for (int p = 0; ph && p < np; p++) {   /* a pair of pixels is two adjacent rows */
                int two = (ox0 + p) % 2 == 0 && p + 1 < np && 2 * kp <= 64;
                uint8_t *to = rows + (size_t)pool_row(oy, ox0 + p, ph, pw) * kp;
                if (kp <= 64)
                    _mm512_mask_storeu_epi8(to, first_bytes((1 + two) * kp), _mm512_loadu_si512(block + (size_t)p * kp));
                else
                    memcpy(to, block + (size_t)p * kp, (size_t)kp);
                p += two;
            }
        }
}
#else
static kiln_status narrow_prepare(const kiln_graph_t *g, kiln_qkernel kind, int id, void **out)
{
    (void)g, (void)kind, (void)id, (void)out;
    return KILN_OK;
}
#endif

/* One NHWC u8 image's im2col as rows: pixel p's row holds its window in (ky, kx, c) order
 * (padding reads as the zero point), then zeros up to kpad. A padded input is first copied into
 * padded (padded_bytes), so that every window row is one contiguous copy. Rows are in pixel order,
 * or with pool (the pooled height and width, ph > 0) in pool-window order (pool_row). nt: the
 * narrow_im2row tables where narrow_fits holds, else NULL. */
static void im2row_u8(const kiln_node *nd, const kiln_node *in, const uint8_t *x, uint8_t zero, int kp, uint8_t *rows,
                      uint8_t *padded, int ph, int pw, const void *nt)
{
    /* every attribute in a local: stores through uint8_t* may alias any of them */
    int c = in->dims[0], h = in->dims[1], w = in->dims[2];
    const int ho = nd->dims[1], wo = nd->dims[2];
    const int kh = nd->a.kernel[0], kw = nd->a.kernel[1], k = kh * kw * c;
    int py = nd->a.pad[0], px = nd->a.pad[1];
    const int sy = nd->a.stride[0], sx = nd->a.stride[1];
    if (padded) {
        size_t row = (size_t)(w + 2 * px) * c;
        memset(padded, zero, padded_bytes(nd, in));
        for (int y = 0; y < h; y++)
            memcpy(padded + (size_t)(y + py) * row + (size_t)px * c, x + (size_t)y * w * c, (size_t)w * c);
        x = padded;
        h += 2 * py;
        w += 2 * px;
        py = px = 0;
    }
    const int dy = nd->a.dilation[0], dx = nd->a.dilation[1];
    const size_t image = (size_t)c * h * w, len = (size_t)kw * c, tail = (size_t)(kp - k);
#ifndef KILN_GENERIC_ONLY
    if (nt) {   /* padding is applied by now */
        narrow_im2row(nd, c, w, image, x, kp, nt, ph, pw, rows);
        return;
    }
#else
    (void)nt;
#endif
    if (py == 0 && px == 0 && dy == 1 && dx == 1) {
        /* every window inside: kh contiguous segments per pixel, no bounds tests */
        const size_t wc = (size_t)w * c;
        for (int oy = 0; oy < ho; oy++) {
            const uint8_t *src = x + (size_t)oy * sy * wc;
            uint8_t *r = rows + (size_t)oy * wo * kp;
            for (int ox = 0; ox < wo; ox++, r += kp) {
                if (ph) {
                    long at = pool_row(oy, ox, ph, pw);
                    if (at < 0)
                        continue;
                    r = rows + (size_t)at * kp;
                }
                const uint8_t *s0 = src + (size_t)ox * sx * c;
                for (int ky = 0; ky < kh; ky++)
                    copy_segment(r + ky * len, s0 + ky * wc, len, (size_t)kp - ky * len, image - (size_t)(s0 + ky * wc - x));
                for (size_t t = 0; t < tail; t++)
                    r[(size_t)k + t] = 0;
            }
        }
        return;
    }
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            long at = ph ? pool_row(oy, ox, ph, pw) : (long)oy * wo + ox;
            if (at < 0)
                continue;
            uint8_t *row = rows + (size_t)at * kp, *r = row;
            const int ix0 = ox * sx - px;
            const bool row_inside = dx == 1 && ix0 >= 0 && ix0 + kw <= w;
            for (int ky = 0; ky < kh; ky++) {
                const int iy = oy * sy - py + ky * dy;
                if (row_inside && iy >= 0 && iy < h) {
                    /* the window's row is kw * c contiguous bytes of the NHWC input */
                    size_t at = ((size_t)iy * w + ix0) * c;
                    copy_segment(r, x + at, len, (size_t)kp - (size_t)(r - row), image - at);
                    r += len;
                    continue;
                }
                for (int kx = 0; kx < kw; kx++, r += c) {
                    const int ix = ix0 + kx * dx;
                    const bool inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                    const uint8_t *s = x + ((size_t)iy * w + ix) * c;
                    if (c >= 16)
                        inside ? memcpy(r, s, (size_t)c) : memset(r, zero, (size_t)c);
                    else
                        for (int k2 = 0; k2 < c; k2++)
                            r[k2] = inside ? s[k2] : zero;
                }
            }
            for (size_t t = 0; t < tail; t++)
                r[t] = 0;
        }
}

/* Rows of an example a dense (1) or linear (each leading position) node multiplies. */
static int linear_rows(const kiln_node *nd)
{
    return nd->op == KILN_OP_LINEAR ? (int)(nd->numel / (size_t)nd->a.units) : 1;
}

size_t kiln_qnode_scratch_floats(const kiln_model_t *m, int id, int batch)
{
    const kiln_node *nd = &m->g->nodes[id];
    const kiln_qweights *qw = &m->q->qw[id];
    size_t kp = (size_t)kiln_qgemm_kpad(qw->k);
    if (nd->op == KILN_OP_CONV2D) {   /* per thread: one image's rows and accumulators */
        size_t p = (size_t)nd->dims[1] * nd->dims[2];
        return (p * kp + 3) / 4 + p * (size_t)qw->m + (padded_bytes(nd, &m->g->nodes[nd->inputs[0]]) + 3) / 4;
    }
    if (nd->op == KILN_OP_DENSE || nd->op == KILN_OP_LINEAR) {   /* every row of the batch */
        size_t rows = (size_t)batch * linear_rows(nd);
        return (rows * kp + 3) / 4 + rows * (size_t)qw->m;
    }
    return 0;
}

/* Threads a dense layer's rows are split across: the batch's rows, when there are enough. */
static int dense_parts(int batch, int threads)
{
    return batch >= 16 && threads > 1 ? threads : 1;
}

int kiln_qnode_product_rows(const kiln_model_t *m, int id, int batch, int threads)
{
    const kiln_node *nd = &m->g->nodes[id];
    if (nd->op == KILN_OP_DENSE || nd->op == KILN_OP_LINEAR) {
        int rows = batch * linear_rows(nd);
        return rows / dense_parts(rows, threads);
    }
    int pool = m->q->pool_of[id];
    return pool ? 4 * m->g->nodes[pool].dims[1] * m->g->nodes[pool].dims[2] : nd->dims[1] * nd->dims[2];
}

static void conv_forward(const kiln_model_t *m, int id, const uint8_t *x, void *out, int batch, float *scratch,
                         int threads)
{
    const kiln_node *nd = &m->g->nodes[id], *in = &m->g->nodes[nd->inputs[0]];
    const kiln_qweights *qw = &m->q->qw[id];
    kiln_qparams iq = m->q->qp[nd->inputs[0]];
    bool out_u8 = m->q->elem_bytes[id] == 1;
    int p = nd->dims[1] * nd->dims[2], kp = kiln_qgemm_kpad(qw->k);
    /* with a fused 2x2 max pool: rows of the pool windows only, four per pooled pixel */
    const kiln_node *pool = m->q->pool_of[id] ? &m->g->nodes[m->q->pool_of[id]] : NULL;
    int ph = pool ? pool->dims[1] : 0, pw = pool ? pool->dims[2] : 0, n = kiln_qnode_product_rows(m, id, batch, threads);
    size_t out_each = pool ? pool->numel : nd->numel, pad = padded_bytes(nd, in);
    size_t per = kiln_qnode_scratch_floats(m, id, 1);
    size_t acc_at = ((size_t)p * kp + 3) / 4, pad_at = acc_at + (size_t)p * qw->m;
    const void *nt = qw->narrow;
    #pragma omp parallel for schedule(static) num_threads(threads) if (batch > 1)
    for (int b = 0; b < batch; b++) {
        float *mine = scratch + (size_t)kiln_thread_id() * per;
        uint8_t *rows = (uint8_t *)mine;
        int32_t *acc = (int32_t *)(mine + acc_at);
        uint8_t *padded = pad ? (uint8_t *)(mine + pad_at) : NULL;
        im2row_u8(nd, in, x + (size_t)b * in->numel, (uint8_t)iq.zero, kp, rows, padded, ph, pw, nt);
        if (out_u8) {
            gemm_requantize(m->q, id, nd, rows, n, acc, true, pool != NULL, (uint8_t *)out + (size_t)b * out_each);
        } else {   /* fp32 output stays NCHW: accumulate, then write transposed */
            kiln_qgemm(m->q->kernel, rows, p, qw->k, qw->packed, qw->m, acc);
            float *ob = (float *)out + (size_t)b * nd->numel;
            for (int r = 0; r < p; r++)
                for (int j = 0; j < qw->m; j++)
                    ob[(size_t)j * p + r] = act_apply(nd->a.act, nd->a.alpha,
                                                      (float)(acc[(size_t)r * qw->m + j] + qw->bias_q[j]) * qw->deq[j]);
        }
    }
}

static void dense_forward(const kiln_model_t *m, int id, const uint8_t *x, void *out, int batch, float *scratch,
                          int threads)
{
    const kiln_node *nd = &m->g->nodes[id];
    const kiln_qweights *qw = &m->q->qw[id];
    bool out_u8 = m->q->elem_bytes[id] == 1;
    int kp = kiln_qgemm_kpad(qw->k);
    const uint8_t *rows = x;
    if (kp != qw->k) {   /* rows padded to the kernel's multiple of 4 */
        uint8_t *padded = (uint8_t *)scratch;
        for (int b = 0; b < batch; b++) {
            memcpy(padded + (size_t)b * kp, x + (size_t)b * qw->k, (size_t)qw->k);
            memset(padded + (size_t)b * kp + qw->k, 0, (size_t)(kp - qw->k));
        }
        rows = padded;
    }
    int32_t *acc = (int32_t *)(scratch + ((size_t)batch * kp + 3) / 4);
    size_t ob = out_u8 ? 1 : sizeof(float);
    int parts = dense_parts(batch, threads);
    #pragma omp parallel for schedule(static) num_threads(parts) if (parts > 1)
    for (int t = 0; t < parts; t++) {
        int r0 = (int)((int64_t)batch * t / parts), r1 = (int)((int64_t)batch * (t + 1) / parts);
        gemm_requantize(m->q, id, nd, rows + (size_t)r0 * kp, r1 - r0, acc + (size_t)r0 * qw->m, out_u8, false,
                        (char *)out + (size_t)r0 * qw->m * ob);
    }
}

/* d = the channel-wise maximum of four pixels (vectorises). */
static void max4_u8(uint8_t *restrict d, const uint8_t *restrict p, const uint8_t *restrict q,
                    const uint8_t *restrict u, const uint8_t *restrict v, int c)
{
    for (int k = 0; k < c; k++) {
        uint8_t a = p[k] > q[k] ? p[k] : q[k], b = u[k] > v[k] ? u[k] : v[k];
        d[k] = a > b ? a : b;
    }
}

/* Max pooling over NHWC u8: per output pixel, the channel-wise maximum of the window's pixels. */
static void maxpool_u8(const kiln_node *nd, const kiln_node *in, const uint8_t *x, uint8_t *y, int batch, int threads)
{
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    if (a->kernel[0] == 2 && a->kernel[1] == 2 && a->stride[0] == 2 && a->stride[1] == 2 && a->pad[0] == 0 &&
        a->pad[1] == 0) {   /* the common 2x2 window, every pixel inside; images in parallel */
        #pragma omp parallel for schedule(static) num_threads(threads) if (batch > 1 && threads > 1)
        for (int b = 0; b < batch; b++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    const uint8_t *p = x + (size_t)b * in->numel + ((size_t)2 * oy * w + 2 * ox) * c;
                    max4_u8(y + (size_t)b * nd->numel + ((size_t)oy * wo + ox) * c, p, p + c, p + (size_t)w * c,
                            p + (size_t)w * c + c, c);
                }
        return;
    }
    for (int b = 0; b < batch; b++) {
        const uint8_t *src = x + (size_t)b * in->numel;
        uint8_t *dst = y + (size_t)b * nd->numel;
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                uint8_t *d = dst + ((size_t)oy * wo + ox) * c;
                memset(d, 0, (size_t)c);
                for (int ky = 0; ky < a->kernel[0]; ky++) {
                    int iy = oy * a->stride[0] - a->pad[0] + ky;
                    for (int kx = 0; kx < a->kernel[1] && iy >= 0 && iy < h; kx++) {
                        int ix = ox * a->stride[1] - a->pad[1] + kx;
                        if (ix < 0 || ix >= w)
                            continue;
                        const uint8_t *s = src + ((size_t)iy * w + ix) * c;
                        for (int k = 0; k < c; k++)
                            d[k] = s[k] > d[k] ? s[k] : d[k];
                    }
                }
            }
    }
}

bool kiln_qnode_pooled(const kiln_model_t *m, int id)
{
    const kiln_node *nd = &m->g->nodes[id];
    return m->q && nd->op == KILN_OP_MAXPOOL2D && m->q->pool_of[nd->inputs[0]] == id;
}

void kiln_qnode_forward(const kiln_model_t *m, int id, const void *const *in, void *out, int batch,
                        float *scratch, int threads)
{
    const kiln_node *nd = &m->g->nodes[id];
    switch (nd->op) {
    case KILN_OP_CONV2D:
        conv_forward(m, id, in[0], out, batch, scratch, threads);
        break;
    case KILN_OP_DENSE:
    case KILN_OP_LINEAR:   /* (each row of a linear is one product row) */
        dense_forward(m, id, in[0], out, batch * linear_rows(nd), scratch, threads);
        break;
    case KILN_OP_MAXPOOL2D:   /* (a fused pool never runs: kiln_session_run skips it) */
        maxpool_u8(nd, &m->g->nodes[nd->inputs[0]], in[0], out, batch, threads);
        break;
    default:
        break;
    }
}
