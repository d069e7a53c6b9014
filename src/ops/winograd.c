/* Winograd F(2x2, 3x3) convolution for fp32 inference on AVX-512 CPUs (Lavin & Gray, "Fast
 * Algorithms for Convolutional Neural Networks", arXiv 1509.09308). Each 2x2 output tile comes
 * from a 4x4 input tile: V = B^T d B per input channel, M = sum over input channels of U . V
 * (U = G g G^T, the kernel's transform, prepared once per model), Y = A^T M A. The 16 products
 * per tile are 16 small GEMMs over the channels, 2.25x fewer multiplications than the direct
 * 3x3 sum.
 *
 * Layout: channels in blocks of 16, one AVX-512 vector per (pixel, channel block), so every
 * transform is elementwise over 16 channels. Per image, the input is transposed once into a
 * zero-padded (block, row, column, 16) plane; then each row of tiles, in chunks of at most 7
 * tiles, is transformed (V), multiplied (M, a 7 x 64 register tile over the input channels) and
 * transformed back (Y, with bias and relu) into two output rows, which 16 x 16 transposes write
 * to the NCHW output. Everything a chunk touches stays in L1. */
#include <stdbool.h>
#include <string.h>
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/winograd.h"

#define WG_CHUNK 7   /* most tiles per GEMM chunk: 7 x 4 accumulators + 4 weight vectors */

/* Sizes of one convolution in Winograd form. */
typedef struct {
    int cin, cout, h, w, ho, wo, py, px;
    int th, tw;     /* tiles down and across: ceil(ho / 2), ceil(wo / 2) */
    int cp, op;     /* channels rounded up to 16 */
    int hp, wp;     /* the padded input plane: 2 th + 2 by 2 tw + 2 */
    int chunk;      /* tiles per chunk of a tile row */
} wg_geom;

/* The derived sizes of a geometry whose channels, sizes and padding are set. */
static wg_geom geom_finish(wg_geom s)
{
    s.th = (s.ho + 1) / 2;
    s.tw = (s.wo + 1) / 2;
    s.cp = (s.cin + 15) / 16 * 16;
    s.op = (s.cout + 15) / 16 * 16;
    s.hp = 2 * s.th + 2;
    s.wp = 2 * s.tw + 2;
    int chunks = (s.tw + WG_CHUNK - 1) / WG_CHUNK;
    s.chunk = (s.tw + chunks - 1) / chunks;
    return s;
}

static wg_geom geom_of(const kiln_node *nd, const kiln_node *in)
{
    return geom_finish((wg_geom){.cin = in->dims[0], .cout = nd->dims[0], .h = in->dims[1], .w = in->dims[2],
                                 .ho = nd->dims[1], .wo = nd->dims[2], .py = nd->a.pad[0], .px = nd->a.pad[1]});
}

/* The input gradient of nd as a convolution: dy (cout, ho, wo) correlated with the kernel
 * rotated by 180 degrees, channels swapped, padding 2 - pad, gives dx (cin, h, w). */
static wg_geom dx_geom_of(const kiln_node *nd, const kiln_node *in)
{
    return geom_finish((wg_geom){.cin = nd->dims[0], .cout = in->dims[0], .h = nd->dims[1], .w = nd->dims[2],
                                 .ho = in->dims[1], .wo = in->dims[2], .py = 2 - nd->a.pad[0],
                                 .px = 2 - nd->a.pad[1]});
}

bool kiln_winograd_applies(const kiln_node *nd, const kiln_node *in)
{
    const kiln_attrs *a = &nd->a;
    return nd->op == KILN_OP_CONV2D && a->kernel[0] == 3 && a->kernel[1] == 3 && a->stride[0] == 1 &&
           a->stride[1] == 1 && a->dilation[0] == 1 && a->dilation[1] == 1 && a->groups == 1 &&
           in->dims[0] >= KILN_WINOGRAD_MIN_CIN && kiln_f32_avx512();
}

bool kiln_winograd_dx_applies(const kiln_node *nd, const kiln_node *in)
{
    return kiln_winograd_applies(nd, in) && nd->dims[0] >= KILN_WINOGRAD_MIN_CIN && nd->a.pad[0] <= 2 &&
           nd->a.pad[1] <= 2;
}

