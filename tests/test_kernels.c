/* Forward kernels against plain reference implementations on random shapes: GEMM (BLAS and the
 * threaded split, every transpose, the one-row case) against loops, convolution (im2col + GEMM,
 * every stride, pad, dilation and group setting; Winograd) against a direct seven-loop convolution, pooling against direct
 * window loops, and an inference session against the training tape's eval forward. */
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"
#include "ops/fastmath.h"
#include "ops/gemm.h"
#include "infer/runtime.h"
#include "ops/ops.h"
#include "ops/winograd.h"

static kiln_rng rng;
static int rnd(int lo, int hi) { return lo + (int)kiln_rng_below(&rng, (uint32_t)(hi - lo + 1)); }
static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = 2.0f * kiln_rng_uniform(&rng) - 1.0f;
}

/* max |a - b| / max(1, max |b|) */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 1;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]);
        d = e > d || e != e ? e : d;
        m = fmax(m, fabs((double)b[i]));
    }
    return d / m;
}

static void test_gemm(void)
{
    int bad = 0;
    for (int rep = 0; rep < 60; rep++) {
        bool ta = rnd(0, 1), tb = rnd(0, 1);
        int m = rep % 5 == 0 ? 1 : rnd(1, rep < 30 ? 40 : 300), n = rnd(1, rep < 30 ? 40 : 300), k = rnd(1, rep % 3 ? 200 : 600);
        int lda = (ta ? m : k) + rnd(0, 3), ldb = (tb ? k : n) + rnd(0, 3), ldc = n + rnd(0, 3);
        float alpha = rnd(0, 1) ? 1.0f : 0.5f, beta = (float)rnd(0, 2) * 0.5f;
        size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
        float *a = malloc(na * 4), *b = malloc(nb * 4), *c = malloc(nc * 4), *r = malloc(nc * 4);
        fill(a, na);
        fill(b, nb);
        fill(c, nc);
        memcpy(r, c, nc * 4);
        kiln_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        kiln_sgemm_ref(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, r, ldc);
        double e = rel_err(c, r, nc);
        if (!(e < 1e-5)) {
            fprintf(stderr, "gemm %c%c m=%d n=%d k=%d: error %.3e\n", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, e);
            bad++;
        }
        free(a);
        free(b);
        free(c);
        free(r);
    }
    CHECK(bad == 0, "%d of 60 random GEMMs differ from the reference", bad);
}

/* C = A op(B) + bias on random shapes (m below and above the thread split, n not a multiple of
 * the 32-column tile, k past the 256-long K block so the bias must be added once) against the
 * reference with the bias copied in first. */
static void test_gemm_bias(void)
{
    int bad = 0;
    for (int rep = 0; rep < 40; rep++) {
        bool tb = rnd(0, 1);
        int m = rnd(1, rep < 20 ? 40 : 700), n = rnd(1, 200), k = rnd(1, rep % 2 ? 100 : 600);
        int lda = k + rnd(0, 3), ldb = (tb ? k : n) + rnd(0, 3), ldc = n + rnd(0, 3);
        size_t na = (size_t)m * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
        float *a = malloc(na * 4), *b = malloc(nb * 4), *bias = malloc((size_t)n * 4), *c = malloc(nc * 4),
              *r = malloc(nc * 4);
        fill(a, na);
        fill(b, nb);
        fill(bias, (size_t)n);
        fill(c, nc);
        memcpy(r, c, nc * 4);
        for (int i = 0; i < m; i++)
            memcpy(r + (size_t)i * ldc, bias, (size_t)n * 4);
        kiln_sgemm_bias(tb, m, n, k, a, lda, b, ldb, bias, c, ldc);
        kiln_sgemm_ref(false, tb, m, n, k, 1.0f, a, lda, b, ldb, 1.0f, r, ldc);
        double e = rel_err(c, r, nc);
        if (!(e < 1e-5)) {
            fprintf(stderr, "gemm+bias N%c m=%d n=%d k=%d: error %.3e\n", tb ? 'T' : 'N', m, n, k, e);
            bad++;
        }
        free(a), free(b), free(bias), free(c), free(r);
    }
    CHECK(bad == 0, "%d of 40 random GEMMs with a bias differ from the reference", bad);
}

