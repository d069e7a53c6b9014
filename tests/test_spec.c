/* Model definition: spec parsing (errors name line and column), the C API building the same
 * graph, shape inference, parameter counts and FLOPs of the reference models, spec round trip,
 * and model files (save, load, and every validation error). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "io/graph_file.h"

static char *spec_path(const char *name)
{
    static char buf[1024];
    const char *src = getenv("KILN_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/examples/%s", src ? src : "..", name);
    return buf;
}

/* Parses text and checks it fails with a message containing want. */
static void expect_error(const char *text, const char *want)
{
    kiln_graph_t *g = kiln_spec_parse(text, "t.kiln");
    CHECK(g == NULL, "spec should fail: %s", text);
    CHECK(strstr(kiln_last_error(), want) != NULL, "error \"%s\" lacks \"%s\"", kiln_last_error(), want);
    kiln_graph_free(g);
}

static void test_reference_models(void)
{
    kiln_graph_t *mlp = kiln_spec_load(spec_path("fashion_mlp.kiln"));
    kiln_graph_t *cnn = kiln_spec_load(spec_path("fashion_cnn.kiln"));
    CHECK(mlp && cnn, "%s", kiln_last_error());
    if (!mlp || !cnn)
        return;
    CHECK(kiln_graph_param_count(mlp) == 235146, "MLP has %zu parameters", kiln_graph_param_count(mlp));
    CHECK(kiln_graph_param_count(cnn) == 421642, "CNN has %zu parameters", kiln_graph_param_count(cnn));
    CHECK(kiln_graph_flops(cnn) == 8482304.0, "CNN forward FLOPs %.0f", kiln_graph_flops(cnn));
    int shape[KILN_MAX_RANK];
    int nd = kiln_graph_shape(cnn, kiln_graph_find(cnn, "pool2"), shape);
    CHECK(nd == 3 && shape[0] == 64 && shape[1] == 7 && shape[2] == 7, "pool2 shape %dx%dx%d", shape[0], shape[1],
          shape[2]);
    /* the same CNN through the C API */
    kiln_graph_t *g = kiln_graph_create();
    kiln_graph_input(g, 1, 28, 28);
    kiln_attrs conv = {.units = 32, .kernel = {3, 3}, .pad = {1, 1}}, pool = {.kernel = {2, 2}};
    kiln_graph_add(g, KILN_OP_CONV2D, NULL, 0, &conv, "conv1");
    kiln_graph_add(g, KILN_OP_RELU, NULL, 0, NULL, NULL);
    kiln_graph_add(g, KILN_OP_MAXPOOL2D, NULL, 0, &pool, "pool1");
    conv.units = 64;
    kiln_graph_add(g, KILN_OP_CONV2D, NULL, 0, &conv, "conv2");
    kiln_graph_add(g, KILN_OP_RELU, NULL, 0, NULL, NULL);
    kiln_graph_add(g, KILN_OP_MAXPOOL2D, NULL, 0, &pool, "pool2");
    kiln_graph_add(g, KILN_OP_FLATTEN, NULL, 0, NULL, NULL);
    kiln_attrs fc = {.units = 128};
    kiln_graph_add(g, KILN_OP_DENSE, NULL, 0, &fc, "fc1");
    kiln_graph_add(g, KILN_OP_RELU, NULL, 0, NULL, NULL);
    fc.units = 10;
    int out = kiln_graph_add(g, KILN_OP_DENSE, NULL, 0, &fc, "fc2");
    CHECK(out == 10, "C API graph has %d nodes", out + 1);
    char *a = kiln_graph_to_spec(g), *b = kiln_graph_to_spec(cnn);
    CHECK(strcmp(a, b) == 0, "C API and spec graphs differ:\n%s\n---\n%s", a, b);
    /* round trip: the serialised spec parses to the same spec */
    kiln_graph_t *r = kiln_spec_parse(b, "roundtrip");
    char *c = r ? kiln_graph_to_spec(r) : NULL;
    CHECK(c && strcmp(b, c) == 0, "spec round trip differs");
    free(a);
    free(b);
    free(c);
    kiln_graph_free(r);
    kiln_graph_free(g);
    kiln_graph_free(mlp);
    kiln_graph_free(cnn);
}

