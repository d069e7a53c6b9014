/* kiln run with --input NAME=FILE.npy: runs a model of any inputs and outputs on .npy tensors
 * (each (batch, dims...) or one example's dims) and writes the outputs named by --output
 * NAME=FILE.npy as (batch, dims...) float32 arrays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "core/graph.h"
#include "core/op_table.h"
#include "kiln/tensor_io.h"

/* The part of "NAME=FILE" after '=', with NAME into name (or the whole as the file, name ""). */
static const char *split_named(const char *s, char *name, size_t n)
{
    const char *eq = strchr(s, '=');
    if (!eq || (size_t)(eq - s) >= n) {
        name[0] = 0;
        return s;
    }
    memcpy(name, s, (size_t)(eq - s));
    name[eq - s] = 0;
    return eq + 1;
}

/* Reads path as node in's values: f32 for F32 inputs, i32/i64 (range-checked) for I32 ones. */
static int read_tensor(const char *path, const kiln_node *in, int *batch, void **data)
{
    unsigned accept = in->dtype == KILN_DT_I32 ? (1u << KILN_DT_I32) | (1u << KILN_DT_I64) : 1u << KILN_DT_F32;
    kiln_npy_array arr = {0};
    if (kiln_npy_read_array(path, accept, &arr) != KILN_OK) {
        fprintf(stderr, "kiln run: %s\n", kiln_last_error());
        return 1;
    }
    /* (batch, dims...) or dims alone */
    bool with_batch = arr.ndim == in->rank + 1, ok = with_batch || arr.ndim == in->rank;
    for (int i = 0; ok && i < in->rank; i++)
        ok = arr.dims[i + (with_batch ? 1 : 0)] == in->dims[i];
    if (!ok || arr.numel == 0) {
        char want[64];
        fprintf(stderr, "kiln run: %s: shape of %d dims does not fit input %s (%s per example, batch first)\n", path,
                arr.ndim, in->name, kiln_shape_str(want, sizeof want, in->rank, in->dims));
        kiln_npy_array_free(&arr);
        return 1;
    }
    *batch = with_batch ? (int)arr.dims[0] : 1;
    if (arr.dtype == KILN_DT_I64) {   /* to int32, every value in range */
        int32_t *v = malloc(arr.numel * sizeof *v);
        const int64_t *s = arr.data;
        for (size_t i = 0; v && i < arr.numel; i++) {
            if (s[i] < INT32_MIN || s[i] > INT32_MAX) {
                fprintf(stderr, "kiln run: %s: index %lld at %zu does not fit int32\n", path, (long long)s[i], i);
                free(v);
                kiln_npy_array_free(&arr);
                return 1;
            }
            v[i] = (int32_t)s[i];
        }
        kiln_npy_array_free(&arr);
        *data = v;
        return v ? 0 : 1;
    }
    *data = arr.data;   /* taken over */
    return 0;
}

int cli_run_tensors(const kiln_model_t *m, const char **inputs, int n_in, const char **outputs, int n_out, int threads,
                    bool json)
{
    const kiln_graph_t *g = kiln_model_graph(m);
    int ids[KILN_MAX_INPUTS * 4], outs[KILN_MAX_OUTPUTS], n_ids = kiln_graph_inputs(g, ids);
    int n_outs = kiln_graph_outputs(g, outs), batch = -1, rc = 1;
    void *x[KILN_MAX_INPUTS * 4] = {0};
    float *y[KILN_MAX_OUTPUTS] = {0};
    const char *out_path[KILN_MAX_OUTPUTS] = {0};
    kiln_session_t *s = NULL;
    if (n_ids > KILN_MAX_INPUTS * 4) {
        fprintf(stderr, "kiln run: the model has %d inputs, at most %d here\n", n_ids, KILN_MAX_INPUTS * 4);
        return 1;
    }
    for (int k = 0; k < n_ids; k++) {   /* each graph input from the --input naming it */
        const kiln_node *in = &g->nodes[ids[k]];
        const char *path = NULL;
        char name[KILN_NAME_LEN];
        for (int j = 0; j < n_in; j++) {
            const char *p = split_named(inputs[j], name, sizeof name);
            if (strcmp(name, in->name) == 0 || (!name[0] && n_ids == 1 && n_in == 1))
                path = p;
        }
        if (!path) {
            fprintf(stderr, "kiln run: no --input %s=FILE.npy for the model's input %s\n", in->name, in->name);
            goto done;
        }
        int b;
        if (read_tensor(path, in, &b, &x[k]))
            goto done;
        if (batch >= 0 && b != batch) {
            fprintf(stderr, "kiln run: %s holds %d examples, the inputs before it %d\n", path, b, batch);
            goto done;
        }
        batch = b;
    }
    for (int j = 0; j < n_out; j++) {   /* each --output to a graph output */
        char name[KILN_NAME_LEN];
        const char *p = split_named(outputs[j], name, sizeof name);
        int hit = -1;
        for (int k = 0; k < n_outs; k++)
            if (strcmp(name, g->nodes[outs[k]].name) == 0 || (!name[0] && n_outs == 1))
                hit = k;
        if (hit < 0) {
            fprintf(stderr, "kiln run: --output %s names no output of the model (", outputs[j]);
            for (int k = 0; k < n_outs; k++)
                fprintf(stderr, "%s%s", k ? ", " : "", g->nodes[outs[k]].name);
            fprintf(stderr, ")\n");
            goto done;
        }
        out_path[hit] = p;
    }
    s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = threads});
    for (int k = 0; s && k < n_outs; k++) {
        const kiln_node *o = &g->nodes[outs[k]];
        if (!(y[k] = malloc(o->numel * (o->batched ? (size_t)batch : 1) * sizeof(float))))
            goto done;
    }
    if (!s || kiln_session_run_all(s, (const void *const *)x, batch, y) != KILN_OK) {
        fprintf(stderr, "kiln run: %s\n", kiln_last_error());
        goto done;
    }
    if (json)
        printf("{\"command\":\"run\",\"examples\":%d,\"outputs\":[", batch);
    for (int k = 0; k < n_outs; k++) {
        const kiln_node *o = &g->nodes[outs[k]];
        int64_t dims[KILN_MAX_RANK + 1];
        int r = 0;
        if (o->batched)
            dims[r++] = batch;
        for (int i = 0; i < o->rank; i++)
            dims[r++] = o->dims[i];
        char shape[80];
        kiln_shape_str(shape, sizeof shape, o->rank, o->dims);
        if (out_path[k] && kiln_npy_write(out_path[k], y[k], r, dims) != KILN_OK) {
            fprintf(stderr, "kiln run: %s\n", kiln_last_error());
            goto done;
        }
        if (json) {
            printf("%s{\"name\":", k ? "," : "");
            cli_json_str(o->name);
            printf(",\"shape\":\"%s\",\"file\":", shape);
            if (out_path[k])
                cli_json_str(out_path[k]);
            else
                printf("null");
            printf("}");
        } else {
            printf("output %s: %d x %s%s%s\n", o->name, o->batched ? batch : 1, shape, out_path[k] ? " -> " : "",
                   out_path[k] ? out_path[k] : "");
        }
    }
    if (json)
        printf("]}\n");
    rc = 0;
done:
    kiln_session_free(s);
    for (int k = 0; k < n_ids; k++)
        free(x[k]);
    for (int k = 0; k < n_outs; k++)
        free(y[k]);
    return rc;
}
