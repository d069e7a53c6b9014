/* Constants and their folding (docs/IR.md, "Constants"): const in the spec (every dtype, rank 0),
 * shape, folding of the arithmetic, comparisons, where, cast, concat, slice, transpose and reshape
 * when a node is added; a Shape -> slice -> concat -> reshape chain run in sessions (optimised and
 * not) and in a training tape; errors naming the node; model files with constants saved and
 * loaded back, and hostile ones refused with the file, tensor, expected and found. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "core/op_table.h"
#include "io/graph_file.h"
#include "io/safetensors.h"
#include "kiln/kiln_train.h"

/* The node named name in g (a failed check and NULL if absent). */
static const kiln_node *node(const kiln_graph_t *g, const char *name)
{
    int id = g ? kiln_graph_find(g, name) : -1;
    CHECK(id >= 0, "no node %s", name);
    return id >= 0 ? &g->nodes[id] : NULL;
}

/* Whether node name is a const of dtype dt holding the n values want (as int64 or float). */
static void expect_const(const kiln_graph_t *g, const char *name, kiln_dtype dt, const double *want, size_t n)
{
    const kiln_node *nd = node(g, name);
    if (!nd)
        return;
    CHECK(nd->op == KILN_OP_CONST && nd->dtype == dt && nd->numel == n && !nd->batched,
          "%s: op %s, dtype %s, %zu values; expected a const %s of %zu", name, kiln_op_name(nd->op),
          kiln_dtype_name(nd->dtype), nd->numel, kiln_dtype_name(dt), n);
    if (nd->op != KILN_OP_CONST || nd->numel != n)
        return;
    for (size_t k = 0; k < n; k++) {
        double got = dt == KILN_DT_F32 ? kiln_node_tensor(g, nd, 0)[k] : (double)kiln_const_ints(nd)[k];
        CHECK(got == want[k], "%s[%zu] = %g, expected %g", name, k, got, want[k]);
    }
}

static void expect_error(const char *spec, const char *want)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "t.kiln");
    CHECK(g == NULL, "spec accepted:\n%s", spec);
    CHECK(g != NULL || strstr(kiln_last_error(), want) != NULL, "error \"%s\" lacks \"%s\"", kiln_last_error(), want);
    kiln_graph_free(g);
}

/* const in every dtype and rank 0, and the spec round trip keeping i64/bool values. */
static void check_const_spec(void)
{
    const char *spec = "x: input 3\nc: const 3 dtype=i64 values=1,64,-1\nz: const dtype=i64 values=-9000000000\n"
                       "b: const 2x1 dtype=bool values=true,0\nf: const 2x2 values=0.5,1,-2,3e3\ny: relu in=x\n"
                       "e: const values=2.5\npz: pad in=e\n";   /* a scalar padded: no pads= in the spec */
    kiln_graph_t *g = kiln_spec_parse(spec, "consts");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    expect_const(g, "c", KILN_DT_I64, (double[]){1, 64, -1}, 3);
    expect_const(g, "z", KILN_DT_I64, (double[]){-9000000000.0}, 1);
    expect_const(g, "b", KILN_DT_BOOL, (double[]){1, 0}, 2);
    expect_const(g, "f", KILN_DT_F32, (double[]){0.5, 1, -2, 3000}, 4);
    CHECK(node(g, "z")->rank == 0 && node(g, "b")->rank == 2, "ranks %d and %d", node(g, "z")->rank,
          node(g, "b")->rank);
    CHECK(kiln_graph_param_count(g) == 0, "constants are not trainable: %zu parameters", kiln_graph_param_count(g));
    char *text = kiln_graph_to_spec(g);
    kiln_graph_t *h = text ? kiln_spec_parse(text, "again") : NULL;
    CHECK(h != NULL, "round trip: %s\n%s", kiln_last_error(), text ? text : "");
    if (h) {
        expect_const(h, "c", KILN_DT_I64, (double[]){1, 64, -1}, 3);
        expect_const(h, "z", KILN_DT_I64, (double[]){-9000000000.0}, 1);
        expect_const(h, "b", KILN_DT_BOOL, (double[]){1, 0}, 2);
        CHECK(node(h, "f")->dtype == KILN_DT_F32 && node(h, "f")->numel == 4, "f32 const shape kept");
    }
    kiln_graph_free(h);
    free(text);
    kiln_graph_free(g);
}

