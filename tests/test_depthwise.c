/* Depthwise convolution (groups = in channels = out channels), the direct kernel: both versions
 * (AVX2/FMA when the CPU has it, and plain C) against a seven-loop reference on random shapes
 * (kernel size, stride, padding, dilation), one plane at a time, through kiln_conv2d_forward with
 * fused activations, and through an inference session (one and two threads, the same bits).
 * Prints a timing against the im2col + GEMM path it replaces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "check.h"
#include "core/graph.h"
#include "core/rng.h"
#include "ops/gemm.h"
#include "ops/ops.h"

static kiln_rng rng;

static float urand(void) { return 2.0f * kiln_rng_uniform(&rng) - 1.0f; }
static int irand(int lo, int hi) { return lo + (int)kiln_rng_below(&rng, (uint32_t)(hi - lo + 1)); }

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    int c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
} shape;

/* A random valid geometry; wide planes now and then, so the 32-wide vector loop runs. */
static shape random_shape(void)
{
    for (;;) {
        shape s = {.c = irand(1, 9), .h = irand(2, 24), .w = irand(1, kiln_rng_below(&rng, 3) ? 24 : 90),
                   .kh = irand(1, 7), .kw = irand(1, 7), .sh = irand(1, 3), .sw = irand(1, 3), .ph = irand(0, 3),
                   .pw = irand(0, 3), .dh = irand(1, 3), .dw = irand(1, 3)};
        if (kiln_rng_below(&rng, 3) == 0)   /* the common cases, more often */
            s.kh = s.kw = 3, s.dh = s.dw = 1, s.ph = s.pw = irand(0, 1), s.sh = s.sw = irand(1, 2);
        s.ho = kiln_conv_out(s.h, s.kh, s.sh, s.ph, s.dh);
        s.wo = kiln_conv_out(s.w, s.kw, s.sw, s.pw, s.dw);
        if (s.ho >= 1 && s.wo >= 1 && s.h + 2 * s.ph >= s.dh * (s.kh - 1) + 1 && s.w + 2 * s.pw >= s.dw * (s.kw - 1) + 1)
            return s;
    }
}

/* The seven loops of a grouped convolution (batch, out channel, in channel of its group, output
 * row, output column, kernel row, kernel column) in double; here groups = channels, so the in
 * channel loop runs once. */
static void reference(const shape *s, int batch, const float *x, const float *w, const float *bias, float *y)
{
    int groups = s->c, cin = s->c, cout = s->c, cg_in = cin / groups, cg_out = cout / groups;
    for (int b = 0; b < batch; b++)
        for (int co = 0; co < cout; co++)
            for (int oy = 0; oy < s->ho; oy++)
                for (int ox = 0; ox < s->wo; ox++) {
                    double acc = bias ? bias[co] : 0.0;
                    for (int cj = 0; cj < cg_in; cj++) {
                        int ci = co / cg_out * cg_in + cj;
                        for (int ki = 0; ki < s->kh; ki++)
                            for (int kj = 0; kj < s->kw; kj++) {
                                int iy = oy * s->sh - s->ph + ki * s->dh, ix = ox * s->sw - s->pw + kj * s->dw;
                                if (iy >= 0 && iy < s->h && ix >= 0 && ix < s->w)
                                    acc += (double)w[((size_t)co * cg_in + cj) * s->kh * s->kw + ki * s->kw + kj] *
                                           x[(((size_t)b * cin + ci) * s->h + iy) * s->w + ix];
                            }
                    }
                    y[(((size_t)b * cout + co) * s->ho + oy) * s->wo + ox] = (float)acc;
                }
}

/* Largest |a - b| / max(1, |a|, |b|). */
static double worst_err(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double m = fmax(1.0, fmax(fabs((double)a[i]), fabs((double)b[i])));
        double e = fabs((double)a[i] - b[i]) / m;
        if (!(e <= worst))
            worst = e;
    }
    return worst;
}

static void describe(char *buf, size_t len, const shape *s)
{
    snprintf(buf, len, "c=%d %dx%d kernel %dx%d stride %dx%d pad %dx%d dilation %dx%d -> %dx%d", s->c, s->h, s->w,
             s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, s->ho, s->wo);
}

