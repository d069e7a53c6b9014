/* Depthwise convolution, direct: one output plane from one input plane and its kh x kw kernel,
 * with no im2col matrix and no GEMM (whose M would be 1 and whose packing would cost more than the
 * product). Any kernel size, stride, padding and dilation.
 *
 * Every output is bias + the in-range taps in row-major kernel order. The C version adds one tap
 * at a time across an output row (contiguous for stride 1, so the compiler vectorises it); for
 * kernels 3 and 5 wide, one kernel row's taps at a time where all of them lie inside the row.
 * The AVX2/FMA version keeps 8 or 32 outputs of a row in registers while it runs through all the
 * taps: plain loads where every tap of the block lies inside the input row, masked loads (lanes
 * outside the row read as zero and are never touched) for the border blocks; stride 2 loads 16
 * inputs and keeps the even ones. Other strides use the C version. */
#include <stdint.h>
#include <string.h>
#include "ops/gemm.h"

#if !defined(KILN_GENERIC_ONLY) && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define KILN_DW_AVX2 1
#include <immintrin.h>
#endif

/* Output columns [lo, hi) whose input column ox * s + off lies in [0, n), clamped to [0, no). */
static inline void in_range(int off, int s, int n, int no, int *lo, int *hi)
{
    int l, h;
    if (s == 1)   /* no divisions: this runs once per output row */
        l = off >= 0 ? 0 : -off, h = n - off > 0 ? n - off : 0;
    else
        l = off >= 0 ? 0 : (-off + s - 1) / s, h = n - off > 0 ? (n - off + s - 1) / s : 0;
    h = h > no ? no : h;
    *lo = l > h ? h : l;
    *hi = h;
}

enum { KW_CACHED = 32 };   /* kernel columns whose output ranges are computed once per plane */

/* y[lo..hi) += w * x[ox * sw + off]: one tap over part of an output row. */
static inline void tap_pass(float *yr, const float *xr, float wv, int off, int sw, int lo, int hi)
{
    if (sw == 1)
        for (int ox = lo; ox < hi; ox++)
            yr[ox] += wv * xr[ox + off];
    else
        for (int ox = lo; ox < hi; ox++)
            yr[ox] += wv * xr[ox * sw + off];
}

/* One kernel row of 3 or 5 taps over the outputs [lo, hi), all of whose taps lie inside the input
 * row: the taps added one after the other in one pass (a straight-line body the compiler
 * vectorises), rather than one pass per tap. */
static inline void row_pass(float *restrict yr, const float *restrict xr, const float *kr, int kw, int off, int dw,
                            int sw, int lo, int hi)
{
    float k0 = kr[0], k1 = kr[1], k2 = kr[2], k3 = kw == 5 ? kr[3] : 0.0f, k4 = kw == 5 ? kr[4] : 0.0f;
    int o1 = off + dw, o2 = o1 + dw, o3 = o2 + dw, o4 = o3 + dw;   /* indices, never pointers before the row */
    if (kw == 3 && sw == 1)
        for (int ox = lo; ox < hi; ox++)
            yr[ox] = ((yr[ox] + k0 * xr[ox + off]) + k1 * xr[ox + o1]) + k2 * xr[ox + o2];
    else if (kw == 3)
        for (int ox = lo; ox < hi; ox++) {
            int i = ox * sw;
            yr[ox] = ((yr[ox] + k0 * xr[i + off]) + k1 * xr[i + o1]) + k2 * xr[i + o2];
        }
    else if (sw == 1)
        for (int ox = lo; ox < hi; ox++)
            yr[ox] = ((((yr[ox] + k0 * xr[ox + off]) + k1 * xr[ox + o1]) + k2 * xr[ox + o2]) + k3 * xr[ox + o3]) +
                     k4 * xr[ox + o4];
    else
        for (int ox = lo; ox < hi; ox++) {
            int i = ox * sw;
            yr[ox] = ((((yr[ox] + k0 * xr[i + off]) + k1 * xr[i + o1]) + k2 * xr[i + o2]) + k3 * xr[i + o3]) +
                     k4 * xr[i + o4];
        }
}