/* Every folding op on constants. */
static void check_folding(void)
{
    const char *spec = "x: input 2 3 4\ns: shape x\n"
                       "a: const 3 dtype=i64 values=7,-7,9\nb: const 1 dtype=i64 values=2\n"
                       "sum: add a b\ndif: sub a b\npro: mul a b\nquo: div a b\n"
                       "eq: equal a b\nlt: less a b\ngt: greater a b\nw: where lt a b\n"
                       "fa: cast a dtype=f32\nba: cast a dtype=bool\nfc: const 2 values=-2.7,2.7\nic: cast fc dtype=i64\n"
                       "fd: div fa fa\nfs: add fc fc\n"
                       "m: const 2x3 dtype=i64 values=1,2,3,4,5,6\nmt: transpose 1,0 in=m\nms: slice in=m axis=1 start=1 "
                       "step=2\nmc: concat m m axis=0\nmr: reshape 3x2 in=m\nsq: mul s s\n";
    kiln_graph_t *g = kiln_spec_parse(spec, "fold");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    expect_const(g, "s", KILN_DT_I64, (double[]){2, 3, 4}, 3);
    expect_const(g, "sum", KILN_DT_I64, (double[]){9, -5, 11}, 3);
    expect_const(g, "dif", KILN_DT_I64, (double[]){5, -9, 7}, 3);
    expect_const(g, "pro", KILN_DT_I64, (double[]){14, -14, 18}, 3);
    expect_const(g, "quo", KILN_DT_I64, (double[]){3, -3, 4}, 3);   /* truncation toward zero */
    expect_const(g, "eq", KILN_DT_BOOL, (double[]){0, 0, 0}, 3);
    expect_const(g, "lt", KILN_DT_BOOL, (double[]){0, 1, 0}, 3);
    expect_const(g, "gt", KILN_DT_BOOL, (double[]){1, 0, 1}, 3);
    expect_const(g, "w", KILN_DT_I64, (double[]){2, -7, 2}, 3);
    expect_const(g, "fa", KILN_DT_F32, (double[]){7, -7, 9}, 3);
    expect_const(g, "ba", KILN_DT_BOOL, (double[]){1, 1, 1}, 3);
    expect_const(g, "ic", KILN_DT_I64, (double[]){-2, 2}, 2);
    expect_const(g, "fd", KILN_DT_F32, (double[]){1, 1, 1}, 3);
    expect_const(g, "fs", KILN_DT_F32, (double[]){-5.4f, 5.4f}, 2);
    expect_const(g, "mt", KILN_DT_I64, (double[]){1, 4, 2, 5, 3, 6}, 6);
    expect_const(g, "ms", KILN_DT_I64, (double[]){2, 5}, 2);
    expect_const(g, "mc", KILN_DT_I64, (double[]){1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6}, 12);
    expect_const(g, "mr", KILN_DT_I64, (double[]){1, 2, 3, 4, 5, 6}, 6);
    expect_const(g, "sq", KILN_DT_I64, (double[]){4, 9, 16}, 3);
    CHECK(node(g, "mt")->dims[0] == 3 && node(g, "mr")->dims[1] == 2 && node(g, "mc")->dims[0] == 4,
          "folded shapes");
    kiln_graph_free(g);
}

/* The shape-arithmetic chain: x (2, 3, 4) reshaped to (dim0, dim1 * dim2) = (2, 12) by a target
 * computed from its own shape; then r * c * w (c an f32 const, w a param). */
static const char chain[] =
    "x: input 2 3 4\ns: shape x\nhead: slice in=s axis=0 start=0 end=1\nd1: slice in=s axis=0 start=1 end=2\n"
    "d2: slice in=s axis=0 start=2\nrest: mul d1 d2\nt: concat head rest axis=0\nr: reshape in=x,t\n"
    "c: const 12 values=1,2,3,4,5,6,7,8,9,10,11,12\nrc: mul r c\nw: param 2x12 std=0.5\ny: mul rc w\n";

/* Expected y for x[k] = k + 1 + 100 b. */
static float chain_y(const kiln_graph_t *g, int b, int k)
{
    const float *w = kiln_graph_params((kiln_graph_t *)g);
    return (float)(k + 1 + 100 * b) * (float)(k % 12 + 1) * w[k];
}

