/* The N-d ops: every gradient (inputs and parameters) against central finite differences on
 * random shapes, graphs with several inputs, unbatched params and several outputs; attention's
 * streamed inference kernel against the training form; shape errors naming the node. Forward
 * passes for the differences run with the reference GEMM; L = sum_k sum(out_k * R_k) in double. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "fd_check.h"
#include "core/op_table.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"
#include "ops/gemm.h"
#include "ops/ops.h"

static kiln_rng rng;

static int rnd(int lo, int hi) { return lo + (int)kiln_rng_below(&rng, (uint32_t)(hi - lo + 1)); }
static float urand(void) { return 2.0f * kiln_rng_uniform(&rng) - 1.0f; }

typedef struct {
    kiln_graph_t *g;
    kiln_tape_t *t;
    int batch, n_in, n_out;
    int in_ids[8], out_ids[KILN_MAX_OUTPUTS];
    void *x[8];
    float *r[KILN_MAX_OUTPUTS];
    size_t out_n[KILN_MAX_OUTPUTS];
    uint64_t rng0[4];
} gcase;

static double loss_at(gcase *c)
{
    memcpy(kiln_tape_rng_state(c->t), c->rng0, sizeof c->rng0);
    kiln_status st = kiln_tape_run(c->t, (const void *const *)c->x, c->batch, true);
    CHECK(st == KILN_OK, "forward failed: %s", kiln_last_error());
    double s = 0;
    for (int k = 0; k < c->n_out; k++) {
        const float *y = kiln_tape_output(c->t, k);
        for (size_t i = 0; i < c->out_n[k]; i++)
            s += (double)y[i] * c->r[k][i];
    }
    return s;
}

/* The loss of a case, for fd_compare. */
static double case_loss(void *c)
{
    return loss_at(c);
}

/* Vocabulary an I32 input's embedding reads (the first one). */
static int vocab_of(const kiln_graph_t *g, int input)
{
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == KILN_OP_EMBEDDING && g->nodes[i].inputs[0] == input)
            return g->nodes[i].a.vocab;
    return 1;
}

static void check_spec(const char *spec, int batch)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "ops-spec");
    CHECK(g != NULL, "spec failed: %s\n%s", kiln_last_error(), spec);
    if (!g)
        return;
    kiln_graph_init_params(g, kiln_rng_next(&rng));
    for (size_t i = 0; i < g->n_params; i++)
        g->params[i] += 0.3f * urand();
    gcase c = {.g = g, .batch = batch};
    c.t = kiln_tape_create(g, batch, true, 42);
    CHECK(c.t != NULL, "tape: %s", kiln_last_error());
    c.n_in = kiln_graph_inputs(g, c.in_ids);
    c.n_out = kiln_graph_outputs(g, c.out_ids);
    for (int k = 0; k < c.n_in; k++) {
        const kiln_node *in = &g->nodes[c.in_ids[k]];
        size_t n = in->numel * (size_t)batch;
        c.x[k] = malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            if (in->dtype == KILN_DT_I32)
                ((int32_t *)c.x[k])[i] = rnd(0, vocab_of(g, c.in_ids[k]) - 1);
            else
                ((float *)c.x[k])[i] = urand();
        }
    }
    for (int k = 0; k < c.n_out; k++) {
        const kiln_node *o = &g->nodes[c.out_ids[k]];
        c.out_n[k] = o->numel * (o->batched ? (size_t)batch : 1);
        c.r[k] = malloc(c.out_n[k] * sizeof(float));
        for (size_t i = 0; i < c.out_n[k]; i++)
            c.r[k][i] = urand();
    }
    memcpy(c.rng0, kiln_tape_rng_state(c.t), sizeof c.rng0);
    bool old = kiln_gemm_use_reference(true);
    loss_at(&c);
    kiln_tape_backward_outputs(c.t, (const float *const *)c.r);
    size_t np = g->n_params;
    float *dp = malloc((np ? np : 1) * sizeof(float));
    memcpy(dp, kiln_tape_param_grads(c.t), np * sizeof(float));
    for (int k = 0; k < c.n_in; k++) {
        const kiln_node *in = &g->nodes[c.in_ids[k]];
        if (in->dtype != KILN_DT_F32)
            continue;
        size_t n = in->numel * (size_t)batch;
        float *dx = malloc(n * sizeof(float));
        const float *gx = kiln_tape_node_grad(c.t, c.in_ids[k]);
        CHECK(gx != NULL, "no gradient kept for input %s", in->name);
        if (gx) {
            memcpy(dx, gx, n * sizeof(float));
            fd_compare(case_loss, &c, &rng, c.x[k], dx, n, in->name, spec);
        }
        free(dx);
    }
    if (np)
        fd_compare(case_loss, &c, &rng, g->params, dp, np, "parameter", spec);
    kiln_gemm_use_reference(old);
    free(dp);
    for (int k = 0; k < c.n_in; k++)
        free(c.x[k]);
    for (int k = 0; k < c.n_out; k++)
        free(c.r[k]);
    kiln_tape_free(c.t);
    kiln_graph_free(g);
}

