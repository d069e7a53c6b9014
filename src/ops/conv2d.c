/* 2-D convolution forward: per image, im2col into the thread's own column buffer (small enough to
 * stay in L2; memory bandwidth, not arithmetic, limits these layers on small machines) and one GEMM
 * per group written straight into the output. Images run in parallel, each GEMM single-threaded.
 * Depthwise convolutions (groups = in channels = out channels) skip both: a direct kernel per
 * channel plane (src/ops/depthwise.c), planes in parallel. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/winograd.h"
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
#include <immintrin.h>

/* One stride-1 output row of an im2col row: d[ox] = s[ox] for ox in [lo, hi), 0 elsewhere in
 * [0, wo); 16 columns per masked load and store (masked-off lanes are not read). */
__attribute__((target("avx512f"))) static void im2col_row_avx512(float *d, const float *s, int lo, int hi, int wo)
{
    for (int ox = 0; ox < wo; ox += 16) {
        int a = lo - ox, b = hi - ox, n = wo - ox;
        a = a < 0 ? 0 : (a > 16 ? 16 : a);
        b = b < 0 ? 0 : (b > 16 ? 16 : b);
        __mmask16 in = (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
        __mmask16 all = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        _mm512_mask_storeu_ps(d + ox, all, _mm512_maskz_loadu_ps(in, s + ox));
    }
}

/* im2col for stride 1, dilation 1 and output rows of at most 16: per (channel, ky, kx) row one
 * precomputed lane mask, then one masked load and store per output row. */
__attribute__((target("avx512f"))) static void im2col_narrow_avx512(const kiln_node *nd, const kiln_node *in,
                                                                   const float *x, float *col)
{
    const int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    const int kh = nd->a.kernel[0], kw = nd->a.kernel[1], py = nd->a.pad[0], px = nd->a.pad[1];
    const size_t p = (size_t)ho * wo;
    const __mmask16 out = (__mmask16)((1u << wo) - 1);
    const __m512 zero = _mm512_setzero_ps();
    float *d = col;
    for (int ci = 0; ci < c; ci++)
        for (int ky = 0; ky < kh; ky++)
            for (int kx = 0; kx < kw; kx++, d += p) {
                int ox0 = kx - px;   /* output column ox reads input column ox + ox0 */
                int lo = -ox0 > 0 ? -ox0 : 0, hi = w - ox0 < wo ? w - ox0 : wo;
                __mmask16 k = lo < hi ? (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1)) : 0;
                const float *src = x + (size_t)ci * h * w + ox0;
                for (int oy = 0; oy < ho; oy++) {
                    int iy = oy - py + ky;
                    __m512 v = iy >= 0 && iy < h ? _mm512_maskz_loadu_ps(k, src + (size_t)iy * w) : zero;
                    _mm512_mask_storeu_ps(d + (size_t)oy * wo, out, v);
                }
            }
}

#endif

void kiln_im2col(const kiln_node *nd, const kiln_node *in, const float *x, float *col)
{
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2];
    int ho = nd->dims[1], wo = nd->dims[2], kh = a->kernel[0], kw = a->kernel[1];
    int sh = a->stride[0], sw = a->stride[1];
    size_t p = (size_t)ho * wo;
    int rows = c * kh * kw;
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
    bool fast = sw == 1 && kiln_f32_avx512();
    if (fast && sh == 1 && a->dilation[0] == 1 && a->dilation[1] == 1 && wo <= 16) {
        im2col_narrow_avx512(nd, in, x, col);
        return;
    }
#endif
    for (int r = 0; r < rows; r++) {
        int ci = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
        int oy0 = ki * a->dilation[0] - a->pad[0], ox0 = kj * a->dilation[1] - a->pad[1];
        const float *src = x + (size_t)ci * h * w;
        float *dst = col + (size_t)r * p;
        /* output columns whose input column lies inside the image: ox in [lo, hi) */
        int lo = ox0 >= 0 ? 0 : (-ox0 + sw - 1) / sw;
        int hi = (w - ox0 + sw - 1) / sw;
        hi = hi < 0 ? 0 : (hi > wo ? wo : hi);
        lo = lo > hi ? hi : lo;
        for (int oy = 0; oy < ho; oy++) {
            int iy = oy0 + oy * sh;
            float *d = dst + (size_t)oy * wo;
            if (iy < 0 || iy >= h) {
                memset(d, 0, (size_t)wo * sizeof(float));
                continue;
            }
            const float *s = src + (size_t)iy * w + ox0;
#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
            if (fast) {
                im2col_row_avx512(d, s, lo, hi, wo);
                continue;
            }
#endif
            for (int ox = 0; ox < lo; ox++)
                d[ox] = 0.0f;
            if (sw == 1 && hi - lo >= 64)
                memcpy(d + lo, s + lo, (size_t)(hi - lo) * sizeof(float));
            else if (sw == 1)   /* short rows: a call costs more than the copy */
                for (int ox = lo; ox < hi; ox++)
                    d[ox] = s[ox];
            else
                for (int ox = lo; ox < hi; ox++)
                    d[ox] = s[ox * sw];
            for (int ox = hi; ox < wo; ox++)
                d[ox] = 0.0f;
        }
    }
}

size_t kiln_conv2d_col_floats(const kiln_node *nd)
{
    return nd->params[0].numel / (size_t)nd->a.units * (size_t)nd->a.groups * (size_t)nd->dims[1] * nd->dims[2];
}

/* groups = in channels = out channels: one kh x kw kernel per channel plane */
bool kiln_conv2d_is_depthwise(const kiln_node *nd, const kiln_node *in)
{
    return nd->a.groups == in->dims[0] && nd->dims[0] == nd->a.groups;
}