static void check_chain(void)
{
    kiln_graph_t *g = kiln_spec_parse(chain, "chain");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    expect_const(g, "t", KILN_DT_I64, (double[]){2, 12}, 2);
    const kiln_node *r = node(g, "r");
    CHECK(r->op == KILN_OP_RESHAPE && r->n_inputs == 1 && r->rank == 2 && r->dims[0] == 2 && r->dims[1] == 12,
          "r: a static reshape to 2x12, found %s of %d inputs, %dx%d", kiln_op_name(r->op), r->n_inputs, r->dims[0],
          r->dims[1]);
    kiln_graph_init_params(g, 5);
    float x[2 * 24], y[2 * 24];
    for (int k = 0; k < 48; k++)
        x[k] = (float)(k % 24 + 1 + 100 * (k / 24));
    for (int opt = 0; opt < 2; opt++) {   /* optimised (nodes re-added) and as trained (spec round trip) */
        kiln_model_t *m = kiln_model_create(g, opt == 1);
        kiln_session_t *s = m ? kiln_session_create(m, &(kiln_session_options){.max_batch = 2}) : NULL;
        CHECK(s != NULL, "session: %s", kiln_last_error());
        if (s) {
            memset(y, 0, sizeof y);
            CHECK(kiln_session_run(s, x, 2, y) == KILN_OK, "%s", kiln_last_error());
            for (int k = 0; k < 48; k++)
                CHECK(check_close(y[k], chain_y(g, k / 24, k % 24), 1e-6), "session (optimize %d) y[%d] = %g, "
                      "expected %g", opt, k, y[k], chain_y(g, k / 24, k % 24));
        }
        kiln_session_free(s);
        kiln_model_free(m);
    }
    kiln_tape_t *t = kiln_tape_create(g, 2, false, 1);
    CHECK(t != NULL, "tape: %s", kiln_last_error());
    if (!t) {
        kiln_graph_free(g);
        return;
    }
    const float *out = kiln_tape_forward(t, x, 2, true);
    CHECK(out != NULL, "%s", kiln_last_error());
    for (int k = 0; out && k < 48; k++)
        CHECK(check_close(out[k], chain_y(g, k / 24, k % 24), 1e-6), "tape y[%d] = %g", k, out[k]);
    float dy[48];
    for (int k = 0; k < 48; k++)
        dy[k] = 1.0f;
    kiln_tape_backward(t, dy);
    const float *dw = kiln_tape_param_grads(t);   /* dL/dw = sum over the batch of r * c */
    for (int k = 0; k < 24; k++) {
        float want = (float)(k + 1) * (float)(k % 12 + 1) + (float)(k + 101) * (float)(k % 12 + 1);
        CHECK(check_close(dw[k], want, 1e-6), "dw[%d] = %g, expected %g", k, dw[k], want);
    }
    kiln_tape_free(t);
    kiln_graph_free(g);
}

static void check_errors(void)
{
    expect_error("input 2\nc: const 3 dtype=i64 values=1,2\n", "c: const: values= has 2 values, its shape holds 3");
    expect_error("input 2\nc: const dtype=i64 values=1,2\n", "c: const: values= has 2 values, its shape holds 1");
    expect_error("input 2\nc: const 2 dtype=i64\n", "c: const: an I64 constant needs values=");
    expect_error("input 2\nc: const 2 dtype=bool values=1,2\n", "value 1, '2', is not 0, 1, true or false");
    expect_error("input 2\nc: const 2 dtype=i64 values=1,x\n", "value 1, 'x', is not an integer");
    expect_error("input 2\nc: const 2 dtype=i32 values=1,2\n", "bad value 'i32' for dtype, expected f32, i64 or bool");
    expect_error("input 2\nc: const 2 values=1,inf\n", "c: const: value 1 is inf, expected a finite number");
    expect_error("x: input 3\nc: const 3 dtype=i64 values=1,2,3\ny: add x c\n",
                 "y: add: input c is I64 and input x is computed at run time: i64/bool tensors exist only as constants");
    expect_error("x: input 3\nc: const 3 dtype=i64 values=1,2,3\ny: relu in=c\n",
                 "y: relu: input c is I64: i64/bool tensors exist only as constants");
    expect_error("x: input 3\nc: const 3 dtype=i64 values=1,2,3\nf: const 3\ny: add c f\n",
                 "y: add: inputs c and f are I64 and F32: cast one first");
    expect_error("x: input 3\nc: const 3 dtype=bool values=1,0,1\ny: add c c\n", "y: add: arithmetic on BOOL input c");
    expect_error("x: input 3\nc: const 3 dtype=i64 values=1,2,3\ny: where c c c\n",
                 "y: where: condition c is I64, expected BOOL");
    expect_error("x: input 3\nc: const 3 values=1,2,3\ny: less x c\n",
                 "y: less: input x is computed at run time; less runs only on constants");
    expect_error("x: input 3\ny: cast x dtype=i64\n", "y: cast: input x is computed at run time");
    expect_error("x: input 3\nc: const 3 dtype=i64 values=1,2,0\nz: const 3 dtype=i64 values=1,0,3\nq: div c z\n",
                 "q: div: integer division by zero at element 1");
    expect_error("x: input 3\nc: const 1 dtype=i64 values=3\ny: cast in=c\n", "cast needs dtype=");
    expect_error("x: input 2 6\nf: const 2 values=3,4\nr: reshape in=x,f\n",
                 "r: reshape: target shape f is a const F32 of shape 2, expected an i64 constant");
    expect_error("x: input 2 6\nt: const 3 dtype=i64 values=2,2,0\nr: reshape in=x,t\n",
                 "r: reshape: target entry 2 is 0 (copy the input's dim) but input x is 2x6");
    expect_error("x: input 2 6\nt: const 2 dtype=i64 values=5,-1\nr: reshape in=x,t\n",
                 "r: reshape: cannot reshape 2x6 to 5x-1");
    expect_error("x: input 2 6\nt: const 2 dtype=i64 values=-2,6\nr: reshape in=x,t\n", "target entry 0 is -2");
    expect_error("x: input 2\nz: const values=1\ns: shape z\n", "s: shape: input z is a scalar");
    expect_error("x: input 2\nc: const 100000x100000 dtype=i64 values=1\n", "values= has 1 values, its shape holds");
}

