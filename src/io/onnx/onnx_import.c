/* ONNX import (docs/ONNX.md): a checked ONNX graph becomes an ordinary Kiln graph with its weights.
 * Values are runtime tensors (Kiln nodes; the first ONNX dim of a graph input is the batch) or
 * constants held here until an op needs them (weights are copied into the op's parameters; shape
 * arithmetic on i64 constants is evaluated here). An op or attribute outside what is converted is
 * refused by name, never approximated. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "io/onnx/name_map.h"
#include "io/onnx/onnx_read.h"

/* The batch entry of a shape taken from a batched tensor (`Shape`): it may only reach the first
 * entry of a `Reshape` target. */
#define BATCH_DIM INT64_MIN

/* One ONNX value. */
typedef struct {
    const char *name;
    int node;            /* its Kiln node (a runtime tensor), or -1 for a constant */
    int rank;            /* constants: ONNX rank and dims; values as f32 or i64 */
    int64_t dims[KILN_ONNX_MAX_RANK];
    bool is_int;
    float *f;            /* owned */
    int64_t *i;          /* owned */
    size_t n;
} value;

typedef struct {
    const kiln_onnx_model *m;
    const char *origin;
    kiln_graph_t *g;
    value *v;
    size_t n, cap;
    kiln_name_map index;         /* value name -> its place in v */
    const Onnx__NodeProto *nd;   /* the node being converted, for errors */
    char node_name[80];
} importer;

/* ------------------------------------------------------------------ errors and attributes */

static kiln_status fail(importer *im, const char *fmt, const char *detail)
{
    return kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": %s: %s%s", im->origin, im->node_name, im->nd->op_type, fmt,
                      detail ? detail : "");
}

static const Onnx__AttributeProto *attr(const importer *im, const char *name)
{
    for (size_t a = 0; a < im->nd->n_attribute; a++)
        if (strcmp(im->nd->attribute[a]->name, name) == 0)
            return im->nd->attribute[a];
    return NULL;
}

static int64_t attr_int(const importer *im, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_i ? a->i : def;
}

static float attr_float(const importer *im, const char *name, float def)
{
    const Onnx__AttributeProto *a = attr(im, name);
    return a && a->has_f ? a->f : def;
}

/* Refuses any attribute not in the NULL-terminated list known. */
static kiln_status only_attrs(importer *im, const char *const *known)
{
    for (size_t a = 0; a < im->nd->n_attribute; a++) {
        const char *name = im->nd->attribute[a]->name;
        bool ok = false;
        for (int k = 0; known && known[k] && !ok; k++)
            ok = strcmp(known[k], name) == 0;
        if (!ok)
            return fail(im, "attribute is not supported: ", name);
    }
    return KILN_OK;
}

/* ------------------------------------------------------------------ values */

static value *find(importer *im, const char *name)
{
    int k = kiln_name_map_get(&im->index, name);
    return k < 0 ? NULL : &im->v[k];
}

static value *add_value(importer *im, const char *name)
{
    if (im->n == im->cap) {
        size_t cap = im->cap ? 2 * im->cap : 64;
        value *v = realloc(im->v, cap * sizeof *v);
        if (!v)
            return NULL;
        im->v = v;
        im->cap = cap;
    }
    /* names are unique (the reader checked); "" (a Constant without an output) is never found */
    if (*name && kiln_name_map_put(&im->index, name, (int)im->n) < 0)
        return NULL;
    value *v = &im->v[im->n++];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->node = -1;
    return v;
}

/* Input j of the current node, which must exist. */
static value *in(importer *im, size_t j)
{
    if (j >= im->nd->n_input || !*im->nd->input[j])
        return NULL;
    return find(im, im->nd->input[j]);
}

