/* The ONNX reader: a model built here reads back with its values; each kind of hostile file (bad
 * sizes, huge dims, undefined inputs, cycles, unknown types, wrong opsets, truncation, random
 * byte flips) is refused with an error naming the file and the field, never a crash; the ONNX
 * backend suite's node models (Debian's libonnx-testdata, when installed) read. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/rng.h"
#include "io/onnx/onnx_read.h"

/* The parts of a small model: y = MatMul(x, w) with x (N, 3) and w (3, 4) an initializer. */
typedef struct {
    Onnx__ModelProto model;
    Onnx__OperatorSetIdProto opset, *opsets[1];
    Onnx__GraphProto graph;
    Onnx__TensorProto w, *inits[1];
    float w_data[12];
    Onnx__ValueInfoProto x, y, *ins[1], *outs[1];
    Onnx__NodeProto nodes[2], *node_ptrs[2];
    char *node_in[2][2], *node_out[2][1];
    int64_t w_dims[2];
} small_model;

static void small_init(small_model *s)
{
    memset(s, 0, sizeof *s);
    onnx__model_proto__init(&s->model);
    onnx__operator_set_id_proto__init(&s->opset);
    onnx__graph_proto__init(&s->graph);
    onnx__tensor_proto__init(&s->w);
    onnx__value_info_proto__init(&s->x);
    onnx__value_info_proto__init(&s->y);
    s->model.has_ir_version = 1;
    s->model.ir_version = 8;
    s->opset.domain = "";
    s->opset.has_version = 1;
    s->opset.version = 13;
    s->opsets[0] = &s->opset;
    s->model.n_opset_import = 1;
    s->model.opset_import = s->opsets;
    s->model.graph = &s->graph;
    for (int i = 0; i < 12; i++)
        s->w_data[i] = 0.5f * (float)i - 1.0f;
    s->w.name = "w";
    s->w.has_data_type = 1;
    s->w.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    s->w_dims[0] = 3;
    s->w_dims[1] = 4;
    s->w.n_dims = 2;
    s->w.dims = s->w_dims;
    s->w.has_raw_data = 1;
    s->w.raw_data.len = sizeof s->w_data;
    s->w.raw_data.data = (uint8_t *)s->w_data;
    s->inits[0] = &s->w;
    s->graph.n_initializer = 1;
    s->graph.initializer = s->inits;
    s->x.name = "x";
    s->y.name = "y";
    s->ins[0] = &s->x;
    s->outs[0] = &s->y;
    s->graph.n_input = 1;
    s->graph.input = s->ins;
    s->graph.n_output = 1;
    s->graph.output = s->outs;
    onnx__node_proto__init(&s->nodes[0]);
    s->nodes[0].op_type = "MatMul";
    s->nodes[0].name = "mm";
    s->node_in[0][0] = "x";
    s->node_in[0][1] = "w";
    s->node_out[0][0] = "y";
    s->nodes[0].n_input = 2;
    s->nodes[0].input = s->node_in[0];
    s->nodes[0].n_output = 1;
    s->nodes[0].output = s->node_out[0];
    s->node_ptrs[0] = &s->nodes[0];
    s->graph.n_node = 1;
    s->graph.node = s->node_ptrs;
}

/* Packs s; the caller frees the bytes. */
static uint8_t *small_pack(const small_model *s, size_t *len)
{
    *len = onnx__model_proto__get_packed_size(&s->model);
    uint8_t *buf = malloc(*len ? *len : 1);
    onnx__model_proto__pack(&s->model, buf);
    return buf;
}

/* Reads the packed s and expects an error containing want (NULL: expects success). */
static void expect(const small_model *s, const char *want, const char *label)
{
    size_t len;
    uint8_t *buf = small_pack(s, &len);
    kiln_onnx_model *m = kiln_onnx_read_buffer(buf, len, "hostile.onnx");
    if (!want) {
        CHECK(m != NULL, "%s: %s", label, kiln_last_error());
    } else {
        CHECK(m == NULL, "%s: read without error", label);
        CHECK(m || strstr(kiln_last_error(), want) != NULL, "%s: error \"%s\" lacks \"%s\"", label, kiln_last_error(), want);
        CHECK(m || strstr(kiln_last_error(), "hostile.onnx") != NULL, "%s: error \"%s\" does not name the file", label,
              kiln_last_error());
    }
    kiln_onnx_free(m);
    free(buf);
}

static void test_small_model(void)
{
    small_model s;
    small_init(&s);
    size_t len;
    uint8_t *buf = small_pack(&s, &len);
    kiln_onnx_model *m = kiln_onnx_read_buffer(buf, len, "small.onnx");
    CHECK(m != NULL, "%s", kiln_last_error());
    if (m) {
        const Onnx__GraphProto *g = kiln_onnx_graph(m);
        CHECK(kiln_onnx_opset(m) == 13 && g->n_node == 1 && strcmp(g->node[0]->op_type, "MatMul") == 0, "graph");
        float w[12];
        kiln_onnx_tensor_f32(g->initializer[0], w);
        CHECK(memcmp(w, s.w_data, sizeof w) == 0, "initializer values");
        int64_t wi[12];
        kiln_onnx_tensor_i64(g->initializer[0], wi);
        CHECK(wi[0] == -1 && wi[11] == 4, "as int64: %lld %lld", (long long)wi[0], (long long)wi[11]);
    }
    kiln_onnx_free(m);
    /* the same values as float_data instead of raw_data */
    s.w.has_raw_data = 0;
    s.w.n_float_data = 12;
    s.w.float_data = s.w_data;
    expect(&s, NULL, "float_data");
    s.w.n_float_data = 11;
    expect(&s, "expected 12 values", "float_data short");
    free(buf);
}