static void plane_c(const kiln_dw_geom *g, const float *x, const float *k, float bias, float *y)
{
    int lo_c[KW_CACHED] = {0}, hi_c[KW_CACHED] = {0}, kw = g->kw;
    for (int kj = 0; kj < kw && kj < KW_CACHED; kj++)
        in_range(kj * g->dw - g->pw, g->sw, g->w, g->wo, &lo_c[kj], &hi_c[kj]);
    /* kernels 3 and 5 wide: the outputs [xlo, xhi) with every tap inside the row in one pass per
     * kernel row, the others (the borders) tap by tap */
    int xlo = lo_c[0], xhi = kw <= KW_CACHED ? hi_c[kw - 1] : 0;
    bool fused = (kw == 3 || kw == 5) && xhi > xlo;
    for (int oy = 0; oy < g->ho; oy++) {
        float *yr = y + (size_t)oy * g->wo;
        for (int ox = 0; ox < g->wo; ox++)
            yr[ox] = bias;
        for (int ki = 0; ki < g->kh; ki++) {
            int iy = oy * g->sh - g->ph + ki * g->dh;
            if (iy < 0 || iy >= g->h)
                continue;
            const float *xr = x + (size_t)iy * g->w, *kr = k + ki * kw;
            if (fused) {
                row_pass(yr, xr, kr, kw, -g->pw, g->dw, g->sw, xlo, xhi);
                for (int kj = 0; kj < kw; kj++) {
                    int off = kj * g->dw - g->pw;
                    tap_pass(yr, xr, kr[kj], off, g->sw, lo_c[kj], hi_c[kj] < xlo ? hi_c[kj] : xlo);
                    tap_pass(yr, xr, kr[kj], off, g->sw, lo_c[kj] > xhi ? lo_c[kj] : xhi, hi_c[kj]);
                }
                continue;
            }
            for (int kj = 0; kj < kw; kj++) {
                int off = kj * g->dw - g->pw, lo, hi;
                if (kj < KW_CACHED)
                    lo = lo_c[kj], hi = hi_c[kj];
                else
                    in_range(off, g->sw, g->w, g->wo, &lo, &hi);
                tap_pass(yr, xr, kr[kj], off, g->sw, lo, hi);
            }
        }
    }
}

#ifdef KILN_DW_AVX2
/* Lanes l (0..7) with 0 <= first + l < n. */
__attribute__((target("avx2,fma"))) static inline __m256i lanes_inside(int first, int n)
{
    __m256i v = _mm256_add_epi32(_mm256_set1_epi32(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_andnot_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v), _mm256_cmpgt_epi32(_mm256_set1_epi32(n), v));
}