size_t kiln_winograd_weight_floats(const kiln_node *nd, const kiln_node *in)
{
    wg_geom s = geom_of(nd, in);
    return (size_t)16 * s.cp * s.op;   /* the same for the input gradient's kernel */
}

/* u = G g G^T for every (output, input) channel pair of geometry s; g is the 3 x 3 kernel of w
 * (cout, cin, 3, 3), or with rotated, of the input gradient: w's taps reversed, channels swapped. */
static void transform_kernel(const wg_geom *s, const float *w, bool rotated, float *u)
{
    memset(u, 0, (size_t)16 * s->cp * s->op * sizeof(float));
    for (int co = 0; co < s->cout; co++)
        for (int ci = 0; ci < s->cin; ci++) {
            float g[9], gg[4][3], t[4][4];   /* G g (4 x 3), then (G g) G^T */
            for (int e = 0; e < 9; e++)
                g[e] = rotated ? w[((size_t)ci * s->cout + co) * 9 + 8 - e] : w[((size_t)co * s->cin + ci) * 9 + e];
            for (int j = 0; j < 3; j++) {
                gg[0][j] = g[j];
                gg[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
                gg[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
                gg[3][j] = g[6 + j];
            }
            for (int i = 0; i < 4; i++) {
                t[i][0] = gg[i][0];
                t[i][1] = 0.5f * (gg[i][0] + gg[i][1] + gg[i][2]);
                t[i][2] = 0.5f * (gg[i][0] - gg[i][1] + gg[i][2]);
                t[i][3] = gg[i][2];
            }
            for (int xi = 0; xi < 16; xi++)
                u[((size_t)xi * s->cp + ci) * s->op + co] = t[xi / 4][xi % 4];
        }
}

void kiln_winograd_weights(const kiln_node *nd, const kiln_node *in, const float *w, float *u)
{
    wg_geom s = geom_of(nd, in);
    transform_kernel(&s, w, false, u);
}

void kiln_winograd_dx_weights(const kiln_node *nd, const kiln_node *in, const float *w, float *u)
{
    wg_geom s = dx_geom_of(nd, in);
    transform_kernel(&s, w, true, u);
}

/* Floats of each part of one thread's work space. */
static size_t xp_floats(const wg_geom *s) { return (size_t)s->cp * s->hp * s->wp; }
static size_t v_floats(const wg_geom *s) { return (size_t)16 * s->chunk * s->cp; }
static size_t m_floats(const wg_geom *s) { return (size_t)16 * s->chunk * s->op; }
static size_t row_floats(const wg_geom *s) { return (size_t)2 * (2 * s->tw) * s->op; }

static size_t work_floats(const wg_geom *s)
{
    return xp_floats(s) + v_floats(s) + m_floats(s) + row_floats(s);
}

size_t kiln_winograd_work_floats(const kiln_node *nd, const kiln_node *in)
{
    wg_geom s = geom_of(nd, in);
    return work_floats(&s);
}

size_t kiln_winograd_dx_work_floats(const kiln_node *nd, const kiln_node *in)
{
    wg_geom s = dx_geom_of(nd, in);
    return work_floats(&s);
}

#if !defined(KILN_GENERIC_ONLY) && !defined(KILN_MINIMAL)
#include <immintrin.h>
#include "ops/avx512_util.h"

/* x (cin, h, w) into xp (cp / 16, hp, wp, 16): channels innermost, zero border and channels. */
__attribute__((target("avx512f"))) static void pack_input(const wg_geom *s, const float *x, float *xp)
{
    memset(xp, 0, xp_floats(s) * sizeof(float));
    for (int cb = 0; cb < s->cp / 16; cb++) {
        int nc = s->cin - 16 * cb;
        for (int y = 0; y < s->h; y++)
            for (int x0 = 0; x0 < s->w; x0 += 16) {
                int np = s->w - x0 < 16 ? s->w - x0 : 16;
                __m512 r[16];
                for (int c = 0; c < 16; c++)
                    r[c] = c < nc ? _mm512_maskz_loadu_ps(kiln_lanes16(np), x + ((size_t)(16 * cb + c) * s->h + y) * s->w + x0)
                                  : _mm512_setzero_ps();
                kiln_transpose16_avx512(r);
                float *d = xp + (((size_t)cb * s->hp + y + s->py) * s->wp + x0 + s->px) * 16;
                for (int p = 0; p < np; p++)
                    _mm512_storeu_ps(d + (size_t)p * 16, r[p]);
            }
    }
}

/* V = B^T d B for the n tiles of tile row ty from tile tx0, every channel block: v (16, n, cp). */
__attribute__((target("avx512f"))) static void input_transform(const wg_geom *s, const float *xp, int ty, int tx0,
                                                               int n, float *v)
{
    for (int cb = 0; cb < s->cp / 16; cb++)
        for (int r = 0; r < n; r++) {
            const float *base = xp + (((size_t)cb * s->hp + 2 * ty) * s->wp + 2 * (tx0 + r)) * 16;
            __m512 t[4][4];
            for (int j = 0; j < 4; j++) {   /* T = B^T d, column j */
                __m512 d0 = _mm512_loadu_ps(base + (size_t)j * 16), d1 = _mm512_loadu_ps(base + ((size_t)s->wp + j) * 16);
                __m512 d2 = _mm512_loadu_ps(base + ((size_t)2 * s->wp + j) * 16);
                __m512 d3 = _mm512_loadu_ps(base + ((size_t)3 * s->wp + j) * 16);
                t[0][j] = _mm512_sub_ps(d0, d2);
                t[1][j] = _mm512_add_ps(d1, d2);
                t[2][j] = _mm512_sub_ps(d2, d1);
                t[3][j] = _mm512_sub_ps(d1, d3);
            }
            float *o = v + (size_t)r * s->cp + 16 * cb;
            size_t step = (size_t)n * s->cp;   /* from one of the 16 products to the next */
            for (int i = 0; i < 4; i++) {   /* V = T B, row i */
                _mm512_storeu_ps(o + (4 * i + 0) * step, _mm512_sub_ps(t[i][0], t[i][2]));
                _mm512_storeu_ps(o + (4 * i + 1) * step, _mm512_add_ps(t[i][1], t[i][2]));
                _mm512_storeu_ps(o + (4 * i + 2) * step, _mm512_sub_ps(t[i][2], t[i][1]));
                _mm512_storeu_ps(o + (4 * i + 3) * step, _mm512_sub_ps(t[i][1], t[i][3]));
            }
        }
}

/* m (R, 16 NV) = v (R, cp) u (cp, 16 NV of op columns): R x NV accumulators, one broadcast of v
 * per row and input channel. */
#define WG_GEMM(R, NV)                                                                                  \
    __attribute__((target("avx512f"))) static void wg_gemm_##R##_##NV(const float *v, const float *u, int cp, \
                                                                      int op, float *m)                 \
    {                                                                                                   \
        __m512 acc[R][NV];                                                                              \
        for (int r = 0; r < R; r++)                                                                     \
            for (int j = 0; j < NV; j++)                                                                \
                acc[r][j] = _mm512_setzero_ps();                                                        \
        for (int c = 0; c < cp; c++) {                                                                  \
            __m512 b[NV];                                                                               \
            for (int j = 0; j < NV; j++)                                                                \
                b[j] = _mm512_loadu_ps(u + (size_t)c * op + 16 * j);                                    \
            for (int r = 0; r < R; r++) {                                                               \
                __m512 a = _mm512_set1_ps(v[(size_t)r * cp + c]);                                       \
                for (int j = 0; j < NV; j++)                                                            \
                    acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);                                    \
            }                                                                                           \
        }                                                                                               \
        for (int r = 0; r < R; r++)                                                                     \
            for (int j = 0; j < NV; j++)                                                                \
                _mm512_storeu_ps(m + (size_t)r * op + 16 * j, acc[r][j]);                               \
    }