static void test_hostile(void)
{
    small_model s;
    small_init(&s);
    s.w.raw_data.len = 47;
    expect(&s, "raw_data: expected 48 bytes", "raw_data length");
    small_init(&s);
    s.w_dims[0] = -1;
    expect(&s, "dims[0]: expected 0..", "negative dim");
    small_init(&s);
    s.w_dims[0] = s.w_dims[1] = 1 << 20;
    expect(&s, "elements", "huge dims");
    small_init(&s);
    s.w.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__STRING;
    expect(&s, "data_type: expected FLOAT", "string tensor");
    small_init(&s);
    s.w.has_data_location = 1;
    s.w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    expect(&s, "external", "external data");
    small_init(&s);
    s.node_in[0][1] = "z";
    expect(&s, "input 1 \"z\"", "undefined input");
    small_init(&s);   /* two nodes reading each other's outputs */
    onnx__node_proto__init(&s.nodes[1]);
    s.nodes[1].op_type = "Relu";
    s.node_in[1][0] = "y";
    s.node_out[1][0] = "r";
    s.nodes[1].n_input = 1;
    s.nodes[1].input = s.node_in[1];
    s.nodes[1].n_output = 1;
    s.nodes[1].output = s.node_out[1];
    s.node_in[0][1] = "r";
    s.node_ptrs[1] = &s.nodes[1];
    s.graph.n_node = 2;
    expect(&s, "cycle", "cycle");
    small_init(&s);
    s.node_out[0][0] = "w";
    expect(&s, "already defined", "output redefines an initializer");
    small_init(&s);
    s.y.name = "nothing";
    expect(&s, "output \"nothing\"", "undefined graph output");
    small_init(&s);
    s.opset.version = 18;
    expect(&s, "opset_import: expected the default domain at opset 1..17, found 18", "new opset");
    small_init(&s);
    s.opset.version = 0;
    expect(&s, "opset_import: expected the default domain at opset 1..17, found 0", "opset 0");
    small_init(&s);
    s.model.n_opset_import = 0;
    expect(&s, "found none", "no opset");
    small_init(&s);
    s.model.has_ir_version = 0;
    expect(&s, "ir_version", "no ir_version");
    small_init(&s);
    s.nodes[0].domain = "com.example";
    expect(&s, "domain", "custom domain");
    small_init(&s);
    s.graph.n_output = 0;
    expect(&s, "output: expected at least one", "no outputs");

    /* truncations and random byte flips of a valid file: an error or a model, never a crash
     * (the sanitizer build checks the reads) */
    small_init(&s);
    size_t len;
    uint8_t *buf = small_pack(&s, &len), *mut = malloc(len);
    int refused = 0;
    for (size_t cut = 0; cut < len; cut++) {
        kiln_onnx_model *m = kiln_onnx_read_buffer(buf, cut, "cut.onnx");
        refused += m == NULL;
        kiln_onnx_free(m);
    }
    CHECK(refused > 0, "no truncation of %zu bytes was refused", len);
    kiln_rng rng;
    kiln_rng_seed(&rng, 7);
    for (int rep = 0; rep < 3000; rep++) {
        memcpy(mut, buf, len);
        for (int k = 0; k < 1 + rep % 4; k++)
            mut[kiln_rng_below(&rng, (uint32_t)len)] ^= (uint8_t)(1 + kiln_rng_below(&rng, 255));
        kiln_onnx_model *m = kiln_onnx_read_buffer(mut, len, "flip.onnx");
        if (m) {   /* what reads must be usable: every initializer's values */
            const Onnx__GraphProto *g = kiln_onnx_graph(m);
            for (size_t i = 0; i < g->n_initializer; i++) {
                float *v = malloc((size_t)kiln_onnx_numel(g->initializer[i]) * sizeof(float) + 1);
                kiln_onnx_tensor_f32(g->initializer[i], v);
                free(v);
            }
        }
        kiln_onnx_free(m);
    }
    free(buf);
    free(mut);
}

/* Every node model of the ONNX backend suite: most read; those refused are refused for a reason
 * this reader names (an opset past 17, subgraphs, other domains, non-tensor values). */
static void test_suite(void)
{
    const char *root = "/usr/include/onnx/backend/test/data/node";
    DIR *d = opendir(root);
    if (!d) {
        printf("onnx suite: %s not installed (libonnx-testdata); skipped\n", root);
        return;
    }
    int ok = 0, refused = 0, unexplained = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        kiln_onnx_model *m = kiln_onnx_read(path);
        if (m) {
            ok++;
        } else {
            refused++;
            const char *err = kiln_last_error();
            if (!strstr(err, "opset") && !strstr(err, "subgraphs") && !strstr(err, "domain") &&
                !strstr(err, "type:") && !strstr(err, "data_type") && !strstr(err, "elem_type") &&
                !strstr(err, "functions")) {
                if (unexplained++ < 5)
                    fprintf(stderr, "suite: %s\n", err);
            }
        }
        kiln_onnx_free(m);
    }
    closedir(d);
    printf("onnx suite: %d models read, %d refused (%d for another reason)\n", ok, refused, unexplained);
    CHECK(ok > 700, "only %d suite models read", ok);
    CHECK(unexplained == 0, "%d suite models refused for an unexpected reason", unexplained);
}

int main(void)
{
    test_small_model();
    test_hostile();
    test_suite();
    return check_report();
}