/* The even floats of a (elements 0..7) and b (8..15), in order. */
__attribute__((target("avx2,fma"))) static inline __m256 evens(__m256 a, __m256 b)
{
    __m256 t = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* Row elements [first, first + 8) under mask m: lanes outside the row read as zero and are never
 * accessed (the address of lane 0 may lie outside the row, so it is formed as an integer). */
__attribute__((target("avx2,fma"))) static inline __m256 load_masked(const float *xr, int first, __m256i m)
{
    return _mm256_maskload_ps((const float *)((uintptr_t)xr + (intptr_t)first * (intptr_t)sizeof(float)), m);
}

/* What the blocks of one or two output rows share. */
typedef struct {
    const kiln_dw_geom *g;
    const float *x, *k;
    int iy0, ki0, ki1;     /* the first row: its first input row; kernel rows inside the image (the
                            * same for the second row) */
} dw_rows;

enum { MASKS = 2 * KW_CACHED };   /* masks of one block position (two per kernel column) */

/* The 8-output vectors at ox + step * v, v < nv, of nr output rows (1 or 2; the second one g->sh
 * input rows down), stored at y0 + step * v and y1 + step * v; nr x nv independent accumulators,
 * so the FMA latency is hidden. Plain loads when every tap of the block lies inside the input row
 * (for stride 2 also the float after the last tap), else masked loads: vector v's masks at
 * masks + MASKS * v (each kernel column's, two per column for stride 2), or computed here (masks
 * NULL). Inlined with constant nr, nv and masked. */
__attribute__((target("avx2,fma"), always_inline)) static inline void block(const dw_rows *r, int ox, int step, int nr,
                                                                            int nv, bool masked, const __m256i *masks,
                                                                            __m256 vb, float *y0, float *y1)
{
    const kiln_dw_geom *g = r->g;
    int sw = g->sw, n = g->w, kw = g->kw, dw = g->dw, pw = g->pw, sh = g->sh, dh = g->dh;
    const float *x = r->x, *k = r->k;
    __m256 acc[2][4];
    for (int i = 0; i < nr; i++)
        for (int v = 0; v < nv; v++)
            acc[i][v] = vb;
    for (int ki = r->ki0; ki < r->ki1; ki++) {
        const float *kr = k + ki * kw;
        const float *xr[2];
        for (int i = 0; i < nr; i++)
            xr[i] = x + (size_t)(r->iy0 + i * sh + ki * dh) * n;
        for (int kj = 0; kj < kw; kj++) {
            __m256 wv = _mm256_broadcast_ss(kr + kj);
            for (int v = 0; v < nv; v++) {
                int first = (ox + step * v) * sw - pw + kj * dw;
                const __m256i *mv = masks ? masks + MASKS * v : NULL;
                for (int i = 0; i < nr; i++) {
                    __m256 t;
                    if (!masked)
                        t = sw == 1 ? _mm256_loadu_ps(xr[i] + first)
                                    : evens(_mm256_loadu_ps(xr[i] + first), _mm256_loadu_ps(xr[i] + first + 8));
                    else if (sw == 1)
                        t = load_masked(xr[i], first, mv ? mv[kj] : lanes_inside(first, n));
                    else
                        t = evens(load_masked(xr[i], first, mv ? mv[2 * kj] : lanes_inside(first, n)),
                                  load_masked(xr[i], first + 8, mv ? mv[2 * kj + 1] : lanes_inside(first + 8, n)));
                    acc[i][v] = _mm256_fmadd_ps(wv, t, acc[i][v]);
                }
            }
        }
    }
    for (int v = 0; v < nv; v++) {
        _mm256_storeu_ps(y0 + step * v, acc[0][v]);
        if (nr == 2)
            _mm256_storeu_ps(y1 + step * v, acc[1][v]);
    }
}

/* The masks of every kernel column for the block at ox (see block). */
__attribute__((target("avx2,fma"))) static void column_masks(const kiln_dw_geom *g, int ox, __m256i *masks)
{
    for (int kj = 0; kj < g->kw; kj++) {
        int first = ox * g->sw - g->pw + kj * g->dw;
        if (g->sw == 1)
            masks[kj] = lanes_inside(first, g->w);
        else {
            masks[2 * kj] = lanes_inside(first, g->w);
            masks[2 * kj + 1] = lanes_inside(first + 8, g->w);
        }
    }
}

/* Plain blocks of nv vectors at ox of nr rows, nr and nv made constants for block(). */
__attribute__((target("avx2,fma"))) static inline void inside_block(const dw_rows *r, int ox, int nr, int nv, __m256 vb,
                                                                    float *y0, float *y1)
{
    y0 += ox;
    y1 = nr == 2 ? y1 + ox : NULL;
    if (nr == 2)
        nv == 4 ? block(r, ox, 8, 2, 4, false, NULL, vb, y0, y1)
        : nv == 2 ? block(r, ox, 8, 2, 2, false, NULL, vb, y0, y1) : block(r, ox, 8, 2, 1, false, NULL, vb, y0, y1);
    else
        nv == 4 ? block(r, ox, 8, 1, 4, false, NULL, vb, y0, y1)
        : nv == 2 ? block(r, ox, 8, 1, 2, false, NULL, vb, y0, y1) : block(r, ox, 8, 1, 1, false, NULL, vb, y0, y1);
}

/* One or two output rows with at least 8 inside outputs (xhi - xlo >= 8). Blocks may overlap (an
 * output computed twice comes out the same both times), so a row is: plain blocks from xlo to
 * xhi, 32 wide while they fit, then one of 32, 16 or 8 ending at xhi; and masked blocks at 0 and
 * ending at wo when the borders need them (both in one pass). masks: MASKS for the block at 0,
 * then MASKS for the one at wo - 8 (or NULL). */
__attribute__((target("avx2,fma"))) static inline void rows_interior(const dw_rows *r, int nr, int xlo, int xhi,
                                                                     const __m256i *masks, __m256 vb, float *y0,
                                                                     float *y1)
{
    int wo = r->g->wo, e = wo - 8;
    for (int ox = xlo; ox < xhi;) {
        int rest = xhi - ox;
        int nv = rest > 16 && xhi - 32 >= xlo ? 4 : rest > 8 && xhi - 16 >= xlo ? 2 : 1;
        int at = ox + 8 * nv > xhi ? xhi - 8 * nv : ox;
        inside_block(r, at, nr, nv, vb, y0, y1);
        ox = at + 8 * nv;
    }
    if (xlo > 0 && xhi < wo) {
        if (nr == 2)
            block(r, 0, e, 2, 2, true, masks, vb, y0, y1);
        else
            block(r, 0, e, 1, 2, true, masks, vb, y0, NULL);
    }
    else if (xlo > 0 || xhi < wo) {
        int at = xlo > 0 ? 0 : e;
        const __m256i *m = masks ? masks + (xlo > 0 ? 0 : MASKS) : NULL;
        if (nr == 2)
            block(r, at, 8, 2, 1, true, m, vb, y0 + at, y1 + at);
        else
            block(r, at, 8, 1, 1, true, m, vb, y0 + at, NULL);
    }
}

/* Stride 1 or 2. Output rows go two at a time where both have the same kernel rows inside the
 * image (all but the top and bottom border rows); rows narrower than 8 or without 8 inside outputs
 * go masked, one by one. */
__attribute__((target("avx2,fma"))) static void plane_avx2(const kiln_dw_geom *g, const float *x, const float *k,
                                                           float bias, float *y)
{
    int wo = g->wo, kw = g->kw, sw = g->sw;
    int xlo, xhi, unused, last = (kw - 1) * g->dw - g->pw + (sw == 2);
    in_range(-g->pw, sw, g->w, wo, &xlo, &unused);   /* the first tap is inside from xlo on */
    in_range(last, sw, g->w, wo, &unused, &xhi);     /* the last (and the float after it) up to xhi */
    bool interior = xhi - xlo >= 8;
    __m256i masks[2 * MASKS];   /* the blocks at 0 and at wo - 8 */
    bool cached = kw <= KW_CACHED && interior;
    if (cached) {
        column_masks(g, 0, masks);
        column_masks(g, wo - 8, masks + MASKS);
    }
    __m256 vb = _mm256_set1_ps(bias);
    dw_rows r = {.g = g, .x = x, .k = k};
    for (int oy = 0; oy < g->ho;) {
        float *yr = y + (size_t)oy * wo;
        r.iy0 = oy * g->sh - g->ph;
        in_range(r.iy0, g->dh, g->h, g->kh, &r.ki0, &r.ki1);   /* kernel rows inside the image */
        if (!interior) {
            for (int ox = 0; ox < wo; ox += 8) {
                if (ox + 8 <= wo)
                    block(&r, ox, 8, 1, 1, true, NULL, vb, yr + ox, NULL);
                else {
                    float t[8];
                    block(&r, ox, 8, 1, 1, true, NULL, vb, t, NULL);
                    memcpy(yr + ox, t, (size_t)(wo - ox) * sizeof(float));
                }
            }
            oy++;
            continue;
        }
        int nr = 1;
        if (oy + 1 < g->ho) {
            int ki0, ki1;
            in_range(r.iy0 + g->sh, g->dh, g->h, g->kh, &ki0, &ki1);
            nr = ki0 == r.ki0 && ki1 == r.ki1 ? 2 : 1;
        }
        rows_interior(&r, nr, xlo, xhi, cached ? masks : NULL, vb, yr, yr + wo);
        oy += nr;
    }
}
#endif

void kiln_depthwise_plane(const kiln_dw_geom *g, const float *x, const float *k, float bias, float *y)
{
#ifdef KILN_DW_AVX2
    if ((g->sw == 1 || g->sw == 2) && kiln_f32_avx2()) {
        plane_avx2(g, x, k, bias, y);
        return;
    }
#endif
    plane_c(g, x, k, bias, y);
}
