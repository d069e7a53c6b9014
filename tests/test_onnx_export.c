/* ONNX export: models built from specs (the reference CNN, the default model, N-d graphs with
 * linear, layernorm, transpose, concat, params and fused activations) are exported, pass
 * onnx.checker (Debian's python3-onnx), import back and give the same outputs; an op with no
 * ONNX form and an int8 model are refused by name. */
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

int main(void)
{
    const char *root = getenv("KILN_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/examples/fashion_cnn.kiln", root ? root : "..");
    kiln_graph_t *cnn = kiln_spec_load(path);
    CHECK(cnn != NULL, "%s", kiln_last_error());
    char *cnn_spec = cnn ? kiln_graph_to_spec(cnn) : NULL;
    if (cnn_spec)
        round_trip("cnn", cnn_spec, 3);
    free(cnn_spec);
    kiln_graph_free(cnn);
    round_trip("bn_gap", "input 3 12 12\nconv2d 8 3 stride=2 pad=1\nbatchnorm\nleaky_relu 0.2\n"
                         "avgpool2d 2\nrelu\nglobal_avgpool\nsigmoid\ndense 5\nsoftmax\n", 2);
    round_trip("nd", "x: input 6 8\nln: layernorm\nfc: linear 12\ng: tanh\nt: transpose 1,0\n"
                     "p: param 12x6 std=0.5\ns: add t p\nc: concat s t axis=1\nfc2: linear 4 in=c\n"
                     "m: mul fc2 fc2\nlog_softmax axis=-1\n", 3);

    /* refused by name: an op with no ONNX form yet, and an int8 model */
    kiln_graph_t *g = kiln_spec_parse("x: input 4 8\nattention heads=2 in=x,x,x\n", "attn");
    kiln_model_t *m = g ? kiln_model_create(g, true) : NULL;
    CHECK(m && kiln_model_export_onnx(m, "attn.onnx") != KILN_OK && strstr(kiln_last_error(), "attention"),
          "attention: %s", kiln_last_error());
    kiln_model_free(m);
    kiln_graph_free(g);
    g = kiln_spec_parse("input 1 4 4\nconv2d 2 3\nflatten\ndense 3\n", "q");
    kiln_graph_init_params(g, 1);
    m = kiln_model_create(g, true);
    float calib[16 * 4];
    for (int i = 0; i < 64; i++)
        calib[i] = (float)(i % 7) / 7.0f;
    kiln_model_t *q = kiln_model_quantize(m, calib, 4, KILN_CALIBRATE_MINMAX);
    CHECK(q && kiln_model_export_onnx(q, "q.onnx") != KILN_OK && strstr(kiln_last_error(), "int8"), "int8: %s",
          kiln_last_error());
    kiln_model_free(q);
    kiln_model_free(m);
    kiln_graph_free(g);
    return check_report();
}
