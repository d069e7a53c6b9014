/* ONNX export: models built from specs (the reference CNN, the default model, N-d graphs with
 * linear, layernorm, transpose, concat, params and fused activations) are exported, pass
 * onnx.checker (Debian's python3-onnx), import back and give the same outputs. Models whose ops
 * the importer does not read yet (attention, embedding over int32 tokens, gelu's Erf, resize,
 * pad, reductions, the int8 models' QDQ form) pass onnx.checker and, where ONNX Runtime is
 * installed (bench/node_modules, `make bench`), give Kiln's outputs in it (bench/ort_peer.js). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"

static void run(const kiln_model_t *m, const float *x, int n, float *y)
{
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = n, .threads = 1});
    CHECK(s && kiln_session_run(s, x, n, y) == KILN_OK, "run: %s", kiln_last_error());
    kiln_session_free(s);
}

/* Exports spec's model, checks it with onnx.checker, imports it and compares outputs. */
static void round_trip(const char *label, const char *spec, int batch)
{
    kiln_graph_t *g = kiln_spec_parse(spec, label);
    CHECK(g != NULL, "%s: %s", label, kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 11);
    kiln_model_t *m = kiln_model_create(g, true);
    char path[128];
    snprintf(path, sizeof path, "export_%s.onnx", label);
    CHECK(m && kiln_model_export_onnx(m, path) == KILN_OK, "%s: export: %s", label, kiln_last_error());
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import onnx; onnx.checker.check_model(onnx.load('%s'), "
             "full_check=True)\"", path);
    CHECK(system(cmd) == 0, "%s: onnx.checker refused %s", label, path);
    kiln_model_t *back = kiln_model_load(path);
    CHECK(back != NULL, "%s: import: %s", label, kiln_last_error());
    size_t nx = kiln_graph_numel(g, 0) * (size_t)batch, ny = kiln_graph_numel(g, kiln_graph_output(g)) * (size_t)batch;
    float *x = malloc(nx * sizeof(float)), *y0 = malloc(ny * sizeof(float)), *y1 = malloc(ny * sizeof(float));
    kiln_rng r;
    kiln_rng_seed(&r, 3);
    for (size_t i = 0; i < nx; i++)
        x[i] = kiln_rng_uniform(&r) * 2.0f - 1.0f;
    if (m && back) {
        run(m, x, batch, y0);
        run(back, x, batch, y1);
        double worst = 0;
        for (size_t i = 0; i < ny; i++)
            worst = fmax(worst, fabs((double)y0[i] - y1[i]) / (1.0 + fabs(y0[i])));
        CHECK(worst <= 1e-5, "%s: the re-imported model differs by %g", label, worst);
        printf("%-10s exported, checked, re-imported: max relative difference %.2g\n", label, worst);
    }
    free(x), free(y0), free(y1);
    kiln_model_free(back);
    kiln_model_free(m);
    kiln_graph_free(g);
    remove(path);
}

/* Fills every trainable tensor of g with uniform values in [-0.5, 0.5) (ops the initialiser
 * leaves at zero, such as conv_transpose2d, get weights too). */
static void randomize(kiln_graph_t *g, uint64_t seed)
{
    kiln_rng r;
    kiln_rng_seed(&r, seed);
    float *p = kiln_graph_params(g);
    for (size_t i = 0; i < kiln_graph_param_count(g); i++)
        p[i] = kiln_rng_uniform(&r) - 0.5f;
}

/* batch examples of g's input: uniform floats in [0, 1), or int32 ids below vocab. */
static void *make_input(const kiln_graph_t *g, int batch, int vocab)
{
    size_t n = kiln_graph_numel(g, 0) * (size_t)batch;
    void *x = malloc(n * 4);
    kiln_rng r;
    kiln_rng_seed(&r, 5);
    for (size_t i = 0; x && i < n; i++) {
        if (vocab)
            ((int32_t *)x)[i] = (int32_t)(kiln_rng_uniform(&r) * vocab) % vocab;
        else
            ((float *)x)[i] = kiln_rng_uniform(&r);
    }
    return x;
}

/* Whether ONNX Runtime can be run here (node and bench/node_modules/onnxruntime-node). */
static bool have_ort(const char *root)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "command -v node >/dev/null && test -d '%s/bench/node_modules/onnxruntime-node'", root);
    return system(cmd) == 0;
}

/* The largest relative difference between model m's outputs and ONNX Runtime's on the exported
 * path (batch examples x of shape dims); -1 when ONNX Runtime failed. */