/* Attention's streamed kernel (inference: no saved probabilities) equals the training form. */
static void check_attention_streamed(int t, int s, int width, int heads, bool causal, bool packed, int batch)
{
    char spec[512];
    if (packed)
        snprintf(spec, sizeof spec, "input %d %d\nattention heads=%d causal=%d\n", t, 3 * width, heads, causal);
    else
        snprintf(spec, sizeof spec, "q: input %d %d\nk: input %d %d\nv: input %d %d\nattention in=q,k,v heads=%d "
                 "causal=%d\n", t, width, s, width, s, width, heads, causal);
    kiln_graph_t *g = kiln_spec_parse(spec, "attn");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    int id = g->n - 1, threads = 2;
    const kiln_node *nd = &g->nodes[id];
    kiln_fwd_args a = {.batch = batch, .threads = threads};
    for (int j = 0; j < nd->n_inputs; j++) {
        size_t n = g->nodes[nd->inputs[j]].numel * (size_t)batch;
        float *x = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            x[i] = 2.0f * urand();
        a.in[j] = x;
        a.in_batch[j] = batch;
    }
    size_t n = nd->numel * (size_t)batch;
    float *y0 = malloc(n * sizeof(float)), *y1 = malloc(n * sizeof(float));
    float *save = malloc(kiln_attention_save_floats(g, nd, batch) * sizeof(float));
    float *work = malloc(kiln_attention_work_floats(g, nd, batch, threads) * sizeof(float));
    a.out = y0;
    a.save = save;
    a.work = work;
    kiln_node_forward(g, id, &a);
    a.out = y1;
    a.save = NULL;
    a.work = work;
    kiln_node_forward(g, id, &a);
    double worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmax(worst, fabs((double)y0[i] - y1[i]));
    CHECK(worst < 1e-4, "streamed attention differs by %g (t %d, s %d, width %d, heads %d, causal %d, packed %d)",
          worst, t, s, width, heads, causal, packed);
    for (int j = 0; j < nd->n_inputs; j++)
        free((void *)a.in[j]);
    free(y0), free(y1), free(save), free(work);
    kiln_graph_free(g);
}

/* The inference runtime (optimised, planned, streamed attention) and a saved-and-loaded copy
 * agree with the training tape's eval-mode forward on every output. */
static int session_threads = 2;   /* 1 for the checks of the single-threaded packed GEMM */