#define WG_GEMM_R(R) WG_GEMM(R, 1) WG_GEMM(R, 2) WG_GEMM(R, 4)
WG_GEMM_R(1)
WG_GEMM_R(2)
WG_GEMM_R(3)
WG_GEMM_R(4)
WG_GEMM_R(5)
WG_GEMM_R(6)
WG_GEMM_R(7)

typedef void (*wg_gemm_fn)(const float *, const float *, int, int, float *);
#define WG_ROW(R) {wg_gemm_##R##_1, wg_gemm_##R##_2, wg_gemm_##R##_4}
static const wg_gemm_fn wg_gemm[WG_CHUNK + 1][3] = {{0}, WG_ROW(1), WG_ROW(2), WG_ROW(3), WG_ROW(4), WG_ROW(5),
                                                    WG_ROW(6), WG_ROW(7)};

/* The 16 products of n tiles: m (16, n, op) from v (16, n, cp) and u (16, cp, op). */
static void multiply(const wg_geom *s, const float *u, const float *v, int n, float *m)
{
    for (int xi = 0; xi < 16; xi++) {
        const float *vx = v + (size_t)xi * n * s->cp, *ux = u + (size_t)xi * s->cp * s->op;
        float *mx = m + (size_t)xi * n * s->op;
        for (int ob = 0; ob < s->op / 16;) {   /* 4, 2, then 1 blocks of 16 output channels */
            int left = s->op / 16 - ob, nv = left >= 4 ? 4 : left >= 2 ? 2 : 1;
            wg_gemm[n][nv == 4 ? 2 : nv - 1](vx, ux + 16 * ob, s->cp, s->op, mx + 16 * ob);
            ob += nv;
        }
    }
}

