/* The ONNX backend suite's node tests (Debian's libonnx-testdata) through the importer and the
 * runtime: for each test directory, the model's first input is the batched input and any other
 * graph input is made a constant from the test's data (the suite passes weights as inputs); the
 * outputs must match the suite's with its tolerance (rtol 1e-3, atol 1e-7). Prints per-op
 * passed/failed/unsupported and a closing "N passed, N failed" line; exits 1 on any failure.
 *   usage: conformance_onnx [SUITE_DIR] [-v] */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/graph.h"
#include "io/onnx/onnx_read.h"

typedef struct {
    char op[48];
    int passed, failed, unsupported;
} op_count;

static op_count counts[256];
static int n_counts;

static op_count *count_of(const char *op)
{
    for (int i = 0; i < n_counts; i++)
        if (strcmp(counts[i].op, op) == 0)
            return &counts[i];
    if (n_counts == 256)
        return &counts[255];
    snprintf(counts[n_counts].op, sizeof counts[n_counts].op, "%s", op);
    return &counts[n_counts++];
}

/* Reads a TensorProto file; NULL if missing or bad. */
static Onnx__TensorProto *read_pb(const char *path)
{
    size_t n;
    uint8_t *buf = kiln_onnx_file_bytes(path, &n);
    Onnx__TensorProto *t = buf ? onnx__tensor_proto__unpack(NULL, n, buf) : NULL;
    free(buf);
    if (t && kiln_onnx_check_tensor(t, path, "tensor") != KILN_OK) {
        onnx__tensor_proto__free_unpacked(t, NULL);
        return NULL;
    }
    return t;
}

/* Whether y (n values) matches the suite's output r with its tolerance; the first miss in why. */
static bool close_to(const float *y, const Onnx__TensorProto *r_pb, size_t o, char *why, size_t why_len)
{
    size_t n = (size_t)kiln_onnx_numel(r_pb);
    float *r = malloc(n * sizeof(float) + 4);
    bool ok = r != NULL;
    if (r)
        kiln_onnx_tensor_f32(r_pb, r);
    for (size_t i = 0; ok && i < n; i++)
        if (!(fabsf(y[i] - r[i]) <= 1e-7f + 1e-3f * fabsf(r[i]) || (y[i] != y[i] && r[i] != r[i]))) {
            snprintf(why, why_len, "output %zu [%zu]: %g, expected %g", o, i, y[i], r[i]);
            ok = false;
        }
    free(r);
    return ok;
}

static int folded_count, whole_count;

/* A test whose inputs are all constants now: its outputs evaluated at load time. 0 passed, 1
 * failed, 2 unsupported (why keeps the runtime import's reason). */
static int folded_test(kiln_onnx_model *m, Onnx__TensorProto **outs, size_t n_out, char *why, size_t why_len)
{
    float *y[16];
    size_t count[16];
    if (kiln_onnx_const_outputs(m, y, count, n_out) != KILN_OK) {
        size_t len = strlen(why);   /* both reasons: at run time, and folded */
        snprintf(why + len, why_len - len, "; with every input a constant: %s", kiln_last_error());
        return 2;
    }
    int rc = 0;
    for (size_t o = 0; o < n_out && rc == 0; o++)
        if (!outs[o] || count[o] != (size_t)kiln_onnx_numel(outs[o])) {
            snprintf(why, why_len, "folded output %zu: %zu values, expected the suite's count", o, count[o]);
            rc = 1;
        } else if (!close_to(y[o], outs[o], o, why, why_len)) {
            rc = 1;
        }
    for (size_t o = 0; o < n_out; o++)
        free(y[o]);
    folded_count += rc == 0;
    return rc;
}