static void check_session(const char *spec, int batch)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "session-spec");
    CHECK(g != NULL, "%s\n%s", kiln_last_error(), spec);
    if (!g)
        return;
    kiln_graph_init_params(g, kiln_rng_next(&rng));
    kiln_tape_t *t = kiln_tape_create(g, batch, false, 1);
    int ids[8], outs[KILN_MAX_OUTPUTS], n_in = kiln_graph_inputs(g, ids), n_out = kiln_graph_outputs(g, outs);
    void *x[8];
    for (int k = 0; k < n_in; k++) {
        const kiln_node *in = &g->nodes[ids[k]];
        size_t n = in->numel * (size_t)batch;
        x[k] = malloc(n * 4);
        for (size_t i = 0; i < n; i++) {
            if (in->dtype == KILN_DT_I32)
                ((int32_t *)x[k])[i] = rnd(0, vocab_of(g, ids[k]) - 1);
            else
                ((float *)x[k])[i] = urand();
        }
    }
    CHECK(kiln_tape_run(t, (const void *const *)x, batch, false) == KILN_OK, "%s", kiln_last_error());
    char path[256];
    snprintf(path, sizeof path, "%s/test_ops_session.safetensors", getenv("KILN_BINARY_DIR") ? getenv("KILN_BINARY_DIR") : ".");
    CHECK(kiln_graph_save(g, path, NULL) == KILN_OK, "save: %s", kiln_last_error());
    kiln_model_t *models[2] = {kiln_model_create(g, true), kiln_model_load(path)};
    for (int mi = 0; mi < 2; mi++) {
        CHECK(models[mi] != NULL, "model %d: %s", mi, kiln_last_error());
        if (!models[mi])
            continue;
        kiln_session_t *s = kiln_session_create(models[mi], &(kiln_session_options){.max_batch = batch,
                                                                                  .threads = session_threads});
        CHECK(s != NULL, "session: %s", kiln_last_error());
        float *y[KILN_MAX_OUTPUTS];
        size_t ny[KILN_MAX_OUTPUTS];
        for (int k = 0; k < n_out; k++) {
            const kiln_node *o = &g->nodes[outs[k]];
            ny[k] = o->numel * (o->batched ? (size_t)batch : 1);
            y[k] = malloc(ny[k] * sizeof(float));
        }
        CHECK(s && kiln_session_run_all(s, (const void *const *)x, batch, y) == KILN_OK, "run: %s", kiln_last_error());
        for (int k = 0; k < n_out; k++) {
            const float *ref = kiln_tape_output(t, k);
            double worst = 0;
            for (size_t i = 0; i < ny[k]; i++)
                worst = fmax(worst, fabs((double)ref[i] - y[k][i]) / (1.0 + fabs(ref[i])));
            CHECK(worst < 1e-4, "%s model, output %d differs from the tape by %g:\n%s", mi ? "loaded" : "optimised",
                  k, worst, spec);
            free(y[k]);
        }
        kiln_session_free(s);
        kiln_model_free(models[mi]);
    }
    remove(path);
    for (int k = 0; k < n_in; k++)
        free(x[k]);
    kiln_tape_free(t);
    kiln_graph_free(g);
}

/* An fp32 runtime model with a rank-6 param saved by kiln_model_save and loaded back gives the
 * same outputs (the tensor's dims were once copied into four slots). */
static void check_model_save_rank6(void)
{
    const char *path = "ops_rank6.safetensors";
    kiln_graph_t *g = kiln_spec_parse("x: input 2 1 3 1 2 2\nw: param 2x1x3x1x2x2 std=0.5\nadd x w\n", "rank6");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 3);
    kiln_model_t *m = kiln_model_create(g, true), *l = NULL;
    CHECK(m && kiln_model_save(m, path, false, NULL) == KILN_OK, "%s", kiln_last_error());
    l = m ? kiln_model_load(path) : NULL;
    CHECK(l != NULL, "%s", kiln_last_error());
    float x[24], y0[24], y1[24];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i;
    for (int k = 0; l && k < 2; k++) {
        kiln_session_t *s = kiln_session_create(k ? l : m, NULL);
        CHECK(s && kiln_session_run(s, x, 1, k ? y1 : y0) == KILN_OK, "%s", kiln_last_error());
        kiln_session_free(s);
    }
    CHECK(!l || memcmp(y0, y1, sizeof y0) == 0, "the reloaded rank-6 model differs");
    kiln_model_free(l);
    kiln_model_free(m);
    kiln_graph_free(g);
    remove(path);
}