/* A constant value from a checked tensor. */
static kiln_status const_from_tensor(importer *im, value *v, const Onnx__TensorProto *t)
{
    v->rank = (int)t->n_dims;
    for (int d = 0; d < v->rank; d++)
        v->dims[d] = t->dims[d];
    v->n = (size_t)kiln_onnx_numel(t);
    int32_t dt = t->data_type;
    v->is_int = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ||
                dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 || dt == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 ||
                dt == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    if (v->is_int) {
        if (!(v->i = malloc((v->n ? v->n : 1) * sizeof(int64_t))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        kiln_onnx_tensor_i64(t, v->i);
    } else {
        if (!(v->f = malloc((v->n ? v->n : 1) * sizeof(float))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        kiln_onnx_tensor_f32(t, v->f);
    }
    return KILN_OK;
}

/* The per-example rank of a value seen from ONNX: runtime tensors lose the batch. */
static int onnx_rank(const importer *im, const value *v)
{
    if (v->node < 0)
        return v->rank;
    const kiln_node *nd = &im->g->nodes[v->node];
    return nd->rank + (nd->batched ? 1 : 0);
}

/* A unique Kiln name for the current node's k-th Kiln node. */
static const char *kname(importer *im, int k)
{
    static _Thread_local char buf[KILN_NAME_LEN];
    snprintf(buf, sizeof buf, "%.20s%d%s%d", im->nd->op_type, im->g->n, k ? "_" : "", k);
    for (char *p = buf; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            *p = '_';
    return buf;
}

/* A constant as a Kiln f32 const node, shaped to broadcast against a runtime tensor of ONNX rank
 * other_rank: a leading batch dim of 1 is dropped. */
static int const_node(importer *im, value *c, int other_rank)
{
    if (c->is_int)
        return fail(im, "an integer constant as a runtime operand is not supported", NULL), -1;
    int first = c->rank == other_rank && c->rank > 0 ? 1 : 0;
    if (first && c->dims[0] != 1)
        return fail(im, "a constant that varies along the batch axis is not supported", NULL), -1;
    kiln_attrs a = {.dtype = KILN_DT_F32, .rank = c->rank - first, .values = c->f};
    for (int d = first; d < c->rank; d++) {
        if (c->dims[d] < 1 || c->dims[d] > (1 << 28))
            return fail(im, "a constant with an empty dim is not supported", NULL), -1;
        a.shape[d - first] = (int)c->dims[d];
    }
    if (a.rank > KILN_MAX_RANK)
        return fail(im, "a constant of rank above 6 is not supported", NULL), -1;
    return kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &a, kname(im, 9));
}

/* The Kiln node of input j: a runtime tensor, or a constant made a node. */
static int node_of(importer *im, size_t j, int other_rank)
{
    value *v = in(im, j);
    if (!v)
        return fail(im, "a required input is missing", NULL), -1;
    return v->node >= 0 ? v->node : const_node(im, v, other_rank);
}

/* Defines the current node's output k as Kiln node id (or a failure). */
static kiln_status define(importer *im, size_t k, int id)
{
    if (id < 0)
        return KILN_ERR_FORMAT;
    if (k >= im->nd->n_output || !*im->nd->output[k])
        return KILN_OK;
    value *v = add_value(im, im->nd->output[k]);
    if (!v)
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    v->node = id;
    return KILN_OK;
}

/* An ONNX axis on a runtime tensor of ONNX rank r as a Kiln per-example axis (-1 if the batch). */
static int axis_of(int64_t a, int r)
{
    if (a < 0)
        a += r;
    return a <= 0 || a >= r ? -1 : (int)a - 1;
}

/* Copies n floats into node id's k-th tensor. */
static void set_tensor(importer *im, int id, int k, const float *src, size_t n)
{
    const kiln_node *nd = &im->g->nodes[id];
    if (k < nd->n_params && nd->params[k].numel == n)
        memcpy(kiln_node_tensor(im->g, nd, k), src, n * sizeof(float));
}

/* A constant input j of float values of count n (a weight). */
static const value *weight(importer *im, size_t j, size_t n, const char *what)
{
    value *v = in(im, j);
    if (!v || v->node >= 0 || v->is_int)
        return fail(im, what, " must be a float initializer"), NULL;
    if (v->n != n) {
        char d[96];
        snprintf(d, sizeof d, " has %zu values, expected %zu", v->n, n);
        return fail(im, what, d), NULL;
    }
    return v;
}

/* Copies weight w (the layout ONNX and Kiln share) and, with bias, input 2 (units values) into
 * new node id (a conv or conv_transpose2d), and defines the output. */
static kiln_status weights_and_bias(importer *im, int id, const value *w, int units, bool bias)
{
    if (im->g->nodes[id].params[0].numel != w->n)
        return fail(im, "the weight's shape does not match the input's channels and group", NULL);
    set_tensor(im, id, 0, w->f, w->n);
    if (bias) {
        const value *b = weight(im, 2, (size_t)units, "the bias");
        if (!b)
            return KILN_ERR_FORMAT;
        set_tensor(im, id, 1, b->f, b->n);
    }
    return define(im, 0, id);
}

/* ------------------------------------------------------------------ converters */

typedef kiln_status (*convert_fn)(importer *im);

static kiln_status unary(importer *im, kiln_op op, kiln_attrs a)
{
    int x = node_of(im, 0, 0);
    return x < 0 ? KILN_ERR_FORMAT : define(im, 0, kiln_graph_add(im->g, op, &x, 1, &a, kname(im, 0)));
}

/* An activation without attributes. */
static kiln_status plain(importer *im, kiln_op op)
{
    kiln_status st = only_attrs(im, NULL);
    return st != KILN_OK ? st : unary(im, op, (kiln_attrs){0});
}

static kiln_status cv_relu(importer *im) { return plain(im, KILN_OP_RELU); }
static kiln_status cv_sigmoid(importer *im) { return plain(im, KILN_OP_SIGMOID); }
static kiln_status cv_tanh(importer *im) { return plain(im, KILN_OP_TANH); }

static kiln_status cv_leaky(importer *im)
{
    static const char *const k[] = {"alpha", NULL};
    kiln_status st = only_attrs(im, k);
    return st != KILN_OK ? st : unary(im, KILN_OP_LEAKY_RELU, (kiln_attrs){.alpha = attr_float(im, "alpha", 0.01f)});
}

static kiln_status cv_softmax(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected one runtime input", NULL);
    int r = onnx_rank(im, x), ax = axis_of(attr_int(im, "axis", kiln_onnx_opset(im->m) >= 13 ? -1 : 1), r);
    if (ax < 0)
        return fail(im, "attribute axis: the batch axis is not supported", NULL);
    if (kiln_onnx_opset(im->m) < 13 && ax != r - 2)   /* before 13: the axes after it flattened */
        return fail(im, "attribute axis: before opset 13 only the last axis is supported", NULL);
    kiln_op op = strcmp(im->nd->op_type, "Softmax") == 0 ? KILN_OP_SOFTMAX : KILN_OP_LOG_SOFTMAX;
    return unary(im, op, (kiln_attrs){.axis = ax});
}

static kiln_status cv_identity(importer *im)
{
    static const char *const k[] = {"ratio", "seed", NULL};   /* Dropout in inference: identity */
    value *x = in(im, 0), *training = in(im, 2);
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    if (x->node < 0 && strcmp(im->nd->op_type, "Identity") == 0) {   /* a copy of the constant */
        value *c = add_value(im, im->nd->n_output ? im->nd->output[0] : "");
        x = in(im, 0);   /* (add_value may have moved the table) */
        if (!c)
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        const char *name = c->name;
        *c = *x;
        c->name = name;
        c->f = x->f ? malloc(x->n * sizeof(float) + 1) : NULL;
        c->i = x->i ? malloc(x->n * sizeof(int64_t) + 1) : NULL;
        if ((x->f && !c->f) || (x->i && !c->i))
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        if (x->f)
            memcpy(c->f, x->f, x->n * sizeof(float));
        if (x->i)
            memcpy(c->i, x->i, x->n * sizeof(int64_t));
        return KILN_OK;
    }
    if (x->node < 0)
        return fail(im, "a constant input is not supported", NULL);
    if (im->nd->n_input > 2 && *im->nd->input[2] && (!training || training->node >= 0 || training->n != 1 ||
                                                     (training->is_int ? training->i[0] : training->f[0]) != 0))
        return fail(im, "training mode (random masks) is not supported", NULL);
    if (im->nd->n_output > 1 && *im->nd->output[1])
        return fail(im, "the mask output is not supported", NULL);
    return define(im, 0, x->node);
}

/* The (h, w) pair of an INTS attribute, def when absent; pads: symmetric begin/end only. */
static kiln_status pair(importer *im, const char *name, int def, int out[2], bool pads)
{
    const Onnx__AttributeProto *a = attr(im, name);
    out[0] = out[1] = def;
    if (!a)
        return KILN_OK;
    if (a->n_ints != (pads ? 4u : 2u))
        return fail(im, "attribute expects values for 2 spatial axes: ", name);
    for (int i = 0; i < 2; i++) {
        if (a->ints[i] < 0 || a->ints[i] > 4096)
            return fail(im, "attribute value out of 0..4096: ", name);
        if (pads && a->ints[i] != a->ints[i + 2])
            return fail(im, "attribute with different begin and end pads is not supported: ", name);
        out[i] = (int)a->ints[i];
    }
    return KILN_OK;
}

static kiln_status check_auto_pad(importer *im)
{
    const Onnx__AttributeProto *a = attr(im, "auto_pad");
    if (a && a->has_s && !(a->s.len == 6 && memcmp(a->s.data, "NOTSET", 6) == 0))
        return fail(im, "attribute auto_pad other than NOTSET is not supported", NULL);
    return KILN_OK;
}

static kiln_status cv_conv(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
    value *x = in(im, 0), *w = in(im, 1);
    if (only_attrs(im, k) || check_auto_pad(im))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0 || onnx_rank(im, x) != 4)
        return fail(im, "expected a runtime (N, C, H, W) input", NULL);
    if (!w || w->node >= 0 || w->is_int || w->rank != 4)
        return fail(im, "the weight must be a 4-d float initializer", NULL);
    kiln_attrs a = {.units = (int)w->dims[0], .groups = (int)attr_int(im, "group", 1)};
    a.kernel[0] = (int)w->dims[2];
    a.kernel[1] = (int)w->dims[3];
    int ks[2];
    if (pair(im, "kernel_shape", a.kernel[0], ks, false) || pair(im, "strides", 1, a.stride, false) ||
        pair(im, "pads", 0, a.pad, true) || pair(im, "dilations", 1, a.dilation, false))
        return KILN_ERR_FORMAT;
    if (ks[0] != a.kernel[0] || (attr(im, "kernel_shape") && ks[1] != a.kernel[1]))
        return fail(im, "attribute kernel_shape disagrees with the weight's shape", NULL);
    a.no_bias = !in(im, 2);
    int id = kiln_graph_add(im->g, KILN_OP_CONV2D, &x->node, 1, &a, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    return weights_and_bias(im, id, w, a.units, !a.no_bias);
}

static kiln_status cv_pool(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations",
                                    "storage_order", "count_include_pad", NULL};
    bool max = strcmp(im->nd->op_type, "MaxPool") == 0;
    value *x = in(im, 0);
    if (only_attrs(im, k) || check_auto_pad(im))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0 || onnx_rank(im, x) != 4)
        return fail(im, "expected a runtime (N, C, H, W) input", NULL);
    if (attr_int(im, "ceil_mode", 0) || attr_int(im, "storage_order", 0) || (max && im->nd->n_output > 1 &&
        *im->nd->output[1]))
        return fail(im, "ceil_mode, storage_order and the indices output are not supported", NULL);
    const Onnx__AttributeProto *dl = attr(im, "dilations");
    for (size_t i = 0; dl && i < dl->n_ints; i++)
        if (dl->ints[i] != 1)
            return fail(im, "attribute dilations other than 1 is not supported", NULL);
    kiln_attrs a = {0};
    if (!attr(im, "kernel_shape"))
        return fail(im, "attribute kernel_shape is required", NULL);
    if (pair(im, "kernel_shape", 1, a.kernel, false) || pair(im, "strides", 1, a.stride, false) ||
        pair(im, "pads", 0, a.pad, true))
        return KILN_ERR_FORMAT;
    if (!max && (a.pad[0] || a.pad[1]) && !attr_int(im, "count_include_pad", 0))
        return fail(im, "padded AveragePool without count_include_pad is not supported", NULL);
    return define(im, 0, kiln_graph_add(im->g, max ? KILN_OP_MAXPOOL2D : KILN_OP_AVGPOOL2D, &x->node, 1, &a,
                                        kname(im, 0)));
}

static kiln_status cv_global_avgpool(importer *im)
{
    value *x = in(im, 0);
    if (only_attrs(im, NULL) || !x || x->node < 0 || onnx_rank(im, x) != 4)
        return fail(im, "expected a runtime (N, C, H, W) input", NULL);
    int id = kiln_graph_add(im->g, KILN_OP_GLOBAL_AVGPOOL, &x->node, 1, &(kiln_attrs){0}, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    kiln_attrs r = {.rank = 3, .shape = {im->g->nodes[id].dims[0], 1, 1}};   /* ONNX keeps (C, 1, 1) */
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &id, 1, &r, kname(im, 1)));
}

static kiln_status cv_flatten(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    if (attr_int(im, "axis", 1) != 1)
        return fail(im, "attribute axis other than 1 is not supported", NULL);
    kiln_attrs r = {.rank = 1, .shape = {(int)im->g->nodes[x->node].numel}};
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &x->node, 1, &r, kname(im, 0)));
}