/* 0 passed, 1 failed, 2 unsupported (the reason in why). */
static int run_test(const char *dir, char *why, size_t why_len)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    kiln_onnx_model *m = kiln_onnx_read(path);
    if (!m) {
        snprintf(why, why_len, "%s", kiln_last_error());
        return 2;
    }
    Onnx__GraphProto *g = (Onnx__GraphProto *)kiln_onnx_graph(m);
    Onnx__TensorProto *ins[16] = {0}, *outs[16] = {0};
    char *own_name[16] = {0};   /* the data files' tensor names, back in place before freeing */
    bool whole = false;   /* imported with the first input whole (kiln_onnx_import_whole) */
    size_t n_in = g->n_input < 16 ? g->n_input : 16, n_out = g->n_output < 16 ? g->n_output : 16;
    int rc = 2;
    for (size_t i = 0; i < n_in; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%zu.pb", dir, i);
        ins[i] = read_pb(path);
    }
    for (size_t i = 0; i < n_out; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/output_%zu.pb", dir, i);
        outs[i] = read_pb(path);
    }
    /* the graph inputs after the first become initializers (named as the inputs) */
    Onnx__TensorProto **inits = NULL;
    Onnx__ValueInfoProto **keep = NULL;
    size_t old_n_init = g->n_initializer, old_n_input = g->n_input;
    Onnx__TensorProto **old_inits = g->initializer;
    Onnx__ValueInfoProto **old_inputs = g->input;
    kiln_graph_t *kg = NULL;
    if (g->n_input == 0 && outs[0] && g->n_output <= 16) {   /* no inputs: all of it is evaluated at load time */
        snprintf(why, why_len, "a model without inputs");
        rc = folded_test(m, outs, n_out, why, why_len);
        goto done;
    }
    if (!ins[0] || g->n_input > 16 || g->n_output > 16 || !outs[0]) {
        snprintf(why, why_len, "test data missing or unreadable");
        goto done;
    }
    inits = malloc((old_n_init + n_in) * sizeof *inits);
    keep = malloc(sizeof *keep);
    if (old_n_init)
        memcpy(inits, old_inits, old_n_init * sizeof *inits);
    size_t k = old_n_init;
    for (size_t i = 1; i < n_in; i++) {
        if (!ins[i]) {
            snprintf(why, why_len, "input %zu has no data", i);
            goto restore;   /* (names swapped so far go back) */
        }
        own_name[i] = ins[i]->name;
        ins[i]->name = g->input[i]->name;   /* (the model's string: swapped back below) */
        inits[k++] = ins[i];
    }
    keep[0] = g->input[0];
    g->initializer = inits;
    g->n_initializer = k;
    g->input = keep;
    g->n_input = 1;
    kg = kiln_onnx_import(m);
    if (!kg) {   /* the first input taken whole (its first dim not the batch), run at batch 1 */
        char first[512];
        snprintf(first, sizeof first, "%s", kiln_last_error());
        kg = kiln_onnx_import_whole(m, true);
        whole = kg != NULL;
        if (!kg)
            snprintf(why, why_len, "%s", first);
    }
    if (!kg) {   /* every input a constant: the ops evaluated when the model is loaded */
        own_name[0] = ins[0]->name;
        ins[0]->name = old_inputs[0]->name;
        inits[k++] = ins[0];
        g->n_initializer = k;
        g->n_input = 0;
        rc = folded_test(m, outs, n_out, why, why_len);
        goto restore;
    }
    rc = 1;
    int batch = ins[0]->n_dims && !whole ? (int)ins[0]->dims[0] : 1;
    kiln_model_t *km = kiln_model_create(kg, true);
    kiln_session_t *s = km ? kiln_session_create(km, &(kiln_session_options){.max_batch = batch, .threads = 1}) : NULL;
    size_t nx = (size_t)kiln_onnx_numel(ins[0]);
    float *x = malloc(nx * sizeof(float) + 4), *y[16] = {0};
    int in_id;
    kiln_graph_inputs(kg, &in_id);
    if (kg->nodes[in_id].dtype == KILN_DT_I32) {   /* integer indices */
        int64_t *v = malloc(nx * sizeof(int64_t) + 8);
        if (v)
            kiln_onnx_tensor_i64(ins[0], v);
        for (size_t i = 0; v && i < nx; i++)
            ((int32_t *)x)[i] = (int32_t)v[i];
        free(v);
    } else {
        kiln_onnx_tensor_f32(ins[0], x);
    }
    int ids[KILN_MAX_OUTPUTS], n_o = kiln_graph_outputs(kg, ids);
    bool ok = s && n_o == (int)n_out;
    for (size_t o = 0; ok && o < n_out; o++) {
        ok = outs[o] != NULL && kiln_graph_numel(kg, ids[o]) * (size_t)batch == (size_t)kiln_onnx_numel(outs[o]);
        y[o] = malloc((size_t)kiln_onnx_numel(outs[o]) * sizeof(float) + 4);
    }
    if (!ok) {
        snprintf(why, why_len, "outputs differ in number or size from the suite's");
    } else if (kiln_session_run_all(s, (const void *const[]){x}, batch, y) != KILN_OK) {
        snprintf(why, why_len, "run: %s", kiln_last_error());
    } else {
        rc = 0;
        for (size_t o = 0; o < n_out && rc == 0; o++)
            rc = close_to(y[o], outs[o], o, why, why_len) ? 0 : 1;
        whole_count += rc == 0 && whole;
    }
    for (size_t o = 0; o < n_out; o++)
        free(y[o]);
    free(x);
    kiln_session_free(s);
    kiln_model_free(km);