/* Y = A^T M A (+ bias, relu) for n tiles from tile tx0 into the two-row buffer rows
 * (2, 2 tw, op). */
__attribute__((target("avx512f"))) static void output_transform(const wg_geom *s, const float *m, int tx0, int n,
                                                                const float *bias, bool relu, float *rows)
{
    size_t step = (size_t)n * s->op, w2 = 2 * (size_t)s->tw;
    for (int ob = 0; ob < s->op / 16; ob++) {
        __m512 b = bias ? _mm512_maskz_loadu_ps(kiln_lanes16(s->cout - 16 * ob), bias + 16 * ob) : _mm512_setzero_ps();
        for (int r = 0; r < n; r++) {
            const float *mr = m + (size_t)r * s->op + 16 * ob;
            __m512 t[2][4];
            for (int j = 0; j < 4; j++) {   /* A^T M, column j */
                __m512 m0 = _mm512_loadu_ps(mr + j * step), m1 = _mm512_loadu_ps(mr + (4 + j) * step);
                __m512 m2 = _mm512_loadu_ps(mr + (8 + j) * step), m3 = _mm512_loadu_ps(mr + (12 + j) * step);
                t[0][j] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                t[1][j] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            for (int i = 0; i < 2; i++) {
                __m512 y0 = _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), _mm512_add_ps(t[i][2], b));
                __m512 y1 = _mm512_add_ps(_mm512_sub_ps(t[i][1], t[i][2]), _mm512_sub_ps(b, t[i][3]));
                if (relu) {
                    y0 = _mm512_max_ps(y0, _mm512_setzero_ps());
                    y1 = _mm512_max_ps(y1, _mm512_setzero_ps());
                }
                float *d = rows + ((size_t)i * w2 + 2 * (size_t)(tx0 + r)) * s->op + 16 * ob;
                _mm512_storeu_ps(d, y0);
                _mm512_storeu_ps(d + s->op, y1);
            }
        }
    }
}

/* Output rows 2 ty and 2 ty + 1 (those inside the output) from rows (2, 2 tw, op) into y (cout,
 * ho, wo), 16 pixels by 16 channels per transpose. */