/* The KV-cache decoder, one position at a time, gives the full forward's output at every
 * position; it refuses a full context and restarts after a reset. */
static void check_decoder(void)
{
    int T = 21, D = 8, V = 13;
    char spec[1024];
    snprintf(spec, sizeof spec,
             "tok: input %d dtype=i32\nemb: embedding %d %d\npos: param %dx%d std=0.5\nx: add emb pos\nln1: layernorm\n"
             "qkv: linear %d\natt: attention heads=2 causal=1\nr1: add x att\nln2: rmsnorm\nfc: linear %d\nsilu\n"
             "fc2: linear %d\nr2: add r1 fc2\nln: layernorm\nlogits: linear %d\n", T, V, D, T, D, 3 * D, 2 * D, D, V);
    kiln_graph_t *g = kiln_spec_parse(spec, "lm");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 5);
    kiln_model_t *m = kiln_model_create(g, true);
    kiln_session_t *s = kiln_session_create(m, NULL);
    kiln_decoder_t *d = kiln_decoder_create(m);
    CHECK(m && s && d, "%s", kiln_last_error());
    if (!m || !s || !d)
        return;
    int32_t tok[21];
    for (int i = 0; i < T; i++)
        tok[i] = rnd(0, V - 1);
    float full[21 * 13], step[13];
    const void *in[1] = {tok};
    float *out[1] = {full};
    CHECK(kiln_session_run_all(s, in, 1, out) == KILN_OK, "%s", kiln_last_error());
    double worst = 0;
    for (int rep = 0; rep < 2; rep++) {
        kiln_decoder_reset(d);
        for (int p = 0; p < T; p++) {
            CHECK(kiln_decoder_step(d, tok[p], step) == KILN_OK, "%s", kiln_last_error());
            for (int v = 0; v < V; v++)
                worst = fmax(worst, fabs((double)step[v] - full[p * V + v]));
        }
    }
    CHECK(worst < 1e-4, "decoder differs from the full forward by %g", worst);
    CHECK(kiln_decoder_step(d, 0, step) != KILN_OK && strstr(kiln_last_error(), "full"), "a full context is refused");
    kiln_decoder_reset(d);
    CHECK(kiln_decoder_step(d, V, step) != KILN_OK && strstr(kiln_last_error(), "outside the vocabulary"),
          "a token outside the vocabulary is refused");
    kiln_decoder_free(d);
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_graph_free(g);
    /* a model that mixes positions is refused with the node named */
    g = kiln_spec_parse("tok: input 6 dtype=i32\nemb: embedding 5 4\nr: reshape 24\nlinear 5\n", "mixing");
    m = g ? kiln_model_create(g, true) : NULL;
    d = m ? kiln_decoder_create(m) : NULL;
    CHECK(d == NULL && strstr(kiln_last_error(), "r (reshape) mixes positions"), "mixing model: %s", kiln_last_error());
    kiln_model_free(m);
    kiln_graph_free(g);
}

/* A view of a view of a param reads the param in a session; a declared output that only a view
 * reads keeps its own loss gradient in the tape (no aliasing over it). */
static void check_view_edges(void)
{
    kiln_graph_t *g = kiln_spec_parse("x: input 2 8\np: param 4x4 std=1\nr1: reshape 16 in=p\nr2: reshape 2x8 in=r1\n"
                                      "y: add x r2\n", "views");
    kiln_graph_init_params(g, 1);
    kiln_model_t *m = kiln_model_create(g, true);
    kiln_session_t *s = kiln_session_create(m, NULL);
    float x[16] = {0}, y[16];
    CHECK(kiln_session_run(s, x, 1, y) == KILN_OK && memcmp(y, kiln_graph_params(g), sizeof y) == 0,
          "a view of a view of a param reads the param");
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_graph_free(g);
    g = kiln_spec_parse("x: input 4\nhh: linear 4\nr: reshape 2x2 in=hh\ny: sum axes=0,1 in=r\noutput hh,y\n", "out");
    kiln_graph_init_params(g, 2);
    kiln_tape_t *t = kiln_tape_create(g, 1, false, 1);
    float xi[4] = {1, 2, 3, 4}, d0[4] = {1, 1, 1, 1}, d1[1] = {0};
    const float *dd[2] = {d0, d1};
    const void *in[1] = {xi};
    CHECK(kiln_tape_run(t, in, 1, true) == KILN_OK, "%s", kiln_last_error());
    kiln_tape_backward_outputs(t, dd);
    const float *gp = kiln_tape_param_grads(t);
    CHECK(gp[16] == 1.0f && gp[19] == 1.0f, "an output read by a view keeps its gradient: bias grad %g", gp[16]);
    kiln_tape_free(t);
    kiln_graph_free(g);
}

