/* libFuzzer target for the ONNX reader and importer: every input either reads (then every
 * initializer's and attribute tensor's values are read as floats and as int64, and the importer
 * runs on it) or fails with a message naming the file; anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/onnx/onnx_read.h"

static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz property failed: %s (last error: '%s')\n", what, kiln_last_error());
    abort();
}

/* Reads every value of a checked tensor both ways. */
static double touch(const Onnx__TensorProto *t)
{
    size_t n = (size_t)kiln_onnx_numel(t);
    float *f = malloc(n * sizeof(float) + 1);
    int64_t *i = malloc(n * sizeof(int64_t) + 1);
    double s = 0;
    if (!f || !i)
        fuzz_fail("out of memory for a checked tensor");
    kiln_onnx_tensor_f32(t, f);
    kiln_onnx_tensor_i64(t, i);
    for (size_t k = 0; k < n; k++)
        s += (double)f[k] + (double)i[k];
    free(f);
    free(i);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_onnx_model *m = kiln_onnx_read_buffer(data, size, "fuzz.onnx");
    if (!m) {
        if (!strstr(kiln_last_error(), "fuzz.onnx"))
            fuzz_fail("an error that does not name the file");
        return 0;
    }
    const Onnx__GraphProto *g = kiln_onnx_graph(m);
    volatile double sink = 0;
    for (size_t i = 0; i < g->n_initializer; i++)
        sink += touch(g->initializer[i]);
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *nd = g->node[i];
        sink += (double)strlen(nd->op_type) + (double)nd->n_input;
        for (size_t j = 0; j < nd->n_input; j++)
            sink += (double)strlen(nd->input[j] ? nd->input[j] : "");
        for (size_t a = 0; a < nd->n_attribute; a++) {
            const Onnx__AttributeProto *at = nd->attribute[a];
            if (at->t)
                sink += touch(at->t);
            for (size_t k = 0; k < at->n_tensors; k++)
                sink += touch(at->tensors[k]);
            for (size_t k = 0; k < at->n_ints; k++)
                sink += (double)at->ints[k];
        }
    }
    (void)sink;
    for (int whole = 0; whole < 2; whole++) {   /* the importer on whatever the reader accepts, both ways */
        kiln_graph_t *kg = kiln_onnx_import_whole(m, whole);
        if (!kg && !strstr(kiln_last_error(), "fuzz.onnx"))
            fuzz_fail("an import error that does not name the file");
        kiln_graph_free(kg);
    }
    kiln_onnx_free(m);
    return 0;
}
