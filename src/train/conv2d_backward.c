/* Conv2d backward, per image in parallel. The im2col matrix is recomputed from the kept input into
 * the thread's cache-sized buffer rather than kept from the forward pass (writing and re-reading it
 * through memory costs more than lowering it again). Weight and bias gradients accumulate into
 * per-thread partials, summed in a fixed order, so results repeat bit for bit at a given thread
 * count; the input gradient goes by GEMM into the same buffer, then col2im. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "ops/gemm.h"
#include "ops/winograd.h"
#include "train/backward.h"
#ifndef KILN_GENERIC_ONLY
#include <immintrin.h>

/* d[ox] += s[ox] for ox in [lo, hi): 16 columns per masked load, add and store. */
__attribute__((target("avx512f"))) static void add_row_avx512(float *d, const float *s, int lo, int hi)
{
    for (int ox = lo; ox < hi; ox += 16) {
        int n = hi - ox;
        __mmask16 k = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
        _mm512_mask_storeu_ps(d + ox, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + ox), _mm512_maskz_loadu_ps(k, s + ox)));
    }
}

/* col2im for stride 1, dilation 1 and rows of at most 16: each input row gathers every (ky, kx)
 * contribution in one register and is stored once (adding shifted rows through memory would
 * stall on store forwarding). */
__attribute__((target("avx512f"))) static void col2im_narrow_avx512(const kiln_node *nd, const kiln_node *in,
                                                                   const float *col, float *dx)
{
    const int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    const int kh = nd->a.kernel[0], kw = nd->a.kernel[1], py = nd->a.pad[0], px = nd->a.pad[1];
    const size_t p = (size_t)ho * wo;
    const __mmask16 wm = (__mmask16)((1u << w) - 1);
    for (int ci = 0; ci < c; ci++)
        for (int iy = 0; iy < h; iy++) {
            float *d = dx + ((size_t)ci * h + iy) * w;
            __m512 acc = _mm512_maskz_loadu_ps(wm, d);
            for (int ky = 0; ky < kh; ky++) {
                int oy = iy + py - ky;
                if (oy < 0 || oy >= ho)
                    continue;
                for (int kx = 0; kx < kw; kx++) {
                    int ox0 = kx - px;   /* input column ix = ox + ox0 */
                    int lo = ox0 > 0 ? ox0 : 0, hi = wo + ox0 < w ? wo + ox0 : w;
                    if (lo >= hi)
                        continue;
                    __mmask16 k = (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
                    const float *s = col + ((size_t)(ci * kh + ky) * kw + kx) * p + (size_t)oy * wo;
                    acc = _mm512_add_ps(acc, _mm512_maskz_loadu_ps(k, s - ox0));
                }
            }
            _mm512_mask_storeu_ps(d, wm, acc);
        }
}

#endif

/* Sum of n floats in 16 interleaved partial sums (a fixed order; vectorises). */
static float sum_floats(const float *x, int n)
{
    float part[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            part[j] += x[i + j];
    for (int j = 0; i < n; i++, j++)
        part[j] += x[i];
    float s = 0.0f;
    for (int j = 0; j < 16; j++)
        s += part[j];
    return s;
}

/* Adds one image's column matrix back into image layout dx (c, h, w). */
static void col2im(const kiln_node *nd, const kiln_node *in, const float *col, float *dx)
{
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2];
    int ho = nd->dims[1], wo = nd->dims[2], kh = a->kernel[0], kw = a->kernel[1];
    int sw = a->stride[1];
    size_t p = (size_t)ho * wo;
#ifndef KILN_GENERIC_ONLY
    bool fast = sw == 1 && kiln_f32_avx512();
    if (fast && a->stride[0] == 1 && a->dilation[0] == 1 && a->dilation[1] == 1 && w <= 16) {
        col2im_narrow_avx512(nd, in, col, dx);
        return;
    }
#endif
    for (int r = 0; r < c * kh * kw; r++) {
        int ci = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
        int oy0 = ki * a->dilation[0] - a->pad[0], ox0 = kj * a->dilation[1] - a->pad[1];
        int lo = ox0 >= 0 ? 0 : (-ox0 + sw - 1) / sw;
        int hi = (w - ox0 + sw - 1) / sw;
        hi = hi < 0 ? 0 : (hi > wo ? wo : hi);
        lo = lo > hi ? hi : lo;
        const float *src = col + (size_t)r * p;
        float *dst = dx + (size_t)ci * h * w;
        for (int oy = 0; oy < ho; oy++) {
            int iy = oy0 + oy * a->stride[0];
            if (iy < 0 || iy >= h)
                continue;
            float *d = dst + (size_t)iy * w + ox0;
            const float *s = src + (size_t)oy * wo;
#ifndef KILN_GENERIC_ONLY
            if (fast) {
                add_row_avx512(d, s, lo, hi);
                continue;
            }
#endif
            if (sw == 1)
                for (int ox = lo; ox < hi; ox++)
                    d[ox] += s[ox];
            else
                for (int ox = lo; ox < hi; ox++)
                    d[ox * sw] += s[ox];
        }
    }
}

/* Per-thread floats: partial dW and db, then the im2col matrix (also the Winograd work space). */
static size_t part_floats(const kiln_node *nd, const kiln_node *in, bool wino)
{
    size_t col = kiln_conv2d_col_floats(nd), ww = wino ? kiln_winograd_dx_work_floats(nd, in) : 0;
    return nd->params[0].numel + (size_t)nd->dims[0] + (col > ww ? col : ww);
}

size_t kiln_conv2d_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    bool wino = kiln_winograd_dx_applies(nd, in);
    return (size_t)threads * part_floats(nd, in, wino) + (wino ? kiln_winograd_weight_floats(nd, in) : 0);
}