/* ONNX's reshape rules from a const target: 0 copies, -1 infers. */
static void check_reshape_rules(void)
{
    kiln_graph_t *g = kiln_spec_parse("x: input 2 3 4\nt: const 3 dtype=i64 values=0,-1,2\nr: reshape in=x,t\n"
                                      "u: const 2 dtype=i64 values=3,8\nq: reshape in=x,u\n", "rules");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    const kiln_node *r = node(g, "r"), *q = node(g, "q");
    CHECK(r->rank == 3 && r->dims[0] == 2 && r->dims[1] == 6 && r->dims[2] == 2 && r->batched,
          "0,-1,2 of 2x3x4: %dx%dx%d", r->dims[0], r->dims[1], r->dims[2]);
    CHECK(q->rank == 2 && q->dims[0] == 3 && q->dims[1] == 8, "3,8 of 2x3x4: %dx%d", q->dims[0], q->dims[1]);
    char *text = kiln_graph_to_spec(g);
    CHECK(text && strstr(text, "r: reshape 2x6x2 in=x\n") != NULL, "the spec says the static reshape:\n%s", text);
    free(text);
    kiln_graph_free(g);
}

/* A temporary file path under the build directory. */
static void temp_path(char *buf, size_t n, const char *tag)
{
    const char *dir = getenv("KILN_BINARY_DIR");
    snprintf(buf, n, "%s/test_consts_%s_%d.safetensors", dir ? dir : ".", tag, (int)getpid());
}

/* Writes g's spec with tensors ts as a model file. */
static void write_file(const char *path, const char *spec, const kiln_st_tensor *ts, int n)
{
    const char *meta[] = {"kiln.format", "1", "kiln.spec", spec, NULL};
    CHECK(kiln_st_write(path, ts, n, meta) == KILN_OK, "%s", kiln_last_error());
}

static void expect_load_error(const char *path, const char *want)
{
    kiln_graph_t *g = kiln_graph_load(path);
    CHECK(g == NULL, "%s loaded", path);
    CHECK(g != NULL || (strstr(kiln_last_error(), want) && strstr(kiln_last_error(), path)),
          "error \"%s\" lacks the file or \"%s\"", kiln_last_error(), want);
    kiln_graph_free(g);
}