restore:
    g->initializer = old_inits;
    g->n_initializer = old_n_init;
    g->input = old_inputs;
    g->n_input = old_n_input;
    for (size_t i = 0; i < n_in; i++)
        if (ins[i] && own_name[i])
            ins[i]->name = own_name[i];
done:
    kiln_graph_free(kg);
    free(inits);
    free(keep);
    for (size_t i = 0; i < 16; i++) {
        if (ins[i])
            onnx__tensor_proto__free_unpacked(ins[i], NULL);
        if (outs[i])
            onnx__tensor_proto__free_unpacked(outs[i], NULL);
    }
    kiln_onnx_free(m);
    return rc;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 && argv[1][0] != '-' ? argv[1] : "/usr/include/onnx/backend/test/data/node";
    bool verbose = argc > 1 && strcmp(argv[argc - 1], "-v") == 0;
    DIR *d = opendir(root);
    if (!d) {
        fprintf(stderr, "conformance: %s not found (Debian's libonnx-testdata)\n", root);
        return 1;
    }
    char *names[2048];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 2048)
        if (e->d_name[0] != '.')
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    int passed = 0, failed = 0, unsupported = 0;
    for (int i = 0; i < n; i++) {
        char dir[1100], why[512] = "";
        snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
        int rc = run_test(dir, why, sizeof why);
        /* the test's op: its directory name's first word after test_ */
        char op[48];
        snprintf(op, sizeof op, "%s", names[i] + (strncmp(names[i], "test_", 5) ? 0 : 5));
        char *us = strchr(op, '_');
        if (us)
            *us = 0;
        op_count *c = count_of(op);
        if (rc == 0)
            passed++, c->passed++;
        else if (rc == 1)
            failed++, c->failed++;
        else
            unsupported++, c->unsupported++;
        if (rc == 1 || (verbose && rc == 2))
            printf("%s %s: %s\n", rc == 1 ? "FAIL" : "unsupported", names[i], why);
        free(names[i]);
    }
    printf("%-24s %6s %6s %11s\n", "op", "passed", "failed", "unsupported");
    for (int i = 0; i < n_counts; i++)
        if (counts[i].passed || counts[i].failed)
            printf("%-24s %6d %6d %11d\n", counts[i].op, counts[i].passed, counts[i].failed, counts[i].unsupported);
    printf("conformance: %d unsupported (an op, attribute or type the importer refuses by name)\n", unsupported);
    printf("conformance: %d of the passed tests ran with the first input taken whole (its first dim not the batch, "
           "batch 1); %d had every input made a constant and were evaluated when the model was loaded\n", whole_count,
           folded_count);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