/* Direct convolution: the definition, loop by loop. */
static void conv_ref(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch, float *y)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2], co = nd->dims[0], ho = nd->dims[1], wo = nd->dims[2];
    int cg = c / a->groups, og = co / a->groups;
    const float *wt = kiln_node_tensor(g, nd, 0), *bias = a->no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    for (int b = 0; b < batch; b++)
        for (int o = 0; o < co; o++)
            for (int oy = 0; oy < ho; oy++)
                for (int ox = 0; ox < wo; ox++) {
                    double s = bias ? bias[o] : 0;
                    int gi = o / og;
                    for (int ci = 0; ci < cg; ci++)
                        for (int ky = 0; ky < a->kernel[0]; ky++)
                            for (int kx = 0; kx < a->kernel[1]; kx++) {
                                int iy = oy * a->stride[0] - a->pad[0] + ky * a->dilation[0];
                                int ix = ox * a->stride[1] - a->pad[1] + kx * a->dilation[1];
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                s += (double)x[(((size_t)b * c + gi * cg + ci) * h + iy) * w + ix] *
                                     wt[(((size_t)o * cg + ci) * a->kernel[0] + ky) * a->kernel[1] + kx];
                            }
                    y[(((size_t)b * co + o) * ho + oy) * wo + ox] = (float)s;
                }
}

/* Direct pooling over each window (max or average with padding counted). */
static void pool_ref(const kiln_node *nd, const kiln_node *in, const float *x, int batch, float *y)
{
    const kiln_attrs *a = &nd->a;
    int c = in->dims[0], h = in->dims[1], w = in->dims[2], ho = nd->dims[1], wo = nd->dims[2];
    for (int p = 0; p < batch * c; p++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                double s = 0, m = -DBL_MAX;
                for (int ky = 0; ky < a->kernel[0]; ky++)
                    for (int kx = 0; kx < a->kernel[1]; kx++) {
                        int iy = oy * a->stride[0] - a->pad[0] + ky, ix = ox * a->stride[1] - a->pad[1] + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        double v = x[((size_t)p * h + iy) * w + ix];
                        s += v;
                        m = v > m ? v : m;
                    }
                y[((size_t)p * ho + oy) * wo + ox] =
                    (float)(nd->op == KILN_OP_MAXPOOL2D ? m : s / (a->kernel[0] * a->kernel[1]));
            }
}

static void test_conv_pool(void)
{
    int bad = 0, tried = 0;
    for (int rep = 0; rep < 80; rep++) {
        int groups = rnd(1, 3), c = groups * rnd(1, 3), h = rnd(3, 16), w = rnd(3, 16), batch = rnd(1, 5);
        char spec[512];
        int kind = rep % 4;
        if (kind < 2)
            snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d %dx%d stride=%dx%d pad=%dx%d dilation=%d groups=%d%s\n",
                     c, h, w, groups * rnd(1, 4), rnd(1, 3), rnd(1, 3), rnd(1, 3), rnd(1, 2), rnd(0, 2), rnd(0, 2),
                     rnd(1, 2), groups, rnd(0, 1) ? " bias=0" : "");
        else
            snprintf(spec, sizeof spec, "input %d %d %d\n%s %d stride=%d pad=%d\n", c, h, w,
                     kind == 2 ? "maxpool2d" : "avgpool2d", rnd(2, 3), rnd(1, 3), rnd(0, 1));
        if (rep >= 76) {   /* wide 2x2 pools: full 16-output vector blocks and their tails */
            kind = 2;
            snprintf(spec, sizeof spec, "input %d %d %d\nmaxpool2d 2\n", c, 2 * rnd(16, 40), 2 * rnd(16, 40) + rnd(0, 1));
        }
        kiln_graph_t *g = kiln_spec_parse(spec, "rand");
        if (!g)
            continue;   /* a random window larger than the input: not a kernel test */
        tried++;
        kiln_graph_init_params(g, kiln_rng_next(&rng));
        const kiln_node *nd = &g->nodes[1], *in = &g->nodes[0];
        size_t nx = in->numel * (size_t)batch, ny = nd->numel * (size_t)batch;
        float *x = malloc(nx * 4), *y = malloc(ny * 4), *r = malloc(ny * 4);
        fill(x, nx);
        kiln_model_t *m = kiln_model_create(g, false);
        kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch});
        kiln_session_run(s, x, batch, y);
        if (kind < 2)
            conv_ref(g, nd, x, batch, r);
        else
            pool_ref(nd, in, x, batch, r);
        double err = rel_err(y, r, ny);
        if (!(err < 1e-5)) {
            fprintf(stderr, "error %.3e for batch %d:\n%s", err, batch, spec);
            bad++;
        }
        kiln_session_free(s);
        kiln_model_free(m);
        free(x);
        free(y);
        free(r);
        kiln_graph_free(g);
    }
    CHECK(tried >= 60, "only %d random shapes were valid", tried);
    CHECK(bad == 0, "%d of %d random conv/pool shapes differ from the direct reference", bad, tried);
}