/* A linear layer over the last axis of x with weight (units, k) from src laid out (k, units)
 * (transposed) or (units, k), scaled by alpha, and bias (units values, scaled by beta) or none. */
static kiln_status linear(importer *im, int x, const value *w, bool w_is_k_by_units, float alpha, const float *bias,
                          float beta)
{
    int units = (int)(w_is_k_by_units ? w->dims[1] : w->dims[0]), k = (int)(w_is_k_by_units ? w->dims[0] : w->dims[1]);
    const kiln_node *xn = &im->g->nodes[x];
    if (xn->rank < 1 || xn->dims[xn->rank - 1] != k)
        return fail(im, "the weight's reduction length does not match the input's last axis", NULL);
    kiln_attrs a = {.units = units, .no_bias = !bias};
    int id = kiln_graph_add(im->g, KILN_OP_LINEAR, &x, 1, &a, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    const kiln_node *nd = &im->g->nodes[id];
    float *dst = kiln_node_tensor(im->g, nd, 0);
    for (int o = 0; o < units; o++)
        for (int t = 0; t < k; t++)
            dst[(size_t)o * k + t] = alpha * (w_is_k_by_units ? w->f[(size_t)t * units + o] : w->f[(size_t)o * k + t]);
    if (bias) {
        float *b = kiln_node_tensor(im->g, nd, 1);
        for (int o = 0; o < units; o++)
            b[o] = beta * bias[o];
    }
    return define(im, 0, id);
}

static kiln_status cv_gemm(importer *im)
{
    static const char *const k[] = {"alpha", "beta", "transA", "transB", NULL};
    value *x = in(im, 0), *w = in(im, 1), *c = in(im, 2);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0 || onnx_rank(im, x) != 2 || attr_int(im, "transA", 0))
        return fail(im, "expected a runtime (N, K) input, not transposed", NULL);
    if (!w || w->node >= 0 || w->is_int || w->rank != 2)
        return fail(im, "B must be a 2-d float initializer", NULL);
    bool tb = attr_int(im, "transB", 0) != 0;
    size_t units = (size_t)(tb ? w->dims[0] : w->dims[1]);
    if (c && (c->node >= 0 || c->is_int || c->n != units))
        return fail(im, "C must be a float initializer of one value per output", NULL);
    return linear(im, x->node, w, !tb, attr_float(im, "alpha", 1.0f), c ? c->f : NULL, attr_float(im, "beta", 1.0f));
}