static double ort_difference(const char *root, const kiln_model_t *m, const char *path, const void *x, int batch,
                             bool tokens, const char *label)
{
    const kiln_graph_t *g = kiln_model_graph(m);
    size_t nx = kiln_graph_numel(g, 0) * (size_t)batch, ny = kiln_graph_numel(g, kiln_graph_output(g)) * (size_t)batch;
    char in[160], out[160], shape[96], cmd[1600];
    snprintf(in, sizeof in, "export_%s.in", label);
    snprintf(out, sizeof out, "export_%s.out", label);
    FILE *f = fopen(in, "wb");
    CHECK(f && fwrite(x, 4, nx, f) == nx, "%s: writing %s", label, in);
    if (f)
        fclose(f);
    int dims[KILN_MAX_RANK], r = kiln_graph_shape(g, 0, dims), at = snprintf(shape, sizeof shape, "%d", batch);
    for (int i = 0; i < r; i++)
        at += snprintf(shape + at, sizeof shape - (size_t)at, "x%d", dims[i]);
    snprintf(cmd, sizeof cmd, "node '%s/bench/ort_peer.js' run '%s' '%s' '%s' --shape %s%s >/dev/null", root, path, in,
             out, shape, tokens ? " --int32" : "");
    float *y0 = malloc(ny * sizeof(float)), *y1 = malloc(ny * sizeof(float));
    double worst = -1;
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = 1});
    const void *ins[1] = {x};
    float *outs[1] = {y0};
    CHECK(s && kiln_session_run_all(s, ins, batch, outs) == KILN_OK, "%s: run: %s", label, kiln_last_error());
    if (system(cmd) == 0 && (f = fopen(out, "rb"))) {
        if (fread(y1, sizeof(float), ny, f) == ny) {
            worst = 0;
            for (size_t i = 0; i < ny; i++)
                worst = fmax(worst, fabs((double)y0[i] - y1[i]) / (1.0 + fabs(y0[i])));
        }
        fclose(f);
    }
    kiln_session_free(s);
    free(y0), free(y1);
    remove(in);
    remove(out);
    return worst;
}

/* Exports model m (fp32 or int8) to a file named after label, checks it with onnx.checker and,
 * where ONNX Runtime is installed, compares its outputs with m's on batch examples. */
static void check_in_ort(const char *root, const kiln_model_t *m, const char *label, int batch, int vocab)
{
    char path[128], cmd[512];
    snprintf(path, sizeof path, "export_%s.onnx", label);
    CHECK(kiln_model_export_onnx(m, path) == KILN_OK, "%s: export: %s", label, kiln_last_error());
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import onnx; onnx.checker.check_model(onnx.load('%s'), "
             "full_check=True)\"", path);
    CHECK(system(cmd) == 0, "%s: onnx.checker refused %s", label, path);
    if (!have_ort(root)) {
        printf("%-10s exported, checked (no ONNX Runtime in bench/node_modules: not run)\n", label);
        remove(path);
        return;
    }
    void *x = make_input(kiln_model_graph(m), batch, vocab);
    double worst = x ? ort_difference(root, m, path, x, batch, vocab > 0, label) : -1;
    CHECK(worst >= 0 && worst <= 1e-5, "%s: ONNX Runtime's outputs differ by %g (-1: it failed)", label, worst);
    printf("%-10s exported, checked, run by ONNX Runtime: max relative difference %.2g\n", label, worst);
    free(x);
    remove(path);
}

/* check_in_ort for spec's model (weights from the default init, or uniform when uniform), and with int8 for its quantised form too
 * (calibrated on 32 inputs like the ones compared). */