__attribute__((target("avx512f"))) static void store_rows(const wg_geom *s, const float *rows, int ty, bool add,
                                                          float *y)
{
    size_t w2 = 2 * (size_t)s->tw, plane = (size_t)s->ho * s->wo;
    for (int i = 0; i < 2 && 2 * ty + i < s->ho; i++)
        for (int ob = 0; ob < s->op / 16; ob++) {
            int nc = s->cout - 16 * ob < 16 ? s->cout - 16 * ob : 16;
            for (int x0 = 0; x0 < s->wo; x0 += 16) {
                int np = s->wo - x0 < 16 ? s->wo - x0 : 16;
                __m512 r[16];
                for (int p = 0; p < 16; p++)
                    r[p] = p < np ? _mm512_loadu_ps(rows + ((size_t)i * w2 + x0 + p) * s->op + 16 * ob)
                                  : _mm512_setzero_ps();
                kiln_transpose16_avx512(r);
                float *d = y + (size_t)16 * ob * plane + (size_t)(2 * ty + i) * s->wo + x0;
                for (int c = 0; c < nc; c++) {
                    float *dc = d + (size_t)c * plane;
                    __m512 v = add ? _mm512_add_ps(_mm512_maskz_loadu_ps(kiln_lanes16(np), dc), r[c]) : r[c];
                    _mm512_mask_storeu_ps(dc, kiln_lanes16(np), v);
                }
            }
        }
}

/* One image: x (cin, h, w) to y (cout, ho, wo), or added to y. */
static void winograd_image(const wg_geom *s, const float *u, const float *bias, bool relu, const float *x, bool add,
                           float *y, float *work)
{
    float *xp = work, *v = xp + xp_floats(s), *m = v + v_floats(s), *rows = m + m_floats(s);
    pack_input(s, x, xp);
    for (int ty = 0; ty < s->th; ty++) {
        for (int tx0 = 0; tx0 < s->tw; tx0 += s->chunk) {
            int n = s->tw - tx0 < s->chunk ? s->tw - tx0 : s->chunk;
            input_transform(s, xp, ty, tx0, n, v);
            multiply(s, u, v, n, m);
            output_transform(s, m, tx0, n, bias, relu, rows);
        }
        store_rows(s, rows, ty, add, y);
    }
}

void kiln_conv2d_winograd_image(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, float *y,
                                float *work, kiln_op act)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    wg_geom s = geom_of(nd, in);
    bool relu = act == KILN_OP_RELU;
    winograd_image(&s, u, nd->a.no_bias ? NULL : kiln_node_tensor(g, nd, 1), relu, x, false, y, work);
    if (act != KILN_OP_INPUT && !relu)
        kiln_activation_forward(act, nd->a.alpha, y, y, nd->numel);
}

void kiln_conv2d_winograd(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, int batch,
                          float *y, float *work, int threads, kiln_op act)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    size_t per = kiln_winograd_work_floats(nd, in);
    if (threads < 1)
        threads = omp_get_max_threads();
    #pragma omp parallel for schedule(static) num_threads(threads) if (batch > 1)
    for (int b = 0; b < batch; b++)
        kiln_conv2d_winograd_image(g, nd, u, x + (size_t)b * in->numel, y + (size_t)b * nd->numel,
                                   work + (size_t)kiln_thread_id() * per, act);
}

void kiln_winograd_dx_image(const kiln_node *nd, const kiln_node *in, const float *u, const float *dy, bool add,
                            float *dx, float *work)
{
    wg_geom s = dx_geom_of(nd, in);
    winograd_image(&s, u, NULL, false, dy, add, dx, work);
}

#else
void kiln_winograd_dx_image(const kiln_node *nd, const kiln_node *in, const float *u, const float *dy, bool add,
                            float *dx, float *work)
{
    (void)nd, (void)in, (void)u, (void)dy, (void)add, (void)dx, (void)work;   /* never applies here */
}

void kiln_conv2d_winograd_image(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, float *y,
                                float *work, kiln_op act)
{
    (void)g, (void)nd, (void)u, (void)x, (void)y, (void)work, (void)act;   /* never applies here */
}

void kiln_conv2d_winograd(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, int batch,
                          float *y, float *work, int threads, kiln_op act)
{
    (void)g, (void)nd, (void)u, (void)x, (void)batch, (void)y, (void)work, (void)threads, (void)act;   /* never applies */
}
#endif