static kiln_status cv_matmul(importer *im)
{
    value *x = in(im, 0), *w = in(im, 1);
    if (only_attrs(im, NULL) || !x || !w)
        return fail(im, "expected two inputs", NULL);
    if (x->node >= 0 && w->node < 0 && !w->is_int && w->rank == 2 && onnx_rank(im, x) >= 2)
        return linear(im, x->node, w, true, 1.0f, NULL, 1.0f);   /* by a weight: a linear, in int8 too */
    int ins[2] = {node_of(im, 0, onnx_rank(im, w)), node_of(im, 1, onnx_rank(im, x))};
    if (ins[0] < 0 || ins[1] < 0)
        return KILN_ERR_FORMAT;
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_MATMUL, ins, 2, &(kiln_attrs){0}, kname(im, 0)));
}

static kiln_status cv_binary(importer *im)
{
    static const struct { const char *name; kiln_op op; } ops[] = {
        {"Add", KILN_OP_ADD}, {"Sub", KILN_OP_SUB}, {"Mul", KILN_OP_MUL}, {"Div", KILN_OP_DIV}};
    kiln_op op = KILN_OP_ADD;
    for (int k = 0; k < 4; k++)
        if (strcmp(im->nd->op_type, ops[k].name) == 0)
            op = ops[k].op;
    value *a = in(im, 0), *b = in(im, 1);
    if (only_attrs(im, NULL) || !a || !b)
        return fail(im, "expected two inputs", NULL);
    if (a->node < 0 && b->node < 0)
        return fail(im, "arithmetic on two constants is not supported yet", NULL);
    int ins[2] = {node_of(im, 0, onnx_rank(im, b)), node_of(im, 1, onnx_rank(im, a))};
    if (ins[0] < 0 || ins[1] < 0)
        return KILN_ERR_FORMAT;
    return define(im, 0, kiln_graph_add(im->g, op, ins, 2, &(kiln_attrs){0}, kname(im, 0)));
}

static kiln_status cv_batchnorm(importer *im)
{
    static const char *const k[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (attr_int(im, "training_mode", 0) || (im->nd->n_output > 1 && *im->nd->output[1]))
        return fail(im, "training mode (and its running-statistics outputs) is not supported", NULL);
    if (!x || x->node < 0 || onnx_rank(im, x) < 2 || onnx_rank(im, x) > 4)
        return fail(im, "expected a runtime (N, C), (N, C, L) or (N, C, H, W) input", NULL);
    kiln_attrs a = {.eps = attr_float(im, "epsilon", 1e-5f)};
    int id = kiln_graph_add(im->g, KILN_OP_BATCHNORM, &x->node, 1, &a, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    size_t c = (size_t)im->g->nodes[id].dims[0];
    static const char *const what[] = {"scale", "B", "mean", "var"};
    for (int t = 0; t < 4; t++) {
        const value *p = weight(im, 1 + (size_t)t, c, what[t]);
        if (!p)
            return KILN_ERR_FORMAT;
        set_tensor(im, id, t, p->f, c);
    }
    return define(im, 0, id);
}

static kiln_status cv_concat(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    if (only_attrs(im, k) || im->nd->n_input < 1 || im->nd->n_input > KILN_MAX_INPUTS)
        return fail(im, "expected 1 to 8 inputs", NULL);
    value *first = in(im, 0);
    if (!first || first->node < 0)
        return fail(im, "concatenating constants is not supported yet", NULL);
    int r = onnx_rank(im, first), ax = axis_of(attr_int(im, "axis", 0), r);
    if (ax < 0)
        return fail(im, "attribute axis: the batch axis is not supported", NULL);
    int ins[KILN_MAX_INPUTS];
    for (size_t j = 0; j < im->nd->n_input; j++)
        if ((ins[j] = node_of(im, j, r)) < 0)
            return KILN_ERR_FORMAT;
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_CONCAT, ins, (int)im->nd->n_input, &(kiln_attrs){.axis = ax},
                                        kname(im, 0)));
}

static kiln_status cv_transpose(importer *im)
{
    static const char *const k[] = {"perm", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    int r = onnx_rank(im, x);
    const Onnx__AttributeProto *p = attr(im, "perm");
    if (!p)   /* the default reverses every axis, the batch's too */
        return fail(im, "attribute perm is required (the default moves the batch axis)", NULL);
    kiln_attrs a = {.rank = r - 1};
    for (int i = 1; i < r; i++) {
        int64_t src = p->n_ints == (size_t)r ? p->ints[i] : -1;
        if (src < 1 || src >= r || p->ints[0] != 0)
            return fail(im, "attribute perm must keep the batch axis first", NULL);
        a.perm[i - 1] = (int)src - 1;
    }
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_TRANSPOSE, &x->node, 1, &a, kname(im, 0)));
}