static void ort_case(const char *root, const char *label, const char *spec, int batch, int vocab, bool int8,
                     bool uniform)
{
    kiln_graph_t *g = kiln_spec_parse(spec, label);
    CHECK(g != NULL, "%s: %s", label, kiln_last_error());
    if (!g)
        return;
    if (uniform)
        randomize(g, 7);
    else
        kiln_graph_init_params(g, 7);
    kiln_model_t *m = kiln_model_create(g, true);
    CHECK(m != NULL, "%s: %s", label, kiln_last_error());
    if (m)
        check_in_ort(root, m, label, batch, vocab);
    void *calib = int8 && m ? make_input(g, 32, vocab) : NULL;
    kiln_model_t *q = calib ? kiln_model_quantize(m, calib, 32, KILN_CALIBRATE_MINMAX) : NULL;
    CHECK(!int8 || q, "%s: quantize: %s", label, kiln_last_error());
    if (q) {
        char l8[64];
        snprintf(l8, sizeof l8, "%s_int8", label);
        check_in_ort(root, q, l8, batch, vocab);
    }
    free(calib);
    kiln_model_free(q);
    kiln_model_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const char *root = getenv("KILN_SOURCE_DIR");
    root = root ? root : "..";
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/fashion_cnn.kiln", root);
    kiln_graph_t *cnn = kiln_spec_load(path);
    CHECK(cnn != NULL, "%s", kiln_last_error());
    char *cnn_spec = cnn ? kiln_graph_to_spec(cnn) : NULL;
    if (cnn_spec) {
        round_trip("cnn", cnn_spec, 3);
        ort_case(root, "cnn", cnn_spec, 4, 0, true, false);
    }
    free(cnn_spec);
    kiln_graph_free(cnn);
    round_trip("bn_gap", "input 3 12 12\nconv2d 8 3 stride=2 pad=1\nbatchnorm\nleaky_relu 0.2\n"
                         "avgpool2d 2\nrelu\nglobal_avgpool\nsigmoid\ndense 5\nsoftmax\n", 2);
    round_trip("nd", "x: input 6 8\nln: layernorm\nfc: linear 12\ng: tanh\nt: transpose 1,0\n"
                     "p: param 12x6 std=0.5\ns: add t p\nc: concat s t axis=1\nfc2: linear 4 in=c\n"
                     "m: mul fc2 fc2\nlog_softmax axis=-1\n", 3);
    /* a byte-level causal LM in small: int32 tokens, embedding, attention, gelu, int8 linears */
    ort_case(root, "lm", "tokens: input 12 dtype=i32\nemb: embedding 40 16\npos: param 12x16 std=0.5\n"
                         "x: add emb pos\nln1: layernorm\nqkv: linear 48\nattn: attention heads=2 causal=1\n"
                         "proj: linear 16\nres: add proj x\nln2: layernorm\nfc1: linear 32\ngelu\n"
                         "fc2: linear 16\nres2: add fc2 res\nrmsnorm\nlogits: linear 40\n", 3, 40, true, true);
    /* a ViT in small: patches, class token, attention over q, k, v inputs, the class row */
    ort_case(root, "vit", "input 1 12 12\npatch: conv2d 16 4 stride=4\ntok: reshape 16x9\ntt: transpose 1,0\n"
                          "cls: param 1x16 std=0.5\nseq: concat cls tt axis=0\nln: layernorm\nq: linear 16\n"
                          "k: linear 16 in=ln\nv: linear 16 bias=0 in=ln\nattn: attention heads=4 in=q,k,v\n"
                          "res: add attn seq\nc: slice axis=0 start=0 end=1\nflat: reshape 16\nhead: linear 5\n",
            3, 0, true, true);
    /* the other N-d ops: conv_transpose2d, upsample, pad, reductions, silu, hard_swish, relu6,
     * matmul, slice, sub, div, concat of different ranks' results */
    ort_case(root, "ops_img", "x: input 3 6 6\nc1: conv2d 8 3 pad=1 act=gelu\nct: conv_transpose2d 6 3 stride=2 "
                              "pad=1 out_pad=1\ns1: silu\nup: upsample scale=1.5 mode=bilinear in=s1\n"
                              "un: upsample size=7x9 mode=nearest in=s1\nhs: hard_swish in=un\n"
                              "pd: pad pads=0,1,2,0,2,1 value=0.5 in=hs\nr6: relu6 in=pd\n"
                              "m: mean axes=1,2 keepdims=1 in=up\nm2: sigmoid in=m\nd: div up m2\ns: sub d m\n"
                              "sm: sum axes=-1 in=s\nls: log_softmax axis=0 in=sm\nlf: reshape 108 in=ls\n"
                              "r6s: sum axes=0,1 in=r6\ncc: concat lf r6s axis=0\n", 2, 0, false, true);
    ort_case(root, "ops_seq", "x: input 6 8\nq: linear 8 in=x\nkv: param 5x8 std=0.5\nk: linear 8 in=kv\n"
                              "v: linear 8 bias=0 in=kv\na: attention heads=2 in=q,k,v\nn: rmsnorm in=a\n"
                              "t: transpose 1,0 in=n\np: param 6x3 std=0.5\nmm: matmul t p\n"
                              "sl: slice axis=1 start=1 end=3 in=mm\nw: param 2x8 std=0.5\nmm2: matmul sl w\n"
                              "f: linear 8 in=mm2 act=relu\nqkv: linear 24 in=f\na2: attention heads=4 causal=1 in=qkv\n"
                              "out: add a2 f\n", 3, 0, false, true);

    /* refused by name: an op with no ONNX form */
    kiln_graph_t *g = kiln_spec_parse("x: input 2 4 8\np: avgpool2d 2 pad=1\n", "pool");
    kiln_model_t *m = g ? kiln_model_create(g, true) : NULL;
    CHECK(m && kiln_model_export_onnx(m, "pool.onnx") != KILN_OK && strstr(kiln_last_error(), "avgpool2d"),
          "avgpool2d with padding: %s", kiln_last_error());
    kiln_model_free(m);
    kiln_graph_free(g);
    return check_report();
}