static void expect_error(const char *spec, const char *want)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "t.kiln");
    CHECK(g == NULL, "spec accepted:\n%s", spec);
    CHECK(g != NULL || strstr(kiln_last_error(), want) != NULL, "error \"%s\" lacks \"%s\"", kiln_last_error(), want);
    kiln_graph_free(g);
}

static void check_shapes(void)
{
    for (int op = 0; op < KILN_OP_COUNT; op++)
        CHECK(kiln_op_name((kiln_op)op) != NULL, "op %d has no record", op);
    expect_error("a: input 5 4\nb: input 3 6\nmm: matmul a b\n", "mm: matmul: inner dims differ: 5x4 and 3x6");
    expect_error("a: input 2 5 4\nb: input 3 4 6\nmatmul a b\n", "leading dims do not broadcast: 2x5x4 and 3x4x6");
    expect_error("a: input 4 3\nb: input 2\ns: add a b\n", "s: add: input b of shape 2 does not broadcast with 4x3");
    expect_error("input 12\nr: reshape 5x-1\n", "r: reshape: cannot reshape 12 to 5x-1");
    expect_error("input 4 6\nt: transpose 0,0\n", "t: transpose: perm is not a permutation");
    expect_error("input 4 7\nattention heads=1\n", "attention_1: attention: packed qkv 4x7");
    expect_error("input 4 12\nattention heads=3\n", "3 heads do not divide the width 4");
    expect_error("input 4\nembedding 10 8\n", "is F32, expected I32 indices");
    expect_error("input 4 6\nslice axis=1 start=5 end=2\n", "slice 5:2 of axis 1 (length 6)");
    expect_error("input 4 6\nsoftmax axis=2\n", "axis 2 is outside input 4x6");
    expect_error("input 4 6\nmean axes=-3\n", "must name axes of input 4x6");
    /* sizes whose products would wrap are refused before anything is sized by them */
    expect_error("x: input 1 1 1 1\ny: pad pads=65535,65535,65535,65535,0,0,0,0\n",
                 "y: pad: output of 18446744073709551616 values per example, at most 1e9");
    expect_error("input 2\np: param 65536x65536x65536x65536\n", "p: param: tensor weight of");
    expect_error("input 2 3 4 5\nbatchnorm\n", "batchnorm takes a vector or (c,h,w), found rank 4");
    expect_error("input 2 300 300\nconv_transpose2d 100000 3 stride=1000\n", "values per example, at most 1e9");
    expect_error("input 4 6\nsplit axis=1 sizes=2,3\n", "split split_1: parts sum to 5, axis 1 of input has 6");
    expect_error("input 4 6\nupsample scale=2\n", "input input is 4x6, expected (c, h, w)");
    expect_error("input 2 4 6\npad pads=1,2,3,4,5,6,7,8\n", "pads name axis 3, past input 2x4x6");
    expect_error("input 2 4 6\nconv_transpose2d 3 3 pad=3\n", "padding 3x3 leaves no output for input 2x4x6");
    /* shapes and the round trip through spec text */
    kiln_graph_t *g = kiln_spec_parse("x: input 3 1 5\ny: input 4 1\nw: param 5x2 std=0.1\ns: mul x y\n"
                                      "m: matmul s w\nr: reshape -1x2\nt: transpose 1,0\nmean axes=1 keepdims=1\n"
                                      "output m,t\n", "shapes");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (g) {
        int d[KILN_MAX_RANK], ids[KILN_MAX_OUTPUTS];
        CHECK(kiln_graph_shape(g, kiln_graph_find(g, "s"), d) == 3 && d[0] == 3 && d[1] == 4 && d[2] == 5,
              "broadcast shape %dx%dx%d", d[0], d[1], d[2]);
        CHECK(kiln_graph_shape(g, kiln_graph_find(g, "m"), d) == 3 && d[2] == 2, "matmul shape");
        CHECK(kiln_graph_shape(g, kiln_graph_find(g, "t"), d) == 2 && d[0] == 2 && d[1] == 12, "transpose shape");
        CHECK(kiln_graph_shape(g, g->n - 1, d) == 2 && d[0] == 2 && d[1] == 1, "mean shape");
        CHECK(!g->nodes[kiln_graph_find(g, "w")].batched && g->nodes[kiln_graph_find(g, "m")].batched,
              "params are unbatched, what reads the input is batched");
        CHECK(kiln_graph_outputs(g, ids) == 2 && ids[0] == kiln_graph_find(g, "m"), "declared outputs");
        char *text = kiln_graph_to_spec(g);
        kiln_graph_t *g2 = kiln_spec_parse(text, "round trip");
        CHECK(g2 && g2->n == g->n && g2->n_params == g->n_params && kiln_graph_outputs(g2, NULL) == 2,
              "round trip of:\n%s", text);
        char *text2 = g2 ? kiln_graph_to_spec(g2) : NULL;
        CHECK(text2 && strcmp(text, text2) == 0, "spec text is not a fixed point:\n%s", text);
        free(text), free(text2);
        kiln_graph_free(g2);
        kiln_graph_free(g);
    }
}