static void test_spec_features(void)
{
    const char *text = "# residual block with a concat\n"
                       "input 3 16 16   # comment after a layer\n"
                       "\n"
                       "stem: conv2d 8 3 pad=1 stride=1\n"
                       "bn: batchnorm eps=1e-3 momentum=0.2\n"
                       "relu\n"
                       "b1: conv2d 8 3x1 pad=1x0 groups=8\n"
                       "leaky_relu 0.2\n"
                       "sum: add stem\n"
                       "side: avgpool2d 3 stride=1 pad=1 in=stem\n"
                       "cat: concat sum side\n"
                       "conv2d 16 3 stride=2 dilation=2 pad=2 bias=0\n"
                       "gelu\n"
                       "global_avgpool\n"
                       "dropout 0.1\n"
                       "dense 10\n"
                       "softmax\n";
    kiln_graph_t *g = kiln_spec_parse(text, "t.kiln");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    int s[KILN_MAX_RANK], cat = kiln_graph_find(g, "cat");
    CHECK(cat > 0 && kiln_graph_shape(g, cat, s) == 3 && s[0] == 16 && s[1] == 16 && s[2] == 16,
          "concat shape %dx%dx%d", s[0], s[1], s[2]);
    const kiln_node *b1 = &g->nodes[kiln_graph_find(g, "b1")];
    CHECK(b1->params[0].dims[1] == 1 && b1->params[0].dims[2] == 3 && b1->params[0].dims[3] == 1,
          "depthwise weight dims %d %d %d", b1->params[0].dims[1], b1->params[0].dims[2], b1->params[0].dims[3]);
    int last = kiln_graph_output(g);
    CHECK(kiln_graph_shape(g, last, s) == 1 && s[0] == 10, "output shape %d", s[0]);
    char *t = kiln_graph_to_spec(g);
    kiln_graph_t *h = kiln_spec_parse(t, "again");
    char *u = h ? kiln_graph_to_spec(h) : NULL;
    CHECK(u && strcmp(t, u) == 0, "round trip differs:\n%s\n---\n%s", t, u ? u : kiln_last_error());
    free(t);
    free(u);
    kiln_graph_free(h);
    kiln_graph_free(g);
}

static void test_spec_errors(void)
{
    expect_error("input 1 28 28\nconv2d 8 3 strid=2\n", "t.kiln:2:12: unknown key 'strid' for conv2d");
    expect_error("input 1 28 28\nfoo 3\n", "t.kiln:2:1: unknown op 'foo'");
    expect_error("input 1 28 28\n  dense 10\n", "t.kiln:2:3: dense_1: dense expects a vector input, found 1x28x28");
    expect_error("input 1 28 28\nconv2d 8\n", "t.kiln:2:1: conv2d needs a kernel size");
    expect_error("input 1 28 28\nconv2d 8 3 pad=-1\n", "t.kiln:2:16: bad value '-1' for pad");
    expect_error("input 1 28 28\nconv2d 8 40\n", "does not fit input 28x28");
    expect_error("input 1 28 28\nadd nothere\n", "t.kiln:2:5: no earlier layer is named 'nothere'");
    expect_error("dense 10\n", "t.kiln:1:1: the first layer must be 'input'");
    expect_error("x: input 4\nx: input 4\n", "t.kiln:2:4: name 'x' is already used");
    expect_error("input 3 8 8\nconv2d 4 3 groups=2\n", "groups=2 must divide in channels 3");
    expect_error("input 1 8 8\na: relu\na: relu\n", "name 'a' is already used");
    expect_error("input 2 8 8\na: conv2d 3 1\nadd a in=input\n", "shape");
    expect_error("input 1 28 28\n", "needs an input and at least one layer");
    expect_error("input 1 28 28\ndropout 1.5\n", "dropout probability must be in [0, 1)");
    expect_error("input 1 28 28\nflatten\ndense 10 20\n", "t.kiln:3:10: unexpected argument '20' for dense");
    expect_error("input 0 28 28\nrelu\n", "t.kiln:1:7: unexpected argument '0' for input");
    kiln_graph_t *g = kiln_spec_load("/nonexistent/model.kiln");
    CHECK(!g && strstr(kiln_last_error(), "/nonexistent/model.kiln"), "missing file: %s", kiln_last_error());
}