static void depthwise_forward(const kiln_graph_t *g, const kiln_node *nd, const kiln_node *in, const float *x,
                              int batch, float *y, int threads, kiln_op act)
{
    const kiln_attrs *a = &nd->a;
    kiln_dw_geom geom = {.h = in->dims[1], .w = in->dims[2], .ho = nd->dims[1], .wo = nd->dims[2],
                         .kh = a->kernel[0], .kw = a->kernel[1], .sh = a->stride[0], .sw = a->stride[1],
                         .ph = a->pad[0], .pw = a->pad[1], .dh = a->dilation[0], .dw = a->dilation[1]};
    const float *w = kiln_node_tensor(g, nd, 0);
    const float *bias = a->no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    int c = nd->dims[0], planes = batch * c;
    size_t in_p = (size_t)geom.h * geom.w, out_p = (size_t)geom.ho * geom.wo, k_n = (size_t)geom.kh * geom.kw;
    /* each plane is one thread's, so the result does not depend on the thread count */
    #pragma omp parallel for schedule(static) num_threads(threads) if (planes > 1 && (double)planes * out_p * k_n >= 1e5)
    for (int t = 0; t < planes; t++) {
        int ch = t % c;
        float *yp = y + (size_t)t * out_p;
        kiln_depthwise_plane(&geom, x + (size_t)t * in_p, w + (size_t)ch * k_n, bias ? bias[ch] : 0.0f, yp);
        if (act != KILN_OP_INPUT)
            kiln_activation_forward(act, a->alpha, yp, yp, out_p);
    }
}

/* One image: im2col into col, the bias, one GEMM per group into y, then the activation. */
static void conv_image(const kiln_graph_t *g, const kiln_node *nd, const kiln_node *in, const float *x, float *y,
                       float *col, kiln_op act)
{
    int groups = nd->a.groups, cout = nd->dims[0], cg = cout / groups;
    int kg = nd->params[0].dims[1] * nd->a.kernel[0] * nd->a.kernel[1];
    int p = nd->dims[1] * nd->dims[2];
    const float *w = kiln_node_tensor(g, nd, 0);
    const float *bias = nd->a.no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    kiln_im2col(nd, in, x, col);
    for (int co = 0; co < cout; co++) {
        float bv = bias ? bias[co] : 0.0f;
        for (int i = 0; i < p; i++)
            y[(size_t)co * p + i] = bv;
    }
    for (int gi = 0; gi < groups; gi++)
        kiln_sgemm(false, false, cg, p, kg, 1.0f, w + (size_t)gi * cg * kg, kg, col + (size_t)gi * kg * p, p, 1.0f,
                   y + (size_t)gi * cg * p, p);
    if (act != KILN_OP_INPUT)
        kiln_activation_forward(act, nd->a.alpha, y, y, nd->numel);
}

void kiln_conv2d_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch,
                         float *y, float *col, int threads, kiln_op act)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    if (threads < 1)
        threads = omp_get_max_threads();
    if (kiln_conv2d_is_depthwise(nd, in)) {
        depthwise_forward(g, nd, in, x, batch, y, threads, act);
        return;
    }
    size_t col_n = kiln_conv2d_col_floats(nd);
    if (batch == 1) {   /* no parallel region (it costs microseconds at batch 1) */
        conv_image(g, nd, in, x, y, col, act);
        return;
    }
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int b = 0; b < batch; b++)
        conv_image(g, nd, in, x + (size_t)b * in->numel, y + (size_t)b * nd->numel,
                   col + (size_t)kiln_thread_id() * col_n, act);
}

size_t kiln_conv2d_pool_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    if (kiln_winograd_applies(nd, in))   /* the transformed kernel, then each thread's space */
        return kiln_winograd_weight_floats(nd, in) + (kiln_winograd_work_floats(nd, in) + nd->numel) * (size_t)threads;
    return (kiln_conv2d_col_floats(nd) + nd->numel) * (size_t)threads;
}

void kiln_conv2d_pool_forward(const kiln_graph_t *g, const kiln_node *nd, const kiln_node *pool, const float *x,
                              int batch, float *pooled, int32_t *argmax, float *work, int threads)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    if (threads < 1)
        threads = omp_get_max_threads();
    /* Winograd (the kernel transformed once for the batch) where it applies, else im2col + GEMM */
    bool wino = kiln_winograd_applies(nd, in);
    float *u = wino ? work : NULL;
    if (wino) {
        kiln_winograd_weights(nd, in, kiln_node_tensor(g, nd, 0), u);
        work += kiln_winograd_weight_floats(nd, in);
    }
    size_t scratch = wino ? kiln_winograd_work_floats(nd, in) : kiln_conv2d_col_floats(nd);
    size_t per = scratch + nd->numel, plane = (size_t)nd->dims[1] * nd->dims[2];
    size_t pplane = (size_t)pool->dims[1] * pool->dims[2];
    #pragma omp parallel for schedule(static) num_threads(threads) if (batch > 1)
    for (int b = 0; b < batch; b++) {
        float *mine = work + (size_t)kiln_thread_id() * per, *yb = mine + scratch;
        if (wino)
            kiln_conv2d_winograd_image(g, nd, u, x + (size_t)b * in->numel, yb, mine, KILN_OP_RELU);
        else
            conv_image(g, nd, in, x + (size_t)b * in->numel, yb, mine, KILN_OP_RELU);
        for (int c = 0; c < nd->dims[0]; c++) {   /* pool the image's planes while they are in cache */
            size_t o = ((size_t)b * nd->dims[0] + c) * pplane;
            kiln_maxpool_2x2_plane(yb + (size_t)c * plane, pooled + o, argmax ? argmax + o : NULL, nd->dims[2],
                                   pool->dims[1], pool->dims[2]);
        }
    }
}
