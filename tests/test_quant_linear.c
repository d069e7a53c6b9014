/* int8 linear layers on random transformer-shaped models (f32 and token inputs): every linear,
 * and a matmul by a weight (made a linear when the model is optimised), runs in int8, the outputs stay close to fp32, the generic kernels give the CPU's kernels'
 * outputs bit for bit, and a saved int8 model reloads to bit-identical outputs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"
#include "ops/qgemm.h"

/* Runs m on inputs x (4-byte elements) of a batch of n into y. */
static void run(const kiln_model_t *m, const void *x, int n, float *y)
{
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = n, .threads = 2});
    const void *in[1] = {x};
    float *out[1] = {y};
    CHECK(s && kiln_session_run_all(s, in, n, out) == KILN_OK, "%s", kiln_last_error());
    kiln_session_free(s);
}

/* Linear nodes of m's graph, and how many a session runs on an int8 kernel. */
static void count_int8(const kiln_model_t *m, int *linears, int *int8)
{
    const kiln_graph_t *g = kiln_model_graph(m);
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = 1, .threads = 1});
    *linears = *int8 = 0;
    for (int i = 0; s && i < g->n; i++)
        if (g->nodes[i].op == KILN_OP_LINEAR) {
            ++*linears;
            *int8 += strncmp(kiln_session_node_kernel(s, i), "int8", 4) == 0;
        }
    kiln_session_free(s);
}

/* One random model: a pre-norm block over (tokens, width), from f32 rows or from token ids. */
static void one_model(kiln_rng *r, int rep)
{
    int t = 3 + (int)kiln_rng_below(r, 20), d = 8 * (1 + (int)kiln_rng_below(r, 6)), hidden = 5 + (int)kiln_rng_below(r, 70);
    int out = 2 + (int)kiln_rng_below(r, 30), n = 1 + (int)kiln_rng_below(r, 4);
    bool tokens = rep % 2 == 1;
    char spec[1024];
    int len = tokens ? snprintf(spec, sizeof spec, "ids: input %d dtype=i32\nemb: embedding 50 %d\n", t, d)
                     : snprintf(spec, sizeof spec, "x0: input %d %d\nemb: linear %d\n", t, d + 3, d);
    /* a param added through a view: calibration must read both as a session does */
    snprintf(spec + len, sizeof spec - (size_t)len,
             "pos: param %d std=0.5\npos2: reshape %dx%d in=pos\nx: add emb pos2\nln1: layernorm\nqkv: linear %d\n"
             "att: attention heads=2 causal=%d\nwp: param %dx%d std=0.3\nproj: matmul att wp\nres: add proj x\nln2: layernorm\nfc1: linear %d\n"
             "g: gelu\nfc2: linear %d\nres2: add fc2 res\nhead: linear %d\n",
             t * d, t, d, 3 * d, rep % 3 == 0, d, d, hidden, d, out);
    kiln_graph_t *g = kiln_spec_parse(spec, "random-block");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, kiln_rng_next(r));
    size_t nx = kiln_graph_numel(g, 0) * (size_t)n, ny = (size_t)t * out * n;
    float *x = malloc(nx * sizeof(float)), *yf = malloc(ny * sizeof(float)), *yq = malloc(ny * sizeof(float));
    float *yg = malloc(ny * sizeof(float)), *yl = malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++) {
        if (tokens)
            ((int32_t *)x)[i] = (int32_t)kiln_rng_below(r, 50);
        else
            x[i] = 2.0f * kiln_rng_uniform(r) - 1.0f;
    }
    kiln_model_t *f = kiln_model_create(g, true), *q = kiln_model_quantize(f, x, n, KILN_CALIBRATE_MINMAX);
    kiln_qgemm_force_generic(true);
    kiln_model_t *qg = kiln_model_quantize(f, x, n, KILN_CALIBRATE_MINMAX);
    kiln_qgemm_force_generic(false);
    CHECK(q && qg, "%s", kiln_last_error());
    if (q && qg) {
        int linears, int8;
        count_int8(q, &linears, &int8);
        CHECK(linears == 6 - tokens && int8 == linears, "%d linears, %d int8", linears, int8);
        run(f, x, n, yf);
        run(q, x, n, yq);
        /* the matmul by a weight became a linear with the weight transposed: same outputs */
        kiln_model_t *plain = kiln_model_create(g, false);
        run(plain, x, n, yl);
        double diff = 0;
        for (size_t i = 0; i < ny; i++)
            diff = fmax(diff, fabs(yf[i] - yl[i]));
        CHECK(diff <= 1e-4, "optimised fp32 model differs from the plain one by %g", diff);
        kiln_model_free(plain);
        run(qg, x, n, yg);
        double lo = INFINITY, hi = -INFINITY, err = 0;
        for (size_t i = 0; i < ny; i++) {
            lo = yf[i] < lo ? yf[i] : lo;
            hi = yf[i] > hi ? yf[i] : hi;
            err = fmax(err, fabs(yf[i] - yq[i]));
        }
        /* six int8 products in a row, calibrated on these very inputs: a few percent of the range */
        CHECK(err <= 0.06 * (hi - lo), "max error %g of range %g", err, hi - lo);
        CHECK(memcmp(yq, yg, ny * sizeof(float)) == 0, "generic kernels differ");
        const char *path = "quant_linear.safetensors";
        CHECK(kiln_model_save(q, path, false, NULL) == KILN_OK, "%s", kiln_last_error());
        kiln_model_t *l = kiln_model_load(path);
        CHECK(l != NULL, "%s", kiln_last_error());
        if (l) {
            run(l, x, n, yl);
            CHECK(memcmp(yq, yl, ny * sizeof(float)) == 0, "reloaded model differs");
        }
        kiln_model_free(l);
        remove(path);
        if (rep == 0)
            printf("int8 linear block (%dx%d, hidden %d): max |int8 - fp32| %.4f of range %.3f\n", t, d, hidden, err,
                   hi - lo);
    }
    kiln_model_free(qg);
    kiln_model_free(q);
    kiln_model_free(f);
    kiln_graph_free(g);
    free(x), free(yf), free(yq), free(yg), free(yl);
}