/* Winograd F(2x2, 3x3) in an inference session against the direct convolution: random channel
 * counts (partial blocks of 16 included), sizes (odd ones leave half tiles), padding, batch,
 * threads, bias and fused activation; and the session's im2col + GEMM option on the same model. */
static void test_winograd(void)
{
    if (!kiln_f32_avx512()) {
        printf("winograd: no AVX-512 here (or generic kernels forced); the im2col path is tested above\n");
        return;
    }
    int bad = 0, used = 0;
    double worst = 0;
    for (int rep = 0; rep < 40; rep++) {
        int cin = rnd(KILN_WINOGRAD_MIN_CIN, 40), cout = rnd(1, 80), pad = rnd(0, 2);
        int h = rnd(3 - 2 * pad > 1 ? 3 - 2 * pad : 1, 20), w = rnd(3 - 2 * pad > 1 ? 3 - 2 * pad : 1, 36);
        int batch = rnd(1, 3), threads = rnd(1, 2), act = rnd(0, 2);
        char spec[256];
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d 3 pad=%d%s\n%s", cin, h, w, cout, pad,
                 rnd(0, 1) ? " bias=0" : "", act == 1 ? "relu\n" : act == 2 ? "sigmoid\n" : "");
        kiln_graph_t *g = kiln_spec_parse(spec, "winograd");
        CHECK(g != NULL, "%s: %s", spec, kiln_last_error());
        if (!g)
            continue;
        kiln_graph_init_params(g, kiln_rng_next(&rng));
        const kiln_node *nd = &g->nodes[1];
        size_t nx = g->nodes[0].numel * (size_t)batch, ny = nd->numel * (size_t)batch;
        float *x = malloc(nx * 4), *y = malloc(ny * 4), *yg = malloc(ny * 4), *r = malloc(ny * 4);
        fill(x, nx);
        conv_ref(g, nd, x, batch, r);
        for (size_t i = 0; i < ny && act; i++)
            r[i] = act == 1 ? (r[i] > 0 ? r[i] : 0) : 1.0f / (1.0f + expf(-r[i]));
        kiln_model_t *m = kiln_model_create(g, true);   /* the activation fused into the conv */
        used += m->wino && m->wino[1] && m->g->nodes[1].a.act == (act == 1 ? KILN_OP_RELU : act == 2 ? KILN_OP_SIGMOID
                                                                                                     : KILN_OP_INPUT);
        kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = threads});
        kiln_session_t *sg = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .gemm_conv = true});
        kiln_session_run(s, x, batch, y);
        kiln_session_run(sg, x, batch, yg);
        double e = rel_err(y, r, ny), eg = rel_err(yg, r, ny);
        worst = e > worst ? e : worst;
        if (!(e < 1e-5) || !(eg < 1e-5)) {
            fprintf(stderr, "winograd error %.3e, im2col %.3e, batch %d threads %d:\n%s", e, eg, batch, threads, spec);
            bad++;
        }
        kiln_session_free(s);
        kiln_session_free(sg);
        kiln_model_free(m);
        free(x);
        free(y);
        free(yg);
        free(r);
        kiln_graph_free(g);
    }
    printf("winograd: 40 random convolutions, largest error %.2e relative to the largest output\n", worst);
    CHECK(used == 40, "only %d of 40 eligible convolutions ran by Winograd with the activation fused", used);
    CHECK(bad == 0, "%d of 40 Winograd convolutions differ from the direct reference", bad);
}