static void check_files(void)
{
    kiln_graph_t *g = kiln_spec_parse(chain, "chain");
    if (!g)
        return;
    kiln_graph_init_params(g, 7);
    char path[512], bad[512];
    temp_path(path, sizeof path, "model");
    temp_path(bad, sizeof bad, "bad");
    CHECK(kiln_graph_save(g, path, NULL) == KILN_OK, "%s", kiln_last_error());
    kiln_graph_t *h = kiln_graph_load(path);
    CHECK(h != NULL, "%s", kiln_last_error());
    if (h) {
        expect_const(h, "c", KILN_DT_F32, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12);
        expect_const(h, "t", KILN_DT_I64, (double[]){2, 12}, 2);
        CHECK(memcmp(kiln_graph_params(h), kiln_graph_params(g), 24 * sizeof(float)) == 0, "params kept");
    }
    kiln_model_t *m = kiln_model_load(path);   /* and through the runtime's loader */
    CHECK(m != NULL, "%s", kiln_last_error());
    kiln_session_t *s = m ? kiln_session_create(m, NULL) : NULL;
    float x[24], y[24];
    for (int k = 0; k < 24; k++)
        x[k] = (float)(k + 1);
    if (s) {
        CHECK(kiln_session_run(s, x, 1, y) == KILN_OK, "%s", kiln_last_error());
        for (int k = 0; k < 24; k++)
            CHECK(check_close(y[k], chain_y(g, 0, k), 1e-6), "loaded model y[%d] = %g", k, y[k]);
    }
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_graph_free(h);

    /* hostile files: the f32 constant's tensor of the wrong dtype, truncated, or absent; an i64
     * constant's values in the spec that do not fill its shape */
    char *spec = kiln_graph_to_spec(g);
    kiln_st_tensor ts[2] = {{.name = "w.weight", .dtype = KILN_DT_F32, .ndim = 2, .dims = {2, 12},
                             .data = kiln_graph_params(g), .nbytes = 24 * sizeof(float)}};
    int64_t wrong[12] = {0};
    ts[1] = (kiln_st_tensor){.name = "c.value", .dtype = KILN_DT_I64, .ndim = 1, .dims = {12}, .data = wrong,
                             .nbytes = sizeof wrong};
    write_file(bad, spec, ts, 2);
    expect_load_error(bad, "tensor \"c.value\": expected F32 [12], found I64 [12]");
    float part[5] = {0};
    ts[1] = (kiln_st_tensor){.name = "c.value", .dtype = KILN_DT_F32, .ndim = 1, .dims = {5}, .data = part,
                             .nbytes = sizeof part};
    write_file(bad, spec, ts, 2);
    expect_load_error(bad, "tensor \"c.value\": expected F32 [12], found F32 [5]");
    write_file(bad, spec, ts, 1);
    expect_load_error(bad, "tensor \"c.value\": expected F32 [12], found no such tensor");
    char *cut = spec ? strstr(spec, "values=2,12") : NULL;
    CHECK(cut != NULL, "the spec holds t's values:\n%s", spec ? spec : "");
    if (cut) {
        memcpy(cut, "values=2   ", 11);
        write_file(bad, spec, ts, 2);
        expect_load_error(bad, "t: const: values= has 1 values, its shape holds 2");
    }
    free(spec);
    unlink(path);
    unlink(bad);
    kiln_graph_free(g);
}

/* The C API: a const from caller's values (copied), and its a.values valid as the graph grows. */
static void check_api(void)
{
    kiln_graph_t *g = kiln_graph_create();
    int64_t v[3] = {4, 5, 6};
    kiln_attrs a = {.rank = 1, .shape = {3}, .dtype = KILN_DT_I64, .values = v};
    int id = kiln_graph_add(g, KILN_OP_CONST, NULL, 0, &a, "k");
    CHECK(id == 0, "%s", kiln_last_error());
    v[0] = 99;   /* the graph holds its own copy */
    for (int i = 0; i < 40; i++) {   /* many more constants: the first one's values stay put */
        char nm[16];
        snprintf(nm, sizeof nm, "k%d", i);
        kiln_graph_add(g, KILN_OP_CONST, NULL, 0, &a, nm);
    }
    expect_const(g, "k", KILN_DT_I64, (double[]){4, 5, 6}, 3);
    expect_const(g, "k39", KILN_DT_I64, (double[]){99, 5, 6}, 3);
    kiln_attrs nov = {.rank = 1, .shape = {2}, .dtype = KILN_DT_BOOL};
    CHECK(kiln_graph_add(g, KILN_OP_CONST, NULL, 0, &nov, "nv") < 0 && strstr(kiln_last_error(), "needs its values"),
          "a bool const without values: %s", kiln_last_error());
    kiln_graph_free(g);
}

int main(void)
{
    check_const_spec();
    check_folding();
    check_chain();
    check_reshape_rules();
    check_errors();
    check_files();
    check_api();
    return check_report();
}