void kiln_conv2d_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    int groups = nd->a.groups, cout = nd->dims[0], cg = cout / groups, batch = a->batch;
    int kg = nd->params[0].dims[1] * nd->a.kernel[0] * nd->a.kernel[1];
    int p = nd->dims[1] * nd->dims[2];
    /* the input gradient by Winograd where it applies (its kernel transformed once per batch,
     * after the per-thread parts), else by GEMM into the column matrix and col2im */
    bool wino = a->dx[0] && kiln_winograd_dx_applies(nd, in);
    size_t wn = nd->params[0].numel, part = part_floats(nd, in, wino);
    const float *w = kiln_node_tensor(g, nd, 0);
    float *u = wino ? a->work + (size_t)a->threads * part : NULL;
    if (wino)
        kiln_winograd_dx_weights(nd, in, w, u);
    float *dw = a->dparams + nd->params[0].offset;
    float *db = nd->a.no_bias ? NULL : a->dparams + nd->params[1].offset;
    int nt = a->threads;
    if (nt > batch)
        nt = batch;
    #pragma omp parallel num_threads(nt)
    {
        int t = kiln_thread_id(), used = omp_get_num_threads();
        float *pw = a->work + (size_t)t * part, *pb = pw + wn, *col = pb + cout;
        memset(pw, 0, (wn + (size_t)cout) * sizeof(float));
        /* a fixed, contiguous range of images per thread */
        int b0 = (int)((long)batch * t / used), b1 = (int)((long)batch * (t + 1) / used);
        for (int b = b0; b < b1; b++) {
            const float *dy = a->dy + (size_t)b * nd->numel;
            kiln_im2col(nd, in, a->in[0] + (size_t)b * in->numel, col);
            for (int co = 0; co < cout; co++)
                pb[co] += sum_floats(dy + (size_t)co * p, p);
            for (int gi = 0; gi < groups; gi++) {
                /* dW_g (cg, kg) += dY_g (cg, p) * col_g^T (p, kg) */
                kiln_sgemm(false, true, cg, kg, p, 1.0f, dy + (size_t)gi * cg * p, p, col + (size_t)gi * kg * p, p,
                           1.0f, pw + (size_t)gi * cg * kg, kg);
            }
            if (!a->dx[0])
                continue;
            if (wino) {
                kiln_winograd_dx_image(nd, in, u, dy, a->acc[0], a->dx[0] + (size_t)b * in->numel, col);
                continue;
            }
            for (int gi = 0; gi < groups; gi++) {
                /* dcol_g (kg, p) = W_g^T (kg, cg) * dY_g (cg, p), over col */
                kiln_sgemm(true, false, kg, p, cg, 1.0f, w + (size_t)gi * cg * kg, kg, dy + (size_t)gi * cg * p, p,
                           0.0f, col + (size_t)gi * kg * p, p);
            }
            float *dx = a->dx[0] + (size_t)b * in->numel;
            if (!a->acc[0])
                memset(dx, 0, in->numel * sizeof(float));
            col2im(nd, in, col, dx);
        }
        #pragma omp barrier
        /* sum the partials in thread order, each thread a slice of the elements */
        size_t sum_n = wn + (size_t)cout;
        size_t e0 = sum_n * (size_t)t / (size_t)used, e1 = sum_n * (size_t)(t + 1) / (size_t)used;
        for (size_t e = e0; e < e1; e++) {
            float s = 0.0f;
            for (int k = 0; k < used; k++)
                s += a->work[(size_t)k * part + e];
            if (e < wn)
                dw[e] = s;
            else if (db)
                db[e - wn] = s;
        }
    }
}