static kiln_status cv_reshape(importer *im)
{
    static const char *const k[] = {"allowzero", NULL};
    value *x = in(im, 0), *s = in(im, 1);
    if (only_attrs(im, k) || attr_int(im, "allowzero", 0))
        return fail(im, "attribute allowzero is not supported", NULL);
    if (!x || x->node < 0 || !s || s->node >= 0 || !s->is_int || s->rank != 1 || s->n < 1 || s->n > KILN_MAX_RANK + 1)
        return fail(im, "expected a runtime input and a constant int64 shape of 1 to 7 entries", NULL);
    const kiln_node *xn = &im->g->nodes[x->node];
    if (!(s->i[0] == BATCH_DIM || s->i[0] == 0 || s->i[0] == -1))
        return fail(im, "the target must keep the batch first (0, -1 or the batch from Shape)", NULL);
    kiln_attrs a = {.rank = (int)s->n - 1};
    for (size_t d = 1; d < s->n; d++) {
        int64_t v = s->i[d];
        if (v == BATCH_DIM)
            return fail(im, "the batch may only be the target's first entry", NULL);
        if (v == 0)   /* ONNX: copy the input's dim at this position (batch first) */
            v = d - 1 < (size_t)xn->rank ? xn->dims[d - 1] : -2;
        if (v < -1 || v > (1 << 28))
            return fail(im, "a target dim is out of range", NULL);
        a.shape[d - 1] = (int)v;
    }
    if (s->i[0] == -1) {   /* the batch inferred: the rest must hold one example exactly */
        for (int d = 0; d < a.rank; d++)
            if (a.shape[d] == -1)
                return fail(im, "a target with the batch and another dim both -1 is not supported", NULL);
    }
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &x->node, 1, &a, kname(im, 0)));
}

static kiln_status cv_pad(importer *im)
{
    static const char *const k[] = {"mode", NULL};
    const Onnx__AttributeProto *mode = attr(im, "mode");
    value *x = in(im, 0), *p = in(im, 1), *c = in(im, 2);
    if (only_attrs(im, k) || (mode && mode->has_s && !(mode->s.len == 8 && memcmp(mode->s.data, "constant", 8) == 0)))
        return fail(im, "only mode constant is supported", NULL);
    if (!x || x->node < 0 || im->nd->n_input > 3)
        return fail(im, "expected a runtime input (and no axes input)", NULL);
    int r = onnx_rank(im, x);
    if (!p || p->node >= 0 || !p->is_int || p->n != (size_t)(2 * r))
        return fail(im, "pads must be an int64 constant of two values per axis", NULL);
    if (c && (c->node >= 0 || c->is_int || c->n != 1))
        return fail(im, "constant_value must be a float scalar constant", NULL);
    bool any = false;
    kiln_attrs a = {.value = c ? c->f[0] : 0.0f};
    for (int d = 0; d < r; d++) {
        if (p->i[d] < 0 || p->i[r + d] < 0 || p->i[d] > 4096 || p->i[r + d] > 4096)
            return fail(im, "pads must be 0..4096 (negative pads crop, not supported)", NULL);
        if (d == 0) {
            if (p->i[0] || p->i[r])
                return fail(im, "padding the batch axis is not supported", NULL);
            continue;
        }
        a.pads[d - 1] = (int)p->i[d];
        a.pads[KILN_MAX_RANK + d - 1] = (int)p->i[r + d];
        any = any || p->i[d] || p->i[r + d];
    }
    if (!any)   /* (PyTorch exports a zero Pad before pools) */
        return define(im, 0, x->node);
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_PAD, &x->node, 1, &a, kname(im, 0)));
}

static kiln_status cv_layernorm(importer *im)
{
    static const char *const k[] = {"axis", "epsilon", "stash_type", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    int r = onnx_rank(im, x);
    if (axis_of(attr_int(im, "axis", -1), r) != r - 2)
        return fail(im, "attribute axis: only the last axis is supported", NULL);
    if ((im->nd->n_output > 1 && *im->nd->output[1]) || (im->nd->n_output > 2 && *im->nd->output[2]))
        return fail(im, "the mean and inverse deviation outputs are not supported", NULL);
    kiln_attrs a = {.eps = attr_float(im, "epsilon", 1e-5f)};
    int id = kiln_graph_add(im->g, KILN_OP_LAYERNORM, &x->node, 1, &a, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    size_t d = (size_t)im->g->nodes[id].dims[im->g->nodes[id].rank - 1];
    const value *scale = weight(im, 1, d, "the scale");
    if (!scale)
        return KILN_ERR_FORMAT;
    set_tensor(im, id, 0, scale->f, d);
    if (in(im, 2)) {
        const value *b = weight(im, 2, d, "the bias");
        if (!b)
            return KILN_ERR_FORMAT;
        set_tensor(im, id, 1, b->f, d);
    }   /* (no bias: the node's zeros) */
    return define(im, 0, id);
}

/* The axes of a reduction (attribute, or an i64 constant input from opset 13 for ReduceSum) as
 * Kiln's per-example axis bits; 0 on error (reported). */
static unsigned reduce_axes(importer *im, int r)
{
    const Onnx__AttributeProto *at = attr(im, "axes");
    value *ax = in(im, 1);
    int64_t list[KILN_ONNX_MAX_RANK];
    size_t n = 0;
    if (ax) {
        if (ax->node >= 0 || !ax->is_int || ax->n > KILN_ONNX_MAX_RANK)
            return fail(im, "input axes must be an int64 constant", NULL), 0;
        memcpy(list, ax->i, ax->n * sizeof(int64_t));
        n = ax->n;
    } else if (at) {
        if (at->n_ints > KILN_ONNX_MAX_RANK)
            return fail(im, "attribute axes has too many entries", NULL), 0;
        memcpy(list, at->ints, at->n_ints * sizeof(int64_t));
        n = at->n_ints;
    }
    if (!n)
        return fail(im, "reducing every axis (the batch's too) is not supported", NULL), 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int a = axis_of(list[i], r);
        if (a < 0)
            return fail(im, "reducing the batch axis is not supported", NULL), 0;
        bits |= 1u << a;
    }
    return bits;
}

static kiln_status cv_reduce(importer *im)
{
    static const char *const k[] = {"axes", "keepdims", "noop_with_empty_axes", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || attr_int(im, "noop_with_empty_axes", 0))
        return fail(im, "attribute noop_with_empty_axes is not supported", NULL);
    if (!x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    unsigned bits = reduce_axes(im, onnx_rank(im, x));
    if (!bits)
        return KILN_ERR_FORMAT;
    kiln_attrs a = {.axes = bits, .keepdims = attr_int(im, "keepdims", 1) != 0};
    kiln_op op = strcmp(im->nd->op_type, "ReduceMean") == 0 ? KILN_OP_MEAN : KILN_OP_SUM;
    return define(im, 0, kiln_graph_add(im->g, op, &x->node, 1, &a, kname(im, 0)));
}

/* An i64 constant input j of n values (n 0: any count up to max), or NULL (reported). */
static const value *int_input(importer *im, size_t j, size_t max, const char *what)
{
    value *v = in(im, j);
    if (!v || v->node >= 0 || !v->is_int || v->n < 1 || v->n > max)
        return fail(im, what, " must be an int64 constant"), NULL;
    return v;
}

static kiln_status cv_slice(importer *im)
{
    value *x = in(im, 0);
    if (only_attrs(im, NULL) || !x || x->node < 0)
        return fail(im, "expected a runtime input (and starts, ends as inputs: opset 10+)", NULL);
    const value *st = int_input(im, 1, 1, "starts (one axis)"), *en = st ? int_input(im, 2, 1, "ends (one axis)") : NULL;
    if (!st || !en)
        return KILN_ERR_FORMAT;
    int r = onnx_rank(im, x);   /* (without axes the first start applies to axis 0, the batch) */
    const value *axes = in(im, 3) ? int_input(im, 3, 1, "axes") : NULL, *steps = in(im, 4) ? int_input(im, 4, 1, "steps") : NULL;
    if ((in(im, 3) && !axes) || (in(im, 4) && !steps))
        return KILN_ERR_FORMAT;
    int ax = axes ? axis_of(axes->i[0], r) : -1;
    if (ax < 0)
        return fail(im, "slicing the batch axis is not supported", NULL);
    if (steps && steps->i[0] != 1)
        return fail(im, "steps other than 1 are not supported", NULL);
    int len = im->g->nodes[x->node].dims[ax];
    int64_t s0 = st->i[0] < 0 ? st->i[0] + len : st->i[0], e0 = en->i[0] < 0 ? en->i[0] + len : en->i[0];
    s0 = s0 < 0 ? 0 : s0 > len ? len : s0;
    e0 = e0 < 0 ? 0 : e0 > len ? len : e0;   /* (INT64_MAX: to the end) */
    if (e0 <= s0)
        return fail(im, "an empty slice is not supported", NULL);
    kiln_attrs a = {.axis = ax, .start = (int)s0, .end = (int)e0, .step = 1};
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_SLICE, &x->node, 1, &a, kname(im, 0)));
}