/* The kernel one plane at a time. */
static void test_planes(const char *kernel)
{
    int fails = 0;
    for (int it = 0; it < 300 && fails < 5; it++) {
        shape s = random_shape();
        s.c = 1;
        size_t nx = (size_t)s.h * s.w, ny = (size_t)s.ho * s.wo, nk = (size_t)s.kh * s.kw;
        float *x = malloc(nx * sizeof(float)), *k = malloc(nk * sizeof(float));
        float *y = malloc(ny * sizeof(float)), *r = malloc(ny * sizeof(float));
        for (size_t i = 0; i < nx; i++)
            x[i] = urand();
        for (size_t i = 0; i < nk; i++)
            k[i] = urand();
        float bias = urand();
        kiln_dw_geom g = {s.h, s.w, s.ho, s.wo, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw};
        kiln_depthwise_plane(&g, x, k, bias, y);
        reference(&s, 1, x, k, &bias, r);
        double e = worst_err(y, r, ny);
        char d[160];
        describe(d, sizeof d, &s);
        fails += !(e <= 1e-5);
        CHECK(e <= 1e-5, "%s plane %s: error %.3g", kernel, d, e);
        free(x), free(k), free(y), free(r);
    }
    printf("%s kernel: 300 random planes %s\n", kernel, fails ? "MISMATCH" : "agree with the reference");
}

static kiln_graph_t *dw_graph(const shape *s, bool bias)
{
    char spec[256];
    snprintf(spec, sizeof spec, "input %d %d %d\ndw: conv2d %d %dx%d stride=%dx%d pad=%dx%d dilation=%dx%d groups=%d%s\n",
             s->c, s->h, s->w, s->c, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, s->c, bias ? "" : " bias=0");
    kiln_graph_t *g = kiln_spec_parse(spec, "test");
    CHECK(g != NULL, "%s: %s", spec, kiln_last_error());
    if (g) {
        kiln_graph_init_params(g, kiln_rng_next(&rng));
        CHECK(g->nodes[1].dims[1] == s->ho && g->nodes[1].dims[2] == s->wo, "output shape");
    }
    return g;
}

static float act_ref(kiln_op op, float v)
{
    switch (op) {
    case KILN_OP_RELU: return v > 0.0f ? v : 0.0f;
    case KILN_OP_SIGMOID: return 1.0f / (1.0f + expf(-v));
    default: return v;
    }
}

/* Whole layers: kiln_conv2d_forward (batches, fused activations, threads) and a session. */
static void test_layers(const char *kernel)
{
    int fails = 0;
    static const kiln_op acts[] = {KILN_OP_INPUT, KILN_OP_RELU, KILN_OP_SIGMOID};
    for (int it = 0; it < 60 && fails < 5; it++) {
        shape s = random_shape();
        int batch = irand(1, 3), threads = irand(1, 2);
        bool has_bias = it % 4 != 3;
        kiln_graph_t *g = dw_graph(&s, has_bias);
        if (!g)
            return;
        const kiln_node *nd = &g->nodes[1];
        size_t nx = (size_t)batch * g->nodes[0].numel, ny = (size_t)batch * nd->numel;
        float *x = malloc(nx * sizeof(float)), *y = malloc(ny * sizeof(float)), *r = malloc(ny * sizeof(float));
        float *y1 = malloc(ny * sizeof(float)), *y2 = malloc(ny * sizeof(float));
        float *col = malloc((kiln_conv2d_col_floats(nd) * 2 + 1) * sizeof(float));
        for (size_t i = 0; i < nx; i++)
            x[i] = urand();
        reference(&s, batch, x, kiln_node_tensor(g, nd, 0), has_bias ? kiln_node_tensor(g, nd, 1) : NULL, r);
        char d[160];
        describe(d, sizeof d, &s);
        kiln_op act = acts[it % 3];
        kiln_conv2d_forward(g, nd, x, batch, y, col, threads, act);
        for (size_t i = 0; i < ny; i++)
            r[i] = act_ref(act, r[i]);
        double e = worst_err(y, r, ny);
        fails += !(e <= 1e-5);
        CHECK(e <= 1e-5, "%s layer %s batch %d act %s: error %.3g", kernel, d, batch, kiln_op_name(act), e);
        /* a session: its own arena and scratch, the same results on one and on two threads */
        kiln_model_t *m = kiln_model_create(g, false);
        kiln_session_t *s1 = m ? kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = 1}) : NULL;
        kiln_session_t *s2 = m ? kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = 2}) : NULL;
        CHECK(s1 && s2, "session: %s", kiln_last_error());
        if (s1 && s2) {
            reference(&s, batch, x, kiln_node_tensor(g, nd, 0), has_bias ? kiln_node_tensor(g, nd, 1) : NULL, r);
            CHECK(kiln_session_run(s1, x, batch, y1) == KILN_OK && kiln_session_run(s2, x, batch, y2) == KILN_OK,
                  "run: %s", kiln_last_error());
            e = worst_err(y1, r, ny);
            fails += !(e <= 1e-5);
            CHECK(e <= 1e-5, "%s session %s batch %d: error %.3g", kernel, d, batch, e);
            CHECK(memcmp(y1, y2, ny * sizeof(float)) == 0, "%s session %s: two threads differ from one", kernel, d);
        }
        kiln_session_free(s1);
        kiln_session_free(s2);
        kiln_model_free(m);
        free(x), free(y), free(r), free(y1), free(y2), free(col);
        kiln_graph_free(g);
    }
    printf("%s kernel: 60 random layers and sessions %s\n", kernel, fails ? "MISMATCH" : "agree with the reference");
}

