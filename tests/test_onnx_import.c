/* kiln_graph_import_onnx against PyTorch: tests/ref/onnx_models.py (Debian's python3-torch)
 * exports small seeded models with torch.onnx.export (opset 13, dynamic batch) and writes each
 * one's input x (batch 3) and PyTorch's output y (computed in fp64 from the fp32 weights); this
 * imports each model, runs it in a session (optimised, and as imported) at batch 3 and at batch
 * 1 on the first example, and compares: max |kiln - torch| / (1 + |torch|) at most 1e-4. A model
 * the importer refuses fails the test. Then hostile cases: a missing file's error names it; a
 * model with an op Kiln lacks (Elu) is refused naming the op and the node. KILN_REF_SEED=N
 * exports other random weights (default 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "io/safetensors.h"
#include "kiln/kiln.h"

#define TOL 1e-4

/* max |a - b| / (1 + |b|) (infinite if a holds a NaN or an infinity); *at gets the worst index. */
static double rel_err(const float *a, const float *b, size_t n, size_t *at)
{
    double e = 0;
    *at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = isfinite(a[i]) ? fabs((double)a[i] - b[i]) / (1 + fabs((double)b[i])) : INFINITY;
        if (d > e || (i == 0 && d == e))
            e = d, *at = i;
        if (isinf(e))
            break;
    }
    return e;
}

/* "1,8,8" -> dims; returns the rank or -1. */
static int parse_dims(const char *s, int *dims)
{
    int r = 0;
    while (*s && r < KILN_MAX_RANK) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0)
            return -1;
        dims[r++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return *s ? -1 : r;
}

/* Runs model m (optimised or not, per what) on the first `batch` examples of x in a session
 * planned for max_batch and compares with y; returns the error (infinite on failure). */
static double run_and_compare(const char *name, const char *what, const kiln_model_t *m, int max_batch, int batch,
                              const float *x, const float *y, size_t out_numel)
{
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = max_batch, .threads = 2});
    CHECK(s != NULL, "%s (%s): session at max_batch %d: %s", name, what, max_batch, kiln_last_error());
    if (!s)
        return INFINITY;
    size_t n = out_numel * (size_t)batch;
    float *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = NAN;
    kiln_status st = kiln_session_run(s, x, batch, out);
    CHECK(st == KILN_OK, "%s (%s): run at batch %d: %s", name, what, batch, kiln_last_error());
    double e = INFINITY;
    if (st == KILN_OK) {
        size_t at;
        e = rel_err(out, y, n, &at);
        CHECK(e <= TOL, "%s (%s, batch %d of max %d): error %.3e against PyTorch (tolerance %.0e); worst at [%zu]: "
              "Kiln %.7g, PyTorch %.7g", name, what, batch, max_batch, e, TOL, at, out[at], y[at]);
    }
    free(out);
    kiln_session_free(s);
    return e;
}

/* Imports dir/NAME.onnx and checks it against dir/NAME.safetensors; in_dims is the per-example
 * input shape from the manifest. */