static void test_model_files(void)
{
    kiln_graph_t *g = kiln_spec_load(spec_path("fashion_cnn.kiln"));
    if (!g)
        return;
    kiln_graph_init_params(g, 5);
    const char *meta[] = {"note", "line one\nline \"two\"", NULL};
    CHECK(kiln_graph_save(g, "spec_test_model.safetensors", meta) == KILN_OK, "save: %s", kiln_last_error());
    kiln_graph_t *h = kiln_graph_load("spec_test_model.safetensors");
    CHECK(h != NULL, "load: %s", kiln_last_error());
    if (h) {
        CHECK(h->n_params == g->n_params && memcmp(h->params, g->params, g->n_params * sizeof(float)) == 0,
              "parameters differ after a round trip");
        kiln_graph_free(h);
    }
    /* a tensor of the wrong shape, a missing tensor, a file that is not a kiln model */
    kiln_st_tensor ts[16];
    int n = kiln_graph_tensors(g, ts, 16);
    char *spec = kiln_graph_to_spec(g);
    const char *m1[] = {"kiln.format", "1", "kiln.spec", spec, NULL};
    ts[2].dims[0] = 16;
    ts[2].nbytes /= 4;
    kiln_st_write("spec_test_bad.safetensors", ts, n, m1);
    h = kiln_graph_load("spec_test_bad.safetensors");
    CHECK(!h && strstr(kiln_last_error(), "spec_test_bad.safetensors: tensor \"conv2.weight\": expected F32 [64,32,3,3], "
                                          "found F32 [16,32,3,3]"), "wrong shape: %s", kiln_last_error());
    kiln_graph_free(h);
    kiln_graph_tensors(g, ts, 16);
    kiln_st_write("spec_test_bad.safetensors", ts, n - 1, m1);
    h = kiln_graph_load("spec_test_bad.safetensors");
    CHECK(!h && strstr(kiln_last_error(), "tensor \"fc2.bias\"") && strstr(kiln_last_error(), "no such tensor"),
          "missing tensor: %s", kiln_last_error());
    kiln_graph_free(h);
    const char *m2[] = {"kiln.format", "1", "kiln.spec", "input 1 28 28\nconv2d 4 3 bogus=1\n", NULL};
    kiln_st_write("spec_test_bad.safetensors", ts, n, m2);
    h = kiln_graph_load("spec_test_bad.safetensors");
    CHECK(!h && strstr(kiln_last_error(), "spec_test_bad.safetensors (kiln.spec):2:"), "bad spec: %s", kiln_last_error());
    kiln_graph_free(h);
    kiln_st_write("spec_test_bad.safetensors", ts, n, NULL);
    h = kiln_graph_load("spec_test_bad.safetensors");
    CHECK(!h && strstr(kiln_last_error(), "\"kiln.format\""), "not a kiln model: %s", kiln_last_error());
    kiln_graph_free(h);
    /* every truncation of a valid model file fails cleanly */
    FILE *f = fopen("spec_test_model.safetensors", "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len, "short read");
    fclose(f);
    int accepted = 0;
    for (long cut = 0; cut < len; cut += cut < 4096 ? 7 : 9973) {
        kiln_st_file *sf = kiln_st_open_memory(buf, (size_t)cut, "cut.safetensors");
        kiln_graph_t *t = sf ? kiln_graph_from_file(sf) : NULL;
        accepted += t != NULL;
        kiln_graph_free(t);
        kiln_st_close(sf);
    }
    CHECK(accepted == 0, "%d truncated model files were accepted", accepted);
    free(buf);
    free(spec);
    remove("spec_test_model.safetensors");
    remove("spec_test_bad.safetensors");
    kiln_graph_free(g);
}

int main(void)
{
    test_reference_models();
    test_spec_features();
    test_spec_errors();
    test_model_files();
    return check_report();
}