/* The executor and the tape's eval-mode forward agree on a model using every op. */
static void test_exec_vs_tape(void)
{
    const char *spec = "input 3 12 12\na: conv2d 8 3 pad=1\nbn: batchnorm\nrelu\nb: conv2d 8 3 pad=1 groups=8\n"
                       "add a\nleaky_relu 0.1\nmaxpool2d 2\nc: avgpool2d 3 stride=1 pad=1\nd: sigmoid in=c\n"
                       "e: tanh in=c\nconcat d e\ngelu\ndropout 0.2\nflatten\ndense 7\nsoftmax\n";
    kiln_graph_t *g = kiln_spec_parse(spec, "all-ops");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 9);
    float *bn = kiln_node_tensor(g, &g->nodes[kiln_graph_find(g, "bn")], 2);
    for (int i = 0; i < 16; i++)
        bn[i] = 0.2f * (float)i - 0.5f;   /* running mean, then var (positive) */
    size_t nx = 4 * 3 * 144;
    float *x = malloc(nx * 4);
    fill(x, nx);
    kiln_model_t *m = kiln_model_create(g, false);
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = 4});
    kiln_tape_t *t = kiln_tape_create(g, 4, false, 0);
    float ye[28];
    kiln_session_run(s, x, 4, ye);
    const float *yt = kiln_tape_forward(t, x, 4, false);
    double err = rel_err(ye, yt, 28);
    CHECK(err < 1e-6, "session and tape disagree by %.3e", err);
    double sum = 0;
    for (int i = 0; i < 7; i++)
        sum += ye[i];
    CHECK(fabs(sum - 1.0) < 1e-5, "softmax output sums to %.6f", sum);
    kiln_tape_free(t);
    kiln_session_free(s);
    kiln_model_free(m);
    free(x);
    kiln_graph_free(g);
}

/* The training pool (2x2, stride 2, with argmax) against the plain rule: strict comparisons, the
 * first candidate on ties; values drawn from a few levels so ties are common. */
static void test_pool_argmax(void)
{
    int bad = 0;
    for (int rep = 0; rep < 60; rep++) {
        int wo = rnd(1, 40), ho = rnd(1, 6), w = 2 * wo + rnd(0, 1), h = 2 * ho + rnd(0, 1);
        float *x = malloc((size_t)h * w * 4), *y = malloc((size_t)ho * wo * 4);
        int32_t *am = malloc((size_t)ho * wo * 4);
        for (int i = 0; i < h * w; i++)
            x[i] = (float)rnd(0, 4) - 2.0f;
        kiln_maxpool_2x2_plane(x, y, am, w, ho, wo);
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                int c[4] = {2 * oy * w + 2 * ox, 2 * oy * w + 2 * ox + 1, (2 * oy + 1) * w + 2 * ox,
                            (2 * oy + 1) * w + 2 * ox + 1};
                int top = x[c[1]] > x[c[0]] ? c[1] : c[0], bot = x[c[3]] > x[c[2]] ? c[3] : c[2];
                int best = x[bot] > x[top] ? bot : top;
                bad += am[oy * wo + ox] != best || y[oy * wo + ox] != x[best];
            }
        free(x);
        free(y);
        free(am);
    }
    printf("2x2 max pooling with argmax: 60 random planes, %d mismatches\n", bad);
    CHECK(bad == 0, "%d pooled values or argmax indices differ from the plain rule", bad);
}

/* kiln_exp and kiln_erf against libm over their working ranges. */
static void test_fastmath(void)
{
    double worst_exp = 0, worst_erf = 0;
    for (int i = 0; i <= 200000; i++) {
        float x = -87.0f + 175.0f * (float)i / 200000.0f;
        double e = exp((double)x), rel = fabs(kiln_exp(x) - e) / e;
        worst_exp = rel > worst_exp ? rel : worst_exp;
        float z = -6.0f + 12.0f * (float)i / 200000.0f;
        double d = fabs(kiln_erf(z) - erf((double)z));
        worst_erf = d > worst_erf ? d : worst_erf;
    }
    CHECK(worst_exp < 4e-7, "kiln_exp: relative error %g", worst_exp);
    CHECK(worst_erf < 3e-7, "kiln_erf: absolute error %g", worst_erf);
    CHECK(kiln_exp(-1000.0f) < 1e-37f && kiln_exp(-1000.0f) >= 0 && kiln_erf(0.0f) == 0.0f, "exp/erf at the edges");
}

int main(void)
{
    kiln_rng_seed(&rng, 77);
    test_fastmath();
    test_pool_argmax();
    test_gemm();
    test_gemm_bias();
    test_conv_pool();
    test_winograd();
    test_exec_vs_tape();
    return check_report();
}