/* A pool read through a reshape (not a flatten) by a linear, and an ONNX-style CNN whose reshape
 * and linear the optimiser makes a flatten and a dense: int8 runs them (u8 tensors are NHWC, so
 * the reshaped pool stays fp32) close to fp32. */
static void test_reshaped(void)
{
    static const char *const specs[] = {
        "input 1 8 8\nconv2d 4 3 pad=1\nmaxpool2d 2\nreshape 4x16\nlinear 5\n",
        "input 1 8 8\nconv2d 4 3 pad=1\nrelu\nmaxpool2d 2\nreshape 64\nlinear 6\nrelu\nlinear 3\n",
    };
    for (int k = 0; k < 2; k++) {
        kiln_graph_t *g = kiln_spec_parse(specs[k], "reshaped");
        CHECK(g != NULL, "%s", kiln_last_error());
        if (!g)
            continue;
        kiln_graph_init_params(g, 4);
        enum { N = 8 };
        float x[64 * N], yf[20 * N], yq[20 * N];
        for (int i = 0; i < 64 * N; i++)
            x[i] = (float)(i % 13) / 13.0f;
        kiln_model_t *f = kiln_model_create(g, true), *q = kiln_model_quantize(f, x, N, KILN_CALIBRATE_MINMAX);
        CHECK(q != NULL, "%s", kiln_last_error());
        if (q) {
            run(f, x, N, yf);
            run(q, x, N, yq);
            size_t ny = kiln_graph_numel(g, g->n - 1) * N;
            double err = 0, hi = 0;
            for (size_t i = 0; i < ny; i++) {
                err = fmax(err, fabs(yf[i] - yq[i]));
                hi = fmax(hi, fabs(yf[i]));
            }
            CHECK(err <= 0.05 * hi + 1e-3, "spec %d: int8 differs by %g (outputs up to %g)", k, err, hi);
        }
        kiln_model_free(q);
        kiln_model_free(f);
        kiln_graph_free(g);
    }
}

int main(void)
{
    test_reshaped();
    kiln_rng r;
    kiln_rng_seed(&r, 5);
    for (int rep = 0; rep < 12; rep++)
        one_model(&r, rep);
    return check_report();
}