static kiln_status cv_conv_transpose(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad",
                                    "output_padding", NULL};
    value *x = in(im, 0), *w = in(im, 1);
    if (only_attrs(im, k) || check_auto_pad(im))
        return KILN_ERR_FORMAT;
    if (attr(im, "output_shape") || attr_int(im, "group", 1) != 1)
        return fail(im, "group other than 1 is not supported", NULL);
    if (!x || x->node < 0 || onnx_rank(im, x) != 4)
        return fail(im, "expected a runtime (N, C, H, W) input", NULL);
    if (!w || w->node >= 0 || w->is_int || w->rank != 4)
        return fail(im, "the weight must be a 4-d float initializer", NULL);
    kiln_attrs a = {.units = (int)w->dims[1], .groups = 1};
    a.kernel[0] = (int)w->dims[2];
    a.kernel[1] = (int)w->dims[3];
    if (pair(im, "strides", 1, a.stride, false) || pair(im, "pads", 0, a.pad, true) ||
        pair(im, "dilations", 1, a.dilation, false) || pair(im, "output_padding", 0, a.out_pad, false))
        return KILN_ERR_FORMAT;
    a.no_bias = !in(im, 2);
    int id = kiln_graph_add(im->g, KILN_OP_CONV_TRANSPOSE2D, &x->node, 1, &a, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
    return weights_and_bias(im, id, w, a.units, !a.no_bias);   /* ONNX's (C, M, kH, kW) is Kiln's layout */
}

/* Squeeze and Unsqueeze of a runtime tensor: a reshape to the shape ONNX gives (the batch stays). */
static kiln_status cv_squeeze_runtime(importer *im, value *x)
{
    bool squeeze = strcmp(im->nd->op_type, "Squeeze") == 0;
    const Onnx__AttributeProto *at = attr(im, "axes");
    value *av = in(im, 1);
    int64_t list[KILN_ONNX_MAX_RANK];
    size_t n = 0;
    if (av && (av->node >= 0 || !av->is_int || av->n > KILN_ONNX_MAX_RANK))
        return fail(im, "input axes must be an int64 constant", NULL);
    if (av)
        memcpy(list, av->i, (n = av->n) * sizeof(int64_t));
    else if (at && at->n_ints <= KILN_ONNX_MAX_RANK)
        memcpy(list, at->ints, (n = at->n_ints) * sizeof(int64_t));
    if (!n)
        return fail(im, "axes are required (squeezing every unit axis could take the batch)", NULL);
    const kiln_node *xn = &im->g->nodes[x->node];
    int r = xn->rank + 1, out_r = squeeze ? r - (int)n : r + (int)n;   /* ONNX ranks, the batch first */
    if (out_r < 1 || out_r > KILN_MAX_RANK + 1)
        return fail(im, "the result's rank is out of range", NULL);
    bool marked[KILN_MAX_RANK + 2] = {false};
    for (size_t i = 0; i < n; i++) {
        int64_t a = list[i] < 0 ? list[i] + (squeeze ? r : out_r) : list[i];
        if (a <= 0 || a >= (squeeze ? r : out_r) || marked[a])
            return fail(im, "an axis is the batch's, out of range or repeated", NULL);
        if (squeeze && xn->dims[a - 1] != 1)
            return fail(im, "squeezing an axis whose size is not 1", NULL);
        marked[a] = true;
    }
    kiln_attrs s = {.rank = out_r - 1};
    for (int o = 1, src = 1; o < out_r; o++) {   /* per-example dims of the result */
        if (squeeze) {
            while (marked[src])
                src++;
            s.shape[o - 1] = xn->dims[src++ - 1];
        } else {
            s.shape[o - 1] = marked[o] ? 1 : xn->dims[src++ - 1];
        }
    }
    if (s.rank == 0)
        return fail(im, "a scalar per example is not supported", NULL);
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &x->node, 1, &s, kname(im, 0)));
}