static void check_model(const char *dir, const char *name, const int *in_dims, int in_rank)
{
    char onnx[1024], ref[1024];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, name);
    snprintf(ref, sizeof ref, "%s/%s.safetensors", dir, name);
    kiln_st_file *f = kiln_st_open(ref);
    CHECK(f != NULL, "%s: reference: %s", name, kiln_last_error());
    if (!f)
        return;
    const char *ops = kiln_st_meta(f, "ops");
    const kiln_st_tensor *tx = kiln_st_find(f, "x"), *ty = kiln_st_find(f, "y");
    CHECK(tx && ty && tx->dtype == KILN_DT_F32 && ty->dtype == KILN_DT_F32 && tx->ndim == in_rank + 1 &&
          ty->ndim >= 1 && tx->dims[0] == 3 && ty->dims[0] == 3, "%s: reference tensors x and y malformed", name);
    if (!(tx && ty && tx->dtype == KILN_DT_F32 && ty->dtype == KILN_DT_F32 && tx->ndim == in_rank + 1 &&
          ty->ndim >= 1 && tx->dims[0] == 3 && ty->dims[0] == 3)) {
        kiln_st_close(f);
        return;
    }
    const int batch = 3;
    const float *x = tx->data, *y = ty->data;

    kiln_graph_t *g = kiln_graph_import_onnx(onnx);
    CHECK(g != NULL, "%s (ops %s): import failed: %s", name, ops ? ops : "?", kiln_last_error());
    if (!g) {
        printf("%-11s import FAILED  (%s)\n", name, ops ? ops : "?");
        kiln_st_close(f);
        return;
    }
    /* one input and one output, shaped as PyTorch's without the batch */
    int in_id, out_id, dims[KILN_MAX_RANK];
    int n_in = kiln_graph_inputs(g, NULL), n_out = kiln_graph_outputs(g, NULL);
    CHECK(n_in == 1 && n_out == 1, "%s: %d inputs and %d outputs, expected 1 and 1", name, n_in, n_out);
    bool ok = n_in == 1 && n_out == 1;
    if (ok) {
        kiln_graph_inputs(g, &in_id);
        kiln_graph_outputs(g, &out_id);
        int r = kiln_graph_shape(g, in_id, dims);
        bool same = r == in_rank;
        for (int d = 0; same && d < r; d++)
            same = dims[d] == in_dims[d];
        CHECK(same, "%s: input's per-example shape differs from the ONNX input's (rank %d, first dim %d)", name, r,
              dims[0]);
        ok = same;
        r = kiln_graph_shape(g, out_id, dims);
        same = r == ty->ndim - 1;
        for (int d = 0; same && d < r; d++)
            same = dims[d] == ty->dims[d + 1];
        CHECK(same, "%s: output's per-example shape (rank %d: %d %d %d ...) differs from PyTorch's (rank %d: %lld "
              "%lld ...)", name, r, dims[0], dims[1], dims[2], ty->ndim - 1,
              (long long)(ty->ndim > 1 ? ty->dims[1] : 0), (long long)(ty->ndim > 2 ? ty->dims[2] : 0));
        ok = ok && same;
    }
    double worst = INFINITY;
    if (ok) {
        size_t out_numel = kiln_graph_numel(g, out_id);
        worst = 0;
        for (int optimize = 1; optimize >= 0; optimize--) {
            const char *what = optimize ? "optimised" : "as imported";
            kiln_model_t *m = kiln_model_create(g, optimize);
            CHECK(m != NULL, "%s: model (%s): %s", name, what, kiln_last_error());
            if (!m) {
                worst = INFINITY;
                continue;
            }
            worst = fmax(worst, run_and_compare(name, what, m, batch, batch, x, y, out_numel));
            /* the batch is dynamic: one example through the same plan and through one of its own */
            worst = fmax(worst, run_and_compare(name, what, m, batch, 1, x, y, out_numel));
            worst = fmax(worst, run_and_compare(name, what, m, 1, 1, x, y, out_numel));
            kiln_model_free(m);
        }
    }
    printf("%-11s max error %.2e  %s  (%s)\n", name, worst, worst <= TOL ? "ok" : "FAILED", ops ? ops : "?");
    kiln_graph_free(g);
    kiln_st_close(f);
}

static void check_hostile(const char *dir)
{
    char path[1024];
    /* a missing file: the message names it */
    snprintf(path, sizeof path, "%s/no_such_model.onnx", dir);
    kiln_graph_t *g = kiln_graph_import_onnx(path);
    const char *err = kiln_last_error();
    CHECK(g == NULL, "importing missing %s succeeded", path);
    CHECK(g || (err && strstr(err, path)), "missing file: the error does not name %s: %s", path, err ? err : "(none)");
    kiln_graph_free(g);

    /* an op Kiln does not have: the message names the op, the node and the file */
    snprintf(path, sizeof path, "%s/elu.onnx", dir);
    g = kiln_graph_import_onnx(path);
    err = kiln_last_error();
    CHECK(g == NULL, "importing %s (Gemm, Elu) succeeded: Elu is supported now? pick another op", path);
    CHECK(g || (err && strstr(err, "Elu")), "unsupported op: the error does not name Elu: %s", err ? err : "(none)");
    CHECK(g || (err && strstr(err, "/Elu")), "unsupported op: the error does not name node /Elu: %s",
          err ? err : "(none)");
    CHECK(g || (err && strstr(err, "elu.onnx")), "unsupported op: the error does not name the file: %s",
          err ? err : "(none)");
    printf("hostile: missing file and unsupported op refused: %s\n", g ? "(imported!)" : err ? err : "(no message)");
    kiln_graph_free(g);
}

int main(void)
{
    const char *src = getenv("KILN_SOURCE_DIR"), *bin = getenv("KILN_BINARY_DIR"), *seed = getenv("KILN_REF_SEED");
    char dir[512], path[1024], cmd[4096];
    snprintf(dir, sizeof dir, "%s/onnx_models", bin ? bin : ".");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/ref/onnx_models.py %s --seed %d", src ? src : "..", dir,
             seed ? atoi(seed) : 0);
    int rc = system(cmd);
    CHECK(rc == 0, "PyTorch ONNX exporter script failed (%d): are python3-torch and python3-onnx installed "
          "(scripts/setup-deps)?", rc);
    if (rc)
        return check_report();
    snprintf(path, sizeof path, "%s/onnx_models.txt", dir);
    FILE *mf = fopen(path, "r");
    CHECK(mf != NULL, "no manifest %s", path);
    if (!mf)
        return check_report();
    char line[256];
    int n_models = 0;
    while (fgets(line, sizeof line, mf)) {
        char name[64], shape[128];
        int dims[KILN_MAX_RANK];
        if (sscanf(line, "%63s %127s", name, shape) != 2)
            continue;
        int rank = parse_dims(shape, dims);
        CHECK(rank > 0, "manifest line %s", line);
        if (rank > 0) {
            check_model(dir, name, dims, rank);
            n_models++;
        }
    }
    fclose(mf);
    CHECK(n_models == 11, "the manifest lists %d models, expected 11", n_models);
    check_hostile(dir);
    return check_report();
}