/* kiln_graph_init_params gives conv_transpose2d weights Kaiming-uniform values (PyTorch's
 * bound 1/sqrt(fan_in), fan_in = out * kh * kw), as every other weighted layer: not zeros. */
static void check_init_conv_transpose(void)
{
    kiln_graph_t *g = kiln_spec_parse("input 3 4 4\nconv_transpose2d 5 3 stride=2\n", "init");
    CHECK(g != NULL, "spec: %s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 7);
    const kiln_node *nd = &g->nodes[1];
    const float *w = kiln_node_tensor(g, nd, 0);
    float bound = 1.0f / sqrtf(5.0f * 3 * 3), lo = 0, hi = 0;
    for (size_t k = 0; k < nd->params[0].numel; k++) {
        lo = w[k] < lo ? w[k] : lo;
        hi = w[k] > hi ? w[k] : hi;
    }
    CHECK(hi > 0.5f * bound && -lo > 0.5f * bound && hi <= bound && -lo <= bound,
          "conv_transpose2d weights span [%g, %g], expected about +-%g", lo, hi, bound);
    kiln_graph_free(g);
}

int main(void)
{
    kiln_rng_seed(&rng, 99);
    check_init_conv_transpose();
    /* token indices are int32: arithmetic on them would read their bits as floats */
    expect_error("t: input 4 dtype=i32\nc: const 4 dtype=f32\nadd t c\n", "only embedding reads");
    expect_error("t: input 4 dtype=i32\nrelu\n", "only embedding reads");   /* (the previous layer, implicitly) */
    char spec[2048];
    check_shapes();
    check_decoder();
    check_view_edges();
    check_model_save_rank6();
    for (int rep = 0; rep < 2; rep++) {
        int a = rnd(2, 4), b = rnd(2, 5), c = rnd(2, 6), bt = rnd(1, 3);
        snprintf(spec, sizeof spec, "input %d %d %d\nlinear %d\n", a, b, c, rnd(1, 5));
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d\nlinear %d bias=0\n", a, c, rnd(1, 5));
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d %d\nmatmul x y\n", a, b, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input 3 1 %d %d\ny: input 2 %d %d\nmatmul x y\n", a, b, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\nw: param %dx%d std=0.5\nmatmul x w\n", a, b, b, c);
        check_spec(spec, bt + 1);
        snprintf(spec, sizeof spec, "input %d %d\nlayernorm\n", a, c + 2);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nrmsnorm eps=1e-6\n", a, b, c + 2);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nsoftmax axis=1\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d\nlog_softmax axis=-1\n", a, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nreshape %dx-1\ntranspose 1,0\nsigmoid\n", a, b, c, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\ntranspose 2,0,1\ntanh\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nslice axis=1 start=1 end=-1 step=2\n", a, b + 2, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\ncls: param 1x%d std=1\nconcat cls x axis=0\n", a, c, c);
        check_spec(spec, bt + 1);
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d %d\nconcat x y axis=1\n", a, b, a, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d %d\ny: input %d 1\nadd x y\n", a, b, c, b);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d %d\ny: param 1x%d std=1\nsub x y\n", a, b, c, c);
        check_spec(spec, bt + 1);
        snprintf(spec, sizeof spec, "x: input %d %d %d\ny: input %d\nmul x y\n", a, b, c, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\nm: mul x x\n", a, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d 1\nd: sigmoid in=y\ndiv x d\n", a, c, a);
        check_spec(spec, bt);
        const char *acts[] = {"silu", "hard_swish", "relu6", "gelu"};
        for (int i = 0; i < 4; i++) {
            snprintf(spec, sizeof spec, "input %d %d\nlinear %d\n%s\n", a, c, c, acts[i]);
            check_spec(spec, bt);
        }
        /* elementwise math (inputs kept inside each op's domain) */
        const char *maths[] = {"exp\nsqrt", "sigmoid\nlog", "sigmoid\nreciprocal", "abs", "neg", "erf",
                               "clip lo=-0.3 hi=0.4", "exp\nclip lo=0.5"};
        for (int i = 0; i < 8; i++) {
            snprintf(spec, sizeof spec, "input %d %d\n%s\n", a, c, maths[i]);
            check_spec(spec, bt);
        }
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d\ns: sigmoid in=x\npow s y\n", a, c, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d\nz: param %dx1 std=1\nmax x y z\n", a, c, c, a);
        check_spec(spec, bt + 1);
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d %d\nmin x y\nfloor\n", a, c, a, c);
        check_session(spec, bt);
        snprintf(spec, sizeof spec, "t: input %d dtype=i32\nembedding %d %d\nlayernorm\n", b + 3, rnd(3, 9), c);
        check_spec(spec, bt);
        for (int causal = 0; causal < 2; causal++) {
            int heads = rnd(1, 3), dh = rnd(1, 4), tt = rnd(2, 7);
            snprintf(spec, sizeof spec, "input %d %d\nattention heads=%d causal=%d\n", tt, 3 * heads * dh, heads, causal);
            check_spec(spec, bt);
        }
        snprintf(spec, sizeof spec, "q: input %d 6\nk: input %d 6\nv: input %d 6\nattention in=q,k,v heads=2\n",
                 a, b, b);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "q: input %d 4\nkv: input %d 4\nattention in=q,kv,kv heads=2\n", a, b);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample scale=2 mode=nearest\nsigmoid\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample size=%dx%d mode=bilinear\n", a, b, c, 2 * b + 1, c + 3);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample size=%dx%d mode=bilinear\n", a, b + 3, c + 2, b + 1, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample size=%dx%d mode=bilinear coord=align_corners\n", a, b, c,
                 2 * b + 1, c + 2);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample scale=1.7 mode=bilinear coord=asymmetric\ntanh\n", a, b,
                 c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample size=%dx%d mode=bicubic\n", a, b + 1, c + 1, 2 * b + 3,
                 c + 2);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample scale=1.5 mode=bicubic cubic_a=-0.5 exclude=1\n", a,
                 b + 2, c + 2);
        check_spec(spec, bt);
        check_session(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nupsample scale=2.5 mode=nearest coord=half_pixel rounding=half_up\n",
                 a, b, c);
        check_session(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nconv_transpose2d %d 3 stride=2 pad=1 out_pad=1\n", a, b, c, rnd(1, 4));
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nconv_transpose2d %d 2x3 stride=2x1 dilation=2 bias=0\n", a, b, c,
                 rnd(1, 4));
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\npad pads=0,1,2,1,0,3 value=0.5\ntanh\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\npad pads=0,1,1,0,1,1 mode=reflect\ntanh\n", a, b + 1, c + 1);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d\npad pads=2,0,3,2 mode=edge\n", a, c);
        check_spec(spec, bt);
        check_session(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d\npad pads=2,0\n", a, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "x: input %d %d\nparts: split axis=1 sizes=1,%d\nm: mul parts.0 parts.1\n"
                 "output m,parts.1\n", a, c + 1, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nmean axes=0,2\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nsum axes=1 keepdims=1\n", a, b, c);
        check_spec(spec, bt);
        snprintf(spec, sizeof spec, "input %d %d %d\nmean axes=-1,0 keepdims=1\n", a, b, c);
        check_spec(spec, bt);
        /* a pre-norm transformer block with two outputs */
        int d = 4 * rnd(1, 2), t = rnd(3, 6);
        snprintf(spec, sizeof spec,
                 "x: input %d %d\npos: param %dx%d std=0.1\nh: add x pos\nln1: layernorm\nqkv: linear %d\n"
                 "att: attention heads=2 causal=1\nproj: linear %d\nr1: add h proj\nln2: layernorm\nfc: linear %d\n"
                 "gelu\nfc2: linear %d\nr2: add r1 fc2\ncls: slice axis=0 start=0 end=1\nhead: linear 3\n"
                 "output head,r2\n", t, d, t, d, 3 * d, d, 2 * d, d);
        check_spec(spec, bt);
        check_session(spec, bt);
        snprintf(spec, sizeof spec,
                 "tok: input %d dtype=i32\nemb: embedding 11 %d\npos: param %dx%d std=0.1\nh: add emb pos\n"
                 "ln1: layernorm\nqkv: linear %d\natt: attention heads=2 causal=1\nr1: add h att\nrmsnorm\n"
                 "logits: linear 11\nlog_softmax axis=-1\n", t + 40, d, t + 40, d, 3 * d);
        check_session(spec, bt);
        /* the optimiser fuses the relu into the broadcasting add (act=relu) */
        snprintf(spec, sizeof spec, "x: input %d %d\ny: input %d\ns: add x y\nrelu\n", a, c, c);
        check_session(spec, bt);
        snprintf(spec, sizeof spec, "x: input 2 %d %d\ny: input %d\nw: param %dx%d std=1\ns: sub x y\n"
                 "m: matmul s w\nr: reshape -1\nsum axes=0 keepdims=1\noutput m,r\n", a, c, c, c, b);
        check_session(spec, bt + 1);
    }
    /* linears over tokens run their weights pre-packed at model load (one thread): several row,
     * column and depth blocks of the kernel, a fused relu, with and without bias, the last rows
     * in the 2-, 4- and 8-row tiles */
    session_threads = 1;
    check_session("input 130 300\nlinear 48\nrelu\nlinear 40 bias=0\n", 2);
    check_session("input 14 24\nlinear 1030\nlinear 26\n", 1);
    check_session("input 9 64\nlinear 64\ngelu\n", 3);
    session_threads = 2;
    int shapes[][4] = {{5, 5, 8, 2}, {40, 40, 16, 4}, {70, 150, 12, 3}, {1, 130, 8, 1}, {17, 17, 64, 4}};
    for (int i = 0; i < 5; i++)
        for (int causal = 0; causal < 2; causal++) {
            bool packed = shapes[i][0] == shapes[i][1];
            if (causal && !packed)
                continue;
            check_attention_streamed(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], causal, packed, 2);
        }
    return check_report();
}