static kiln_status cv_split(importer *im)
{
    static const char *const k[] = {"axis", "split", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    int r = onnx_rank(im, x), ax = axis_of(attr_int(im, "axis", 0), r);
    if (ax < 0)
        return fail(im, "attribute axis: the batch axis is not supported", NULL);
    size_t parts = im->nd->n_output;
    int len = im->g->nodes[x->node].dims[ax];
    int64_t sizes[64];
    if (parts < 1 || parts > 64)
        return fail(im, "expected 1 to 64 outputs", NULL);
    const value *sv = in(im, 1);
    const Onnx__AttributeProto *sa = attr(im, "split");
    if (sv && (sv->node >= 0 || !sv->is_int || sv->n != parts))
        return fail(im, "input split must be an int64 constant of one size per output", NULL);
    if (sa && sa->n_ints != parts)
        return fail(im, "attribute split must give one size per output", NULL);
    int64_t total = 0;
    for (size_t p = 0; p < parts; p++) {
        sizes[p] = sv ? sv->i[p] : sa ? sa->ints[p] : len / (int64_t)parts;
        if (sizes[p] < 1 || sizes[p] > len)
            return fail(im, "a part's size is out of range", NULL);
        total += sizes[p];
    }
    if (total != len)
        return fail(im, "the parts do not add up to the axis' length", NULL);
    int start = 0;
    for (size_t p = 0; p < parts; p++) {
        kiln_attrs a = {.axis = ax, .start = start, .end = start + (int)sizes[p], .step = 1};
        start += (int)sizes[p];
        kiln_status st = define(im, p, kiln_graph_add(im->g, KILN_OP_SLICE, &x->node, 1, &a, kname(im, (int)p)));
        if (st != KILN_OK)
            return st;
        x = in(im, 0);   /* (define may have moved the table) */
    }
    return KILN_OK;
}

/* ---------------------------------------------------------------- constants and shape arithmetic */

static kiln_status cv_constant(importer *im)
{
    static const char *const k[] = {"value", NULL};
    const Onnx__AttributeProto *a = attr(im, "value");
    if (only_attrs(im, k) || !a || !a->t)
        return fail(im, "only the tensor form (attribute value) is supported", NULL);
    value *v = add_value(im, im->nd->n_output ? im->nd->output[0] : "");
    if (!v)
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    return const_from_tensor(im, v, a->t);
}

/* A new i64 constant output of rank r (dims), n values copied from vals. */
static kiln_status define_ints(importer *im, int r, const int64_t *dims, const int64_t *vals, size_t n)
{
    value *v = add_value(im, im->nd->n_output ? im->nd->output[0] : "");
    if (!v || !(v->i = malloc((n ? n : 1) * sizeof(int64_t))))
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    v->is_int = true;
    v->rank = r;
    memcpy(v->dims, dims, (size_t)r * sizeof(int64_t));
    memcpy(v->i, vals, n * sizeof(int64_t));
    v->n = n;
    return KILN_OK;
}

static kiln_status cv_shape(importer *im)
{
    static const char *const k[] = {"start", "end", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || attr(im, "start") || attr(im, "end") || !x)
        return fail(im, "attributes start and end are not supported", NULL);
    int64_t vals[KILN_ONNX_MAX_RANK], n = 0;
    if (x->node >= 0) {
        const kiln_node *xn = &im->g->nodes[x->node];
        if (xn->batched)
            vals[n++] = BATCH_DIM;
        for (int d = 0; d < xn->rank; d++)
            vals[n++] = xn->dims[d];
    } else {
        for (int d = 0; d < x->rank; d++)
            vals[n++] = x->dims[d];
    }
    int64_t dims[1] = {n};
    return define_ints(im, 1, dims, vals, (size_t)n);
}

static kiln_status cv_gather(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    value *x = in(im, 0), *ix = in(im, 1);
    if (only_attrs(im, k) || !x || !ix || x->node >= 0 || !x->is_int || x->rank != 1 || ix->node >= 0 ||
        !ix->is_int || ix->rank > 1 || attr_int(im, "axis", 0) != 0)
        return fail(im, "only gathering from a 1-d int64 constant (shape arithmetic) is supported", NULL);
    int64_t out[KILN_ONNX_MAX_RANK + 1];
    if (ix->n > KILN_ONNX_MAX_RANK)
        return fail(im, "too many indices", NULL);
    for (size_t j = 0; j < ix->n; j++) {
        int64_t i = ix->i[j] < 0 ? ix->i[j] + (int64_t)x->n : ix->i[j];
        if (i < 0 || i >= (int64_t)x->n)
            return fail(im, "an index is out of range", NULL);
        out[j] = x->i[i];
    }
    int64_t dims[1] = {(int64_t)ix->n};   /* a scalar index gives a scalar */
    return define_ints(im, ix->rank, dims, out, ix->n);
}

static kiln_status cv_unsqueeze(importer *im)
{
    static const char *const k[] = {"axes", NULL};
    value *x = in(im, 0);
    if (x && x->node >= 0 && only_attrs(im, k) == KILN_OK)
        return cv_squeeze_runtime(im, x);
    if (only_attrs(im, k) || !x || x->node >= 0 || !x->is_int || x->rank != 0)
        return fail(im, "only unsqueezing an int64 scalar constant (shape arithmetic) is supported", NULL);
    int64_t dims[1] = {1};
    return define_ints(im, 1, dims, x->i, 1);
}

static kiln_status cv_squeeze(importer *im)
{
    static const char *const k[] = {"axes", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    return cv_squeeze_runtime(im, x);
}

static kiln_status cv_concat_ints(importer *im)
{
    int64_t out[KILN_ONNX_MAX_RANK + 1];
    size_t n = 0;
    for (size_t j = 0; j < im->nd->n_input; j++) {
        value *v = in(im, j);
        if (!v || v->node >= 0 || !v->is_int || v->rank != 1 || n + v->n > KILN_ONNX_MAX_RANK + 1)
            return fail(im, "only concatenating short 1-d int64 constants (shape arithmetic) is supported", NULL);
        memcpy(out + n, v->i, v->n * sizeof(int64_t));
        n += v->n;
    }
    int64_t dims[1] = {(int64_t)n};
    return define_ints(im, 1, dims, out, n);
}

static kiln_status cv_concat_any(importer *im)
{
    value *first = in(im, 0);
    return first && first->node < 0 && first->is_int ? cv_concat_ints(im) : cv_concat(im);
}

/* ------------------------------------------------------------------ the table and the walk */

static const struct {
    const char *op;
    convert_fn fn;
} converters[] = {
    {"Relu", cv_relu}, {"Sigmoid", cv_sigmoid}, {"Tanh", cv_tanh}, {"LeakyRelu", cv_leaky},
    {"Softmax", cv_softmax}, {"LogSoftmax", cv_softmax}, {"Identity", cv_identity}, {"Dropout", cv_identity},
    {"Conv", cv_conv}, {"MaxPool", cv_pool}, {"AveragePool", cv_pool}, {"GlobalAveragePool", cv_global_avgpool},
    {"Flatten", cv_flatten}, {"Gemm", cv_gemm}, {"MatMul", cv_matmul}, {"Add", cv_binary}, {"Sub", cv_binary},
    {"Mul", cv_binary}, {"Div", cv_binary}, {"BatchNormalization", cv_batchnorm}, {"Concat", cv_concat_any},
    {"Transpose", cv_transpose}, {"Reshape", cv_reshape}, {"Constant", cv_constant}, {"Shape", cv_shape},
    {"Gather", cv_gather}, {"Unsqueeze", cv_unsqueeze}, {"Pad", cv_pad}, {"LayerNormalization", cv_layernorm},
    {"ReduceMean", cv_reduce}, {"ReduceSum", cv_reduce}, {"Slice", cv_slice}, {"ConvTranspose", cv_conv_transpose},
    {"Squeeze", cv_squeeze}, {"Split", cv_split},
};

/* The graph inputs that are not initializers, as Kiln inputs. */
static kiln_status add_inputs(importer *im, const Onnx__GraphProto *gp)
{
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (find(im, vi->name))
            continue;   /* an initializer listed as an input */
        const Onnx__TypeProto__Tensor *tt = vi->type ? vi->type->tensor_type : NULL;
        if (!tt || !tt->shape || tt->shape->n_dim < 1 || tt->shape->n_dim > KILN_MAX_RANK + 1)
            return kiln_error(KILN_ERR_FORMAT, "%s: input \"%s\": expected a tensor with a known rank 1..7 (the batch "
                              "first)", im->origin, vi->name);
        if (!tt->has_elem_type || tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
            return kiln_error(KILN_ERR_FORMAT, "%s: input \"%s\": elem_type: expected FLOAT, found %d", im->origin,
                              vi->name, tt->has_elem_type ? (int)tt->elem_type : -1);
        int dims[KILN_MAX_RANK], r = (int)tt->shape->n_dim - 1;
        for (int d = 0; d < r; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d + 1];
            if (!dm || dm->value_case != ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE || dm->dim_value < 1 ||
                dm->dim_value > (1 << 28))
                return kiln_error(KILN_ERR_FORMAT, "%s: input \"%s\": dim %d: expected a fixed size >= 1 (only the "
                                  "batch, dim 0, may be symbolic)", im->origin, vi->name, d + 1);
            dims[d] = (int)dm->dim_value;
        }
        char name[KILN_NAME_LEN];
        snprintf(name, sizeof name, "input%zu", i);
        value *v = add_value(im, vi->name);
        if (!v)
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        if ((v->node = kiln_graph_input_nd(im->g, name, KILN_DT_F32, r, dims)) < 0)
            return KILN_ERR_FORMAT;
    }
    return KILN_OK;
}

kiln_graph_t *kiln_graph_import_onnx(const char *path)
{
    kiln_onnx_model *m = kiln_onnx_read(path);
    kiln_graph_t *g = m ? kiln_onnx_import(m) : NULL;
    kiln_onnx_free(m);
    return g;
}

kiln_graph_t *kiln_onnx_import(const kiln_onnx_model *m)
{
    importer im = {.m = m, .origin = kiln_onnx_origin(m), .g = kiln_graph_create()};
    const Onnx__GraphProto *gp = kiln_onnx_graph(m);
    kiln_status st = im.g ? KILN_OK : KILN_ERR_NOMEM;
    for (size_t i = 0; i < gp->n_initializer && st == KILN_OK; i++) {
        value *v = add_value(&im, gp->initializer[i]->name);
        st = v ? const_from_tensor(&im, v, gp->initializer[i]) : KILN_ERR_NOMEM;
    }
    if (st == KILN_OK)
        st = add_inputs(&im, gp);
    for (size_t i = 0; i < gp->n_node && st == KILN_OK; i++) {
        im.nd = gp->node[i];
        snprintf(im.node_name, sizeof im.node_name, "%.70s", im.nd->name && *im.nd->name ? im.nd->name : im.nd->op_type);
        convert_fn fn = NULL;
        for (size_t k = 0; k < sizeof converters / sizeof converters[0] && !fn; k++)
            if (strcmp(converters[k].op, im.nd->op_type) == 0)
                fn = converters[k].fn;
        if (!fn) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": op %s is not supported", im.origin, im.node_name,
                            im.nd->op_type);
            break;
        }
        if ((st = fn(&im)) != KILN_OK && !strstr(kiln_last_error(), im.origin))   /* a shape error from the IR */
            kiln_error(st, "%s: node \"%s\": %s: %s", im.origin, im.node_name, im.nd->op_type, kiln_last_error());
    }
    int outs[KILN_MAX_OUTPUTS];
    if (st == KILN_OK && gp->n_output > KILN_MAX_OUTPUTS)
        st = kiln_error(KILN_ERR_FORMAT, "%s: graph: expected at most %d outputs, found %zu", im.origin,
                        KILN_MAX_OUTPUTS, gp->n_output);
    for (size_t k = 0; k < gp->n_output && st == KILN_OK; k++) {
        value *v = find(&im, gp->output[k]->name);
        if (!v || v->node < 0)
            st = kiln_error(KILN_ERR_FORMAT, "%s: output \"%s\": expected a value computed from the inputs, found a "
                            "constant", im.origin, gp->output[k]->name);
        else
            outs[k] = v->node;
    }
    if (st == KILN_OK)
        st = kiln_graph_set_outputs(im.g, outs, (int)gp->n_output);
    for (size_t k = 0; k < im.n; k++)
        free(im.v[k].f), free(im.v[k].i);
    free(im.v);
    kiln_name_map_free(&im.index);
    if (st != KILN_OK) {
        kiln_graph_free(im.g);
        return NULL;
    }
    return im.g;
}