/* The path the direct kernel replaces: per image, im2col and one GEMM per group. */
static void im2col_path(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch, float *y, float *col)
{
    const kiln_node *in = &g->nodes[nd->inputs[0]];
    int groups = nd->a.groups, cout = nd->dims[0], cg = cout / groups;
    int kg = nd->params[0].dims[1] * nd->a.kernel[0] * nd->a.kernel[1], p = nd->dims[1] * nd->dims[2];
    const float *w = kiln_node_tensor(g, nd, 0), *bias = kiln_node_tensor(g, nd, 1);
    for (int b = 0; b < batch; b++) {
        float *yb = y + (size_t)b * nd->numel;
        kiln_im2col(nd, in, x + (size_t)b * in->numel, col);
        for (int co = 0; co < cout; co++)
            for (int i = 0; i < p; i++)
                yb[(size_t)co * p + i] = bias[co];
        for (int gi = 0; gi < groups; gi++)
            kiln_sgemm(false, false, cg, p, kg, 1.0f, w + (size_t)gi * cg * kg, kg, col + (size_t)gi * kg * p, p, 1.0f,
                       yb + (size_t)gi * cg * p, p);
    }
}

static void timing(void)
{
    static const shape cases[] = {{32, 56, 56, 3, 3, 1, 1, 1, 1, 1, 1, 56, 56},
                                  {32, 112, 112, 3, 3, 2, 2, 1, 1, 1, 1, 56, 56},
                                  {128, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 28, 28},
                                  {64, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28}};
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        const shape *s = &cases[ci];
        kiln_graph_t *g = dw_graph(s, true);
        if (!g)
            return;
        const kiln_node *nd = &g->nodes[1];
        float *x = malloc(g->nodes[0].numel * sizeof(float)), *y = malloc(nd->numel * sizeof(float));
        float *col = malloc(kiln_conv2d_col_floats(nd) * sizeof(float));
        for (size_t i = 0; i < g->nodes[0].numel; i++)
            x[i] = urand();
        double t[3] = {1e30, 1e30, 1e30};
        bool avx2 = kiln_f32_avx2();
        for (int r = 0; r < 5; r++)
            for (int v = 0; v < 3; v++) {
                if (v == 1 && !avx2)
                    continue;
                bool old = kiln_f32_force_generic(v == 2);
                double t0 = now();
                for (int i = 0; i < 20; i++) {
                    if (v == 0)
                        im2col_path(g, nd, x, 1, y, col);
                    else
                        kiln_conv2d_forward(g, nd, x, 1, y, col, 1, KILN_OP_INPUT);
                }
                double dt = (now() - t0) / 20;
                t[v] = dt < t[v] ? dt : t[v];
                kiln_f32_force_generic(old);
            }
        char d[160];
        describe(d, sizeof d, s);
        char avx[64] = "n/a";
        if (avx2)
            snprintf(avx, sizeof avx, "%.1f us (%.1fx)", t[1] * 1e6, t[0] / t[1]);
        printf("depthwise %s, batch 1, one thread: im2col+GEMM %.1f us, direct avx2 %s, direct C %.1f us (%.1fx)\n", d,
               t[0] * 1e6, avx, t[2] * 1e6, t[0] / t[2]);
        free(x), free(y), free(col);
        kiln_graph_free(g);
    }
}

int main(void)
{
    kiln_rng_seed(&rng, 7);
    bool avx2 = kiln_f32_avx2();
    if (avx2) {
        test_planes("avx2");
        test_layers("avx2");
    } else
        printf("avx2 kernel: not run (this CPU or build has no AVX2/FMA path, or KILN_GENERIC is set)\n");
    bool old = kiln_f32_force_generic(true);
    test_planes("C");
    test_layers("C");
    kiln_f32_force_generic(old);
    if (!getenv("KILN_SANITIZED"))
        timing();
    return check_report();
}
