/* ONNX import (docs/ONNX.md): a checked ONNX graph becomes an ordinary Kiln graph with its weights.
 * Values are runtime tensors (Kiln nodes; the first ONNX dim of a graph input is the batch) or
 * constants held here until an op needs them (weights are copied into the op's parameters; shape
 * arithmetic on i64 constants is evaluated here). An op or attribute outside what is converted is
 * refused by name, never approximated. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "core/op_table.h"
#include "io/onnx/attention_match.h"
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
    bool is_int;         /* i64 values (ONNX's integer types and bool) */
    bool is_bool;
    int32_t type;        /* the ONNX element type (runtime tensors: FLOAT, or UINT8/INT8 carried as f32) */
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
    kiln_name_map reader;        /* value name -> the first node reading it */
    kiln_name_map shared;        /* value names read more than once, or graph outputs */
    int *fused;                  /* per node: the Kiln node an earlier node took it into, or -1 */
    bool one_d;                  /* the current conv or pool is 1-d: run as 2-d over (C, 1, L) */
    int b;                       /* ONNX axes before Kiln's first per-example axis: 1 (the batch), or 0
                                  * when inputs are taken whole (kiln_onnx_import_whole: batch 1) */
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
    v->is_bool = dt == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL;
    v->type = dt;
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
    return nd->rank + (nd->batched ? im->b : 0);
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
    if (c->is_bool)
        return fail(im, "a bool constant as a runtime operand is not supported", NULL), -1;
    int first = im->b && c->rank == other_rank && c->rank > 0 ? 1 : 0;
    if (first && c->dims[0] != 1)
        return fail(im, "a constant that varies along the batch axis is not supported", NULL), -1;
    float *conv = NULL;   /* integers meet f32 tensors (Pow's exponent, carried integers) as floats */
    if (c->is_int) {
        if (!(conv = malloc((c->n ? c->n : 1) * sizeof(float))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin), -1;
        for (size_t k = 0; k < c->n; k++)
            conv[k] = (float)c->i[k];
    }
    kiln_attrs a = {.dtype = KILN_DT_F32, .rank = c->rank - first, .values = conv ? conv : c->f};
    int id = -1;
    for (int d = first; d < c->rank; d++) {
        if (c->dims[d] < 1 || c->dims[d] > (1 << 28))
            return free(conv), fail(im, "a constant with an empty dim is not supported", NULL), -1;
        a.shape[d - first] = (int)c->dims[d];
    }
    if (a.rank > KILN_MAX_RANK)
        fail(im, "a constant of rank above 6 is not supported", NULL);
    else
        id = kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &a, kname(im, 9));
    free(conv);
    return id;
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
    v->type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    return KILN_OK;
}

/* An ONNX axis on a runtime tensor of ONNX rank r as a Kiln per-example axis (-1 if the batch or
 * out of range). */
static int axis_in(const importer *im, int64_t a, int r)
{
    if (a < 0)
        a += r;
    return a < im->b || a >= r ? -1 : (int)a - im->b;
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
 * new node id (a conv_transpose2d). */
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
    return KILN_OK;
}

/* ------------------------------------------------------------------ converters */

typedef kiln_status (*convert_fn)(importer *im);

static kiln_status reshape_const(importer *im, const value *s);
static bool int_type(int64_t t);
static kiln_status fold_values(importer *im, kiln_op op, kiln_attrs a, int n);

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
    int r = onnx_rank(im, x), ax = axis_in(im, attr_int(im, "axis", kiln_onnx_opset(im->m) >= 13 ? -1 : 1), r);
    if (ax < 0)
        return fail(im, "attribute axis: the batch axis is not supported", NULL);
    if (kiln_onnx_opset(im->m) < 13 && ax != r - 1 - im->b)   /* before 13: the axes after it flattened */
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
    if (a && im->one_d) {   /* (N, C, L) as (N, C, 1, L): the added axis neutral */
        bool zero = pads || strcmp(name, "output_padding") == 0;
        if (a->n_ints != (pads ? 2u : 1u) || a->ints[0] < 0 || a->ints[0] > 4096 ||
            (pads && a->ints[0] != a->ints[1]))
            return fail(im, "attribute expects a value for 1 spatial axis (pads: alike at both ends): ", name);
        out[0] = zero ? 0 : 1;
        out[1] = (int)a->ints[0];
        return KILN_OK;
    }
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

/* The index of string attribute name's value among the NULL-terminated names (def when absent),
 * or -1. */
static int str_attr_index(const importer *im, const char *name, const char *def, const char *const *names)
{
    const Onnx__AttributeProto *a = attr(im, name);
    size_t len = a && a->has_s ? a->s.len : strlen(def);
    const char *s = a && a->has_s ? (const char *)a->s.data : def;
    for (int k = 0; names[k]; k++)
        if (strlen(names[k]) == len && memcmp(names[k], s, len) == 0)
            return k;
    return -1;
}

/* The spatial pads of the current conv or pool (begin h, begin w, end h, end w) over an input of
 * spatial size in_hw: attribute pads, or auto_pad's SAME_UPPER, SAME_LOWER or VALID. */
static kiln_status spatial_pads(importer *im, const int *in_hw, const int *kernel, const int *stride, const int *dil,
                                int pads[4])
{
    static const char *const autos[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", NULL};
    int mode = str_attr_index(im, "auto_pad", "NOTSET", autos);
    memset(pads, 0, 4 * sizeof(int));
    if (mode < 0)
        return fail(im, "attribute auto_pad is not one of ONNX's", NULL);
    const Onnx__AttributeProto *p = attr(im, "pads");
    if (mode == 0 && p) {
        if (p->n_ints != (im->one_d ? 2u : 4u))
            return fail(im, "attribute pads expects begin and end values for every spatial axis", NULL);
        for (size_t i = 0; i < p->n_ints; i++) {
            if (p->ints[i] < 0 || p->ints[i] > 4096)
                return fail(im, "attribute pads: a value out of 0..4096", NULL);
            pads[im->one_d ? 1 + 2 * i : i] = (int)p->ints[i];   /* 1-d: (0, b, 0, e) */
        }
    }
    for (int d = 0; d < 2 && (mode == 1 || mode == 2); d++) {   /* SAME: out = ceil(in / stride) */
        int out = (in_hw[d] + stride[d] - 1) / stride[d], eff = (kernel[d] - 1) * dil[d] + 1;
        int total = (out - 1) * stride[d] + eff - in_hw[d], small = total > 0 ? total / 2 : 0;
        int big = total > 0 ? total - small : 0;
        pads[d] = mode == 1 ? small : big;
        pads[2 + d] = mode == 1 ? big : small;
    }
    return KILN_OK;
}

/* Node x, or a pad node over its (c, h, w) with value v when the pads differ begin to end or force
 * is set: the node to convolve or pool, with the pads left to it in sym (h, w). */
static int pad_spatial(importer *im, int x, const int pads[4], float value, bool force, int sym[2])
{
    if (!force && pads[0] == pads[2] && pads[1] == pads[3]) {
        sym[0] = pads[0];
        sym[1] = pads[1];
        return x;
    }
    sym[0] = sym[1] = 0;
    kiln_attrs a = {.value = value};
    a.pads[1] = pads[0];
    a.pads[2] = pads[1];
    a.pads[KILN_MAX_RANK + 1] = pads[2];
    a.pads[KILN_MAX_RANK + 2] = pads[3];
    return kiln_graph_add(im->g, KILN_OP_PAD, &x, 1, &a, kname(im, 6));
}

/* A conv2d over runtime node x with weight w (a 4-d float constant) and bias (units values or
 * NULL), the attributes of the current node: its node id, or -1 (reported). */
static int conv_node(importer *im, int x, const value *w, const float *bias)
{
    if (!w || w->node >= 0 || w->is_int || w->rank != 4)
        return fail(im, "the weight must be a 4-d float initializer", NULL), -1;
    kiln_attrs a = {.units = (int)w->dims[0], .groups = (int)attr_int(im, "group", 1)};
    a.kernel[0] = (int)w->dims[2];
    a.kernel[1] = (int)w->dims[3];
    int ks[2], pads[4];
    if (pair(im, "kernel_shape", a.kernel[0], ks, false) || pair(im, "strides", 1, a.stride, false) ||
        pair(im, "dilations", 1, a.dilation, false) ||
        spatial_pads(im, im->g->nodes[x].dims + 1, a.kernel, a.stride, a.dilation, pads))
        return -1;
    if (ks[0] != a.kernel[0] || (attr(im, "kernel_shape") && ks[1] != a.kernel[1]))
        return fail(im, "attribute kernel_shape disagrees with the weight's shape", NULL), -1;
    if ((x = pad_spatial(im, x, pads, 0.0f, false, a.pad)) < 0)
        return -1;
    a.no_bias = !bias;
    int id = kiln_graph_add(im->g, KILN_OP_CONV2D, &x, 1, &a, kname(im, 0));
    if (id < 0)
        return -1;
    if (im->g->nodes[id].params[0].numel != w->n)
        return fail(im, "the weight's shape does not match the input's channels and group", NULL), -1;
    set_tensor(im, id, 0, w->f, w->n);
    if (bias)
        set_tensor(im, id, 1, bias, (size_t)a.units);
    return id;
}

/* The runtime (N, C, H, W) input of a Conv, QLinearConv or ConvInteger (a conv's attributes only),
 * or NULL (reported). */
static value *conv_input(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return NULL;
    if (!x || x->node < 0 || (onnx_rank(im, x) != 4 && onnx_rank(im, x) != 3))
        return fail(im, "expected a runtime (N, C, H, W) or (N, C, L) input", NULL), NULL;
    im->one_d = onnx_rank(im, x) == 3;
    return x;
}

/* A 1-d conv's or pool's input (C, L) as (C, 1, L), or node x itself in 2-d: a node id or -1. */
static int to_2d(importer *im, int x)
{
    if (!im->one_d)
        return x;
    const kiln_node *n = &im->g->nodes[x];
    kiln_attrs r = {.rank = 3, .shape = {n->dims[0], 1, n->dims[1]}};
    return kiln_graph_add(im->g, KILN_OP_RESHAPE, &x, 1, &r, kname(im, 11));
}

/* The result (C, 1, L) of a 1-d conv or pool back as (C, L), or id itself in 2-d. */
static int from_2d(importer *im, int id)
{
    if (!im->one_d || id < 0)
        return id;
    const kiln_node *n = &im->g->nodes[id];
    kiln_attrs r = {.rank = 2, .shape = {n->dims[0], n->dims[2]}};
    return kiln_graph_add(im->g, KILN_OP_RESHAPE, &id, 1, &r, kname(im, 12));
}

/* A 1-d conv's weight (M, C, k) viewed as (M, C, 1, k) (sharing its values), or w itself. */
static value weight_2d(const importer *im, const value *w)
{
    value v = *w;
    if (im->one_d && w->rank == 3) {
        v.rank = 4;
        v.dims[3] = w->dims[2];
        v.dims[2] = 1;
    }
    return v;
}

static kiln_status cv_conv(importer *im)
{
    value *x = conv_input(im), *w = in(im, 1);
    if (!x)
        return KILN_ERR_FORMAT;
    const value *b = NULL;
    if (in(im, 2) && !(b = weight(im, 2, w && w->rank >= 3 ? (size_t)w->dims[0] : 0, "the bias")))
        return KILN_ERR_FORMAT;
    if (!w)
        return fail(im, "the weight is missing", NULL);
    value w2 = weight_2d(im, w);
    int src = to_2d(im, x->node);
    return define(im, 0, from_2d(im, src < 0 ? -1 : conv_node(im, src, &w2, b ? b->f : NULL)));
}

static kiln_status cv_pool(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations",
                                    "storage_order", "count_include_pad", NULL};
    bool max = strcmp(im->nd->op_type, "MaxPool") == 0;
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0 || (onnx_rank(im, x) != 4 && onnx_rank(im, x) != 3))
        return fail(im, "expected a runtime (N, C, H, W) or (N, C, L) input", NULL);
    im->one_d = onnx_rank(im, x) == 3;
    if (attr_int(im, "storage_order", 0) || (max && im->nd->n_output > 1 && *im->nd->output[1]))
        return fail(im, "storage_order and the indices output are not supported", NULL);
    bool ceil_mode = attr_int(im, "ceil_mode", 0) != 0;
    if (ceil_mode && !max && attr_int(im, "count_include_pad", 0))
        return fail(im, "ceil_mode with count_include_pad is not supported", NULL);
    const Onnx__AttributeProto *dl = attr(im, "dilations");
    for (size_t i = 0; dl && i < dl->n_ints; i++)
        if (dl->ints[i] != 1)
            return fail(im, "attribute dilations other than 1 is not supported", NULL);
    kiln_attrs a = {0};
    if (!attr(im, "kernel_shape"))
        return fail(im, "attribute kernel_shape is required", NULL);
    int pads[4], one[2] = {1, 1}, x2 = to_2d(im, x->node);
    if (x2 < 0 || pair(im, "kernel_shape", 1, a.kernel, false) || pair(im, "strides", 1, a.stride, false) ||
        spatial_pads(im, im->g->nodes[x2].dims + 1, a.kernel, a.stride, one, pads))
        return KILN_ERR_FORMAT;
    for (int d = 0; d < 2 && ceil_mode; d++) {   /* ceil: one more window where the last is partial */
        int in = im->g->nodes[x2].dims[1 + d] + pads[d] + pads[2 + d], k = a.kernel[d], st = a.stride[d];
        int out = in < k ? 1 : (in - k + st - 1) / st + 1;
        if ((out - 1) * st >= im->g->nodes[x2].dims[1 + d] + pads[d])   /* it must start inside the input */
            out--;
        if ((out - 1) * st + k > in)
            pads[2 + d] += (out - 1) * st + k - in;
    }
    bool padded = pads[0] || pads[1] || pads[2] || pads[3];
    bool exclude = !max && padded && !attr_int(im, "count_include_pad", 0);
    /* the kernels pad up to half the window on both sides alike; beyond, a pad node first (the
     * lowest float for max: the padding never wins; 0 for an average) */
    bool wide = false;
    for (int i = 0; i < 4; i++)
        wide = wide || pads[i] > a.kernel[i % 2] / 2;
    int src = pad_spatial(im, x2, pads, max ? -FLT_MAX : 0.0f, wide, a.pad);
    int id = src < 0 ? -1 : kiln_graph_add(im->g, max ? KILN_OP_MAXPOOL2D : KILN_OP_AVGPOOL2D, &src, 1, &a,
                                           kname(im, 0));
    if (id < 0 || !exclude)
        return define(im, 0, from_2d(im, id));
    /* an average over the window's input pixels only (count_include_pad 0): the kernel's average
     * over the whole window times window / pixels inside, a constant per output position */
    const kiln_node *pn = &im->g->nodes[id];
    int oh = pn->dims[1], ow = pn->dims[2], h = im->g->nodes[x2].dims[1], w = im->g->nodes[x2].dims[2];
    float *f = malloc((size_t)oh * ow * sizeof(float));
    if (!f)
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (int y = 0; y < oh; y++)
        for (int z = 0; z < ow; z++) {
            int y0 = y * a.stride[0] - pads[0], z0 = z * a.stride[1] - pads[1];
            int ny = (y0 + a.kernel[0] < h ? y0 + a.kernel[0] : h) - (y0 > 0 ? y0 : 0);
            int nz = (z0 + a.kernel[1] < w ? z0 + a.kernel[1] : w) - (z0 > 0 ? z0 : 0);
            f[y * ow + z] = ny > 0 && nz > 0 ? (float)(a.kernel[0] * a.kernel[1]) / (float)(ny * nz) : 0.0f;
        }
    kiln_attrs c = {.dtype = KILN_DT_F32, .rank = 3, .shape = {1, oh, ow}, .values = f};
    int ids[2] = {id, kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &c, kname(im, 7))};
    free(f);
    int y = ids[1] < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_MUL, ids, 2, &(kiln_attrs){0}, kname(im, 8));
    return define(im, 0, from_2d(im, y));
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
    const kiln_node *xn = &im->g->nodes[x->node];
    int64_t ax = attr_int(im, "axis", 1), r = onnx_rank(im, x);
    ax = ax < 0 ? ax + r : ax;
    if (im->b && ax != 1)
        return fail(im, "attribute axis other than 1 is not supported (it would mix the batch in)", NULL);
    if (ax < 0 || ax > r)
        return fail(im, "attribute axis is out of range", NULL);
    kiln_attrs f = {.rank = im->b ? 1 : 2, .shape = {(int)xn->numel}};
    if (!im->b) {   /* (the product of the dims before axis, of those from it) */
        f.shape[0] = 1;
        for (int d = 0; d < ax; d++)
            f.shape[0] *= xn->dims[d];
        f.shape[1] = (int)xn->numel / f.shape[0];
    }
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &x->node, 1, &f, kname(im, 0)));
}

/* A linear layer over the last axis of x with weight (units, k) from src laid out (k, units)
 * (transposed) or (units, k), scaled by alpha, and bias (units values, scaled by beta) or none:
 * its node id, or -1 (reported). */
static int linear_node(importer *im, int x, const value *w, bool w_is_k_by_units, float alpha, const float *bias,
                       float beta)
{
    int units = (int)(w_is_k_by_units ? w->dims[1] : w->dims[0]), k = (int)(w_is_k_by_units ? w->dims[0] : w->dims[1]);
    const kiln_node *xn = &im->g->nodes[x];
    if (xn->rank < 1 || xn->dims[xn->rank - 1] != k)
        return fail(im, "the weight's reduction length does not match the input's last axis", NULL), -1;
    kiln_attrs a = {.units = units, .no_bias = !bias};
    int id = kiln_graph_add(im->g, KILN_OP_LINEAR, &x, 1, &a, kname(im, 0));
    if (id < 0)
        return -1;
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
    return id;
}

static kiln_status cv_gemm(importer *im)
{
    static const char *const k[] = {"alpha", "beta", "transA", "transB", NULL};
    value *x = in(im, 0), *w = in(im, 1), *c = in(im, 2);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    bool ta = attr_int(im, "transA", 0) != 0;
    if (!x || x->node < 0 || onnx_rank(im, x) != 2 || (ta && im->b))
        return fail(im, "expected a runtime (N, K) input, not transposed (that would move the batch axis)", NULL);
    if (!w || w->node >= 0 || w->is_int || w->rank != 2)
        return fail(im, "B must be a 2-d float initializer", NULL);
    bool tb = attr_int(im, "transB", 0) != 0;
    size_t units = (size_t)(tb ? w->dims[0] : w->dims[1]);
    bool row = c && c->n == units && (c->rank == 1 || (c->rank == 2 && c->dims[0] == 1));
    if (c && (c->node >= 0 || c->is_int || !(row || c->n == 1 || !im->b)))
        return fail(im, "C must be a float constant of one value, or one per output (a row: C varying along the "
                    "batch axis is not supported)", NULL);
    int src = x->node;
    if (ta)   /* (a whole import: A's rows are not examples) */
        src = kiln_graph_add(im->g, KILN_OP_TRANSPOSE, &src, 1, &(kiln_attrs){.rank = 2, .perm = {1, 0}}, kname(im, 3));
    bool matrix = c && !row && c->n != 1;   /* a whole import's (M, N) C: added after */
    float *bias = c && !matrix ? malloc(units * sizeof(float) + 1) : NULL;
    if (c && !matrix && !bias)
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (size_t o = 0; bias && o < units; o++)
        bias[o] = c->f[row ? o : 0];
    float beta = attr_float(im, "beta", 1.0f);
    int id = src < 0 ? -1 : linear_node(im, src, w, !tb, attr_float(im, "alpha", 1.0f), bias, beta);
    free(bias);
    if (id < 0 || !matrix)
        return define(im, 0, id);
    if (beta != 1.0f)
        return fail(im, "a matrix C with beta other than 1 is not supported", NULL);
    int ins[2] = {id, node_of(im, 2, 2)};
    return define(im, 0, ins[1] < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_ADD, ins, 2, &(kiln_attrs){0}, kname(im, 4)));
}

/* The bias an Add that alone reads the current node's output adds (a float constant of units
 * values over the last axis), with that Add's index into *add; NULL if there is none. */
static const value *bias_after(importer *im, size_t units, int *add)
{
    const char *out = im->nd->n_output ? im->nd->output[0] : "";
    int c = *out && kiln_name_map_get(&im->shared, out) < 0 ? kiln_name_map_get(&im->reader, out) : -1;
    const Onnx__GraphProto *gp = kiln_onnx_graph(im->m);
    if (c < 0 || strcmp(gp->node[c]->op_type, "Add") != 0 || gp->node[c]->n_input != 2)
        return NULL;
    const Onnx__NodeProto *a = gp->node[c];
    value *b = find(im, strcmp(a->input[0], out) == 0 ? a->input[1] : a->input[0]);
    if (!b || b->node >= 0 || b->is_int || b->n != units || b->dims[b->rank - 1] != (int64_t)units)
        return NULL;
    *add = c;
    return b;
}

static kiln_status cv_matmul(importer *im)
{
    value *x = in(im, 0), *w = in(im, 1);
    if (only_attrs(im, NULL) || !x || !w)
        return fail(im, "expected two inputs", NULL);
    if (x->node >= 0 && w->node < 0 && !w->is_int && w->rank == 2 && onnx_rank(im, x) >= 2) {
        int add = -1;   /* by a weight: a linear (in int8 too), taking the bias an Add gives it */
        const value *b = bias_after(im, (size_t)w->dims[1], &add);
        int id = linear_node(im, x->node, w, true, 1.0f, b ? b->f : NULL, 1.0f);
        if (id >= 0 && add >= 0)
            im->fused[add] = id;
        return define(im, 0, id);
    }
    int ins[2] = {node_of(im, 0, onnx_rank(im, w)), node_of(im, 1, onnx_rank(im, x))};
    if (ins[0] < 0 || ins[1] < 0)
        return KILN_ERR_FORMAT;
    kiln_attention_match m;
    if (kiln_attention_match_find(im->g, ins[0], ins[1], &m)) {   /* Kiln's attention, heads split after */
        int src[3] = {m.q, m.k, m.v}, n = m.k < 0 ? 1 : 3;
        kiln_attrs a = {.heads = m.heads, .causal = m.causal};
        int att = kiln_graph_add(im->g, KILN_OP_ATTENTION, src, n, &a, kname(im, 0));
        if (att < 0)
            return KILN_ERR_FORMAT;
        const kiln_node *o = &im->g->nodes[att];
        kiln_attrs r = {.rank = 3, .shape = {o->dims[0], m.heads, o->dims[1] / m.heads}};
        int id = kiln_graph_add(im->g, KILN_OP_RESHAPE, &att, 1, &r, kname(im, 1));
        kiln_attrs t = {.rank = 3, .perm = {1, 0, 2}};
        return define(im, 0, id < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_TRANSPOSE, &id, 1, &t, kname(im, 2)));
    }
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_MATMUL, ins, 2, &(kiln_attrs){0}, kname(im, 0)));
}

static kiln_status cv_batchnorm(importer *im)
{
    static const char *const k[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (attr_int(im, "spatial", 1) != 1)   /* (opsets 7-8: statistics per activation) */
        return fail(im, "attribute spatial=0 is not supported", NULL);
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
    int r = onnx_rank(im, first), ax = axis_in(im, attr_int(im, "axis", 0), r);
    if (!attr(im, "axis"))   /* required from opset 4; before, it defaulted to 1 */
        return fail(im, "attribute axis is required", NULL);
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
    const Onnx__AttributeProto *p = attr(im, "perm");
    if (x && x->node < 0 && only_attrs(im, k) == KILN_OK) {   /* a constant: folded */
        kiln_attrs c = {.rank = x->rank};
        if (p && p->n_ints != (size_t)x->rank)
            return fail(im, "attribute perm must name every axis", NULL);
        for (int i = 0; i < x->rank; i++)
            c.perm[i] = p ? (int)(p->ints[i] < 0 || p->ints[i] >= x->rank ? -1 : p->ints[i]) : x->rank - 1 - i;
        return fold_values(im, KILN_OP_TRANSPOSE, c, 1);
    }
    if (only_attrs(im, k) || !x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    int r = onnx_rank(im, x), b = im->b;
    if (!p && b)   /* the default reverses every axis, the batch's too */
        return fail(im, "attribute perm is required (the default moves the batch axis)", NULL);
    if (p && p->n_ints != (size_t)r)
        return fail(im, "attribute perm must name every axis", NULL);
    kiln_attrs a = {.rank = r - b};
    bool seen[KILN_ONNX_MAX_RANK] = {false};
    for (int i = b; i < r; i++) {
        int64_t src = p ? p->ints[i] : r - 1 - i;
        if (src < b || src >= r || seen[src] || (b && p->ints[0] != 0))
            return fail(im, b ? "attribute perm must keep the batch axis first" : "attribute perm is not a permutation",
                        NULL);
        seen[src] = true;
        a.perm[i - b] = (int)src - b;
    }
    int from = x->node;
    const kiln_node *inner = &im->g->nodes[from];
    if (inner->op == KILN_OP_TRANSPOSE) {   /* a transpose of a transpose: one, or none */
        bool identity = true;
        for (int i = 0; i < a.rank; i++) {
            a.perm[i] = inner->a.perm[a.perm[i]];
            identity = identity && a.perm[i] == i;
        }
        from = inner->inputs[0];
        if (identity)
            return define(im, 0, from);
    }
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_TRANSPOSE, &from, 1, &a, kname(im, 0)));
}

static kiln_status cv_reshape(importer *im)
{
    static const char *const k[] = {"allowzero", NULL};
    value *x = in(im, 0), *s = in(im, 1);
    if (x && x->node < 0 && s && s->node < 0 && s->is_int && s->rank == 1 && only_attrs(im, k) == KILN_OK)
        return reshape_const(im, s);
    if (only_attrs(im, k) || attr_int(im, "allowzero", 0))
        return fail(im, "attribute allowzero is not supported", NULL);
    if (!x || x->node < 0 || !s || s->node >= 0 || !s->is_int || s->rank != 1 || s->n < 1 || s->n > KILN_MAX_RANK + 1)
        return fail(im, "expected a runtime input and a constant int64 shape of 1 to 7 entries", NULL);
    const kiln_node *xn = &im->g->nodes[x->node];
    size_t b = (size_t)im->b;
    if (b && !(s->i[0] == BATCH_DIM || s->i[0] == 0 || s->i[0] == -1))
        return fail(im, "the target must keep the batch first (0, -1 or the batch from Shape)", NULL);
    if (!b && s->n > KILN_MAX_RANK)
        return fail(im, "a target of more than 6 dims", NULL);
    kiln_attrs a = {.rank = (int)(s->n - b)};
    for (size_t d = b; d < s->n; d++) {
        int64_t v = s->i[d];
        if (v == BATCH_DIM)
            return fail(im, "the batch may only be the target's first entry", NULL);
        if (v == 0)   /* ONNX: copy the input's dim at this position (batch first) */
            v = d - b < (size_t)xn->rank ? xn->dims[d - b] : -2;
        if (v < -1 || v > (1 << 28))
            return fail(im, "a target dim is out of range", NULL);
        a.shape[d - b] = (int)v;
    }
    if (b && s->i[0] == -1) {   /* the batch inferred: the rest must hold one example exactly */
        for (int d = 0; d < a.rank; d++)
            if (a.shape[d] == -1)
                return fail(im, "a target with the batch and another dim both -1 is not supported", NULL);
    }
    int from = x->node;
    if (xn->op == KILN_OP_RESHAPE)   /* a reshape of a reshape: one, or none */
        from = xn->inputs[0];
    int id = kiln_graph_add(im->g, KILN_OP_RESHAPE, &from, 1, &a, kname(im, 0));
    if (id >= 0 && from != x->node) {
        const kiln_node *f = &im->g->nodes[from], *r = &im->g->nodes[id];
        bool same = f->rank == r->rank;
        for (int d = 0; same && d < r->rank; d++)
            same = f->dims[d] == r->dims[d];
        if (same)
            return define(im, 0, from);   /* (the reshape node is left unread: the optimiser drops it) */
    }
    return define(im, 0, id);
}

static kiln_status cv_pad(importer *im)
{
    static const char *const k[] = {"mode", NULL};
    static const char *const modes[] = {"constant", "reflect", "edge", NULL};
    int mode = str_attr_index(im, "mode", "constant", modes);
    value *x = in(im, 0), *p = in(im, 1), *c = in(im, 2);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (mode < 0)
        return fail(im, "attribute mode is not one of ONNX's (constant, reflect, edge)", NULL);
    if (!x || x->node < 0 || im->nd->n_input > 3)
        return fail(im, "expected a runtime input (and no axes input)", NULL);
    int r = onnx_rank(im, x);
    if (!p || p->node >= 0 || !p->is_int || p->n != (size_t)(2 * r))
        return fail(im, "pads must be an int64 constant of two values per axis", NULL);
    if (c && (c->node >= 0 || c->is_int || c->n != 1))
        return fail(im, "constant_value must be a float scalar constant", NULL);
    bool any = false;
    kiln_attrs a = {.value = c ? c->f[0] : 0.0f, .mode = mode};
    for (int d = 0; d < r; d++) {
        if (p->i[d] < 0 || p->i[r + d] < 0 || p->i[d] > 4096 || p->i[r + d] > 4096)
            return fail(im, "pads must be 0..4096 (negative pads crop, not supported)", NULL);
        if (d < im->b) {
            if (p->i[0] || p->i[r])
                return fail(im, "padding the batch axis is not supported", NULL);
            continue;
        }
        a.pads[d - im->b] = (int)p->i[d];
        a.pads[KILN_MAX_RANK + d - im->b] = (int)p->i[r + d];
        any = any || p->i[d] || p->i[r + d];
    }
    if (!any)   /* (PyTorch exports a zero Pad before pools) */
        return define(im, 0, x->node);
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_PAD, &x->node, 1, &a, kname(im, 0)));
}

/* A reshape of node x to per-example rank r and dims d: a node id, or -1. */
static int reshape_to(importer *im, int x, int r, const int *d, int k)
{
    kiln_attrs a = {.rank = r};
    memcpy(a.shape, d, (size_t)r * sizeof(int));
    return kiln_graph_add(im->g, KILN_OP_RESHAPE, &x, 1, &a, kname(im, k));
}

/* LayerNormalization's optional outputs over the last axis of node x (per-example dims shaped
 * as out_dims, rank out_r): output 1 the mean, output 2 the inverse standard deviation. */
static kiln_status norm_stats(importer *im, int x, float eps, int out_r, const int *out_dims)
{
    kiln_attrs m = {.axes = 1u << (im->g->nodes[x].rank - 1), .keepdims = true};
    int mean = kiln_graph_add(im->g, KILN_OP_MEAN, &x, 1, &m, kname(im, 3));
    int dv[2] = {x, mean};
    int d = mean < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_SUB, dv, 2, &(kiln_attrs){0}, kname(im, 4));
    int sq[2] = {d, d}, v = d < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_MUL, sq, 2, &(kiln_attrs){0}, kname(im, 5));
    v = v < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_MEAN, &v, 1, &m, kname(im, 6));
    kiln_attrs ea = {.dtype = KILN_DT_F32, .values = &eps};
    int e = kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &ea, kname(im, 7));
    int ve[2] = {v, e};
    v = v < 0 || e < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_ADD, ve, 2, &(kiln_attrs){0}, kname(im, 8));
    v = v < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_SQRT, &v, 1, &(kiln_attrs){0}, kname(im, 9));
    v = v < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_RECIPROCAL, &v, 1, &(kiln_attrs){0}, kname(im, 10));
    if (mean < 0 || v < 0)
        return KILN_ERR_FORMAT;
    kiln_status st = im->nd->n_output > 1 ? define(im, 1, reshape_to(im, mean, out_r, out_dims, 11)) : KILN_OK;
    return st == KILN_OK && im->nd->n_output > 2 ? define(im, 2, reshape_to(im, v, out_r, out_dims, 12)) : st;
}

/* LayerNormalization over the axes from `axis` on (a reshape makes them one last axis). */
static kiln_status cv_layernorm(importer *im)
{
    static const char *const k[] = {"axis", "epsilon", "stash_type", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0)
        return fail(im, "expected a runtime input", NULL);
    int r = onnx_rank(im, x), ax = axis_in(im, attr_int(im, "axis", -1), r);
    if (ax < 0)
        return fail(im, "attribute axis: normalising over the batch axis is not supported", NULL);
    const kiln_node *xn = &im->g->nodes[x->node];
    int xr = xn->rank, dims[KILN_MAX_RANK], flat[KILN_MAX_RANK], stat[KILN_MAX_RANK];
    memcpy(dims, xn->dims, sizeof dims);
    size_t d = 1;
    for (int i = 0; i < xr; i++) {
        if (i >= ax)
            d *= (size_t)dims[i];
        flat[i] = dims[i];
        stat[i] = i < ax ? dims[i] : 1;
    }
    flat[ax] = (int)d;
    int src = ax == xr - 1 ? x->node : reshape_to(im, x->node, ax + 1, flat, 1);
    float eps = attr_float(im, "epsilon", 1e-5f);
    int id = src < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_LAYERNORM, &src, 1, &(kiln_attrs){.eps = eps}, kname(im, 0));
    if (id < 0)
        return KILN_ERR_FORMAT;
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
    kiln_status st = define(im, 0, ax == xr - 1 ? id : reshape_to(im, id, xr, dims, 2));
    if (st == KILN_OK && ((im->nd->n_output > 1 && *im->nd->output[1]) || (im->nd->n_output > 2 && *im->nd->output[2])))
        st = norm_stats(im, src, eps, xr, stat);
    return st;
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
    if (!n && !im->b)   /* a whole import: every axis */
        return r >= 1 && r <= KILN_MAX_RANK ? (1u << r) - 1 : 0;
    if (!n)
        return fail(im, "reducing every axis (the batch's too) is not supported", NULL), 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int a = axis_in(im, list[i], r);
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

/* ConvTranspose's pads and output padding from output_shape or auto_pad SAME (ONNX's total
 * padding, floor-halved: the begin side gets the larger half unless SAME_UPPER): Kiln's symmetric
 * pads take the begin side, output padding extends the end, and what the end loses beyond the
 * begin is cropped after (crop[d], rows or columns to drop at the end). */
static kiln_status transpose_pads(importer *im, const int *in_hw, kiln_attrs *a, int crop[2])
{
    static const char *const autos[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", NULL};
    const Onnx__AttributeProto *os = attr(im, "output_shape");
    int mode = str_attr_index(im, "auto_pad", "NOTSET", autos);
    crop[0] = crop[1] = 0;
    if (mode < 0)
        return fail(im, "attribute auto_pad is not one of ONNX's", NULL);
    if (mode == 3) {
        a->pad[0] = a->pad[1] = 0;
        return KILN_OK;
    }
    if (!os && mode == 0)
        return KILN_OK;   /* pads and output_padding as given */
    size_t spatial = im->one_d ? 1 : 2;
    if (os && os->n_ints != spatial && os->n_ints != spatial + 2)
        return fail(im, "attribute output_shape expects a size per spatial axis (or every dim)", NULL);
    for (int d = 0; d < 2; d++) {
        int64_t target = !os ? (int64_t)in_hw[d] * a->stride[d] : im->one_d && d == 0 ? 1
                       : os->ints[os->n_ints - 2 + d];
        int64_t total = (int64_t)a->stride[d] * (in_hw[d] - 1) + a->out_pad[d] +
                        (int64_t)(a->kernel[d] - 1) * a->dilation[d] + 1 - target;
        int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);   /* floor */
        int64_t begin = mode == 1 ? half : total - half, end = total - begin;
        if (begin < 0 || begin > 4096 || end > 4096 || target < 1)
            return fail(im, "output_shape or auto_pad asks for an output larger at the start than the transposed "
                        "convolution's", NULL);
        a->pad[d] = (int)begin;   /* Kiln: (in - 1) s - 2 p + k + o; ONNX: ... + op - begin - end */
        if (end <= begin)
            a->out_pad[d] += (int)(begin - end);
        else
            crop[d] = (int)(end - begin);
    }
    return KILN_OK;
}

static kiln_status cv_conv_transpose(importer *im)
{
    static const char *const k[] = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad",
                                    "output_padding", "output_shape", NULL};
    value *x = in(im, 0), *w = in(im, 1);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (attr_int(im, "group", 1) != 1)
        return fail(im, "group other than 1 is not supported", NULL);
    if (!x || x->node < 0 || (onnx_rank(im, x) != 4 && onnx_rank(im, x) != 3))
        return fail(im, "expected a runtime (N, C, H, W) or (N, C, L) input", NULL);
    im->one_d = onnx_rank(im, x) == 3;
    if (!w || w->node >= 0 || w->is_int || w->rank != (im->one_d ? 3 : 4))
        return fail(im, "the weight must be a float initializer of the input's rank", NULL);
    value w2 = weight_2d(im, w);
    w = &w2;
    int x2 = to_2d(im, x->node), crop[2];
    if (x2 < 0)
        return KILN_ERR_FORMAT;
    kiln_attrs a = {.units = (int)w->dims[1], .groups = 1};
    a.kernel[0] = (int)w->dims[2];
    a.kernel[1] = (int)w->dims[3];
    if (pair(im, "strides", 1, a.stride, false) || pair(im, "pads", 0, a.pad, true) ||
        pair(im, "dilations", 1, a.dilation, false) || pair(im, "output_padding", 0, a.out_pad, false) ||
        transpose_pads(im, im->g->nodes[x2].dims + 1, &a, crop))
        return KILN_ERR_FORMAT;
    a.no_bias = !in(im, 2);
    int id = kiln_graph_add(im->g, KILN_OP_CONV_TRANSPOSE2D, &x2, 1, &a, kname(im, 0));
    if (id < 0 || weights_and_bias(im, id, w, a.units, !a.no_bias) != KILN_OK)   /* (C, M, kH, kW): Kiln's layout */
        return KILN_ERR_FORMAT;
    for (int d = 0; d < 2 && id >= 0; d++)   /* the end side's crop beyond the begin side's */
        if (crop[d]) {
            kiln_attrs c = {.axis = 1 + d, .start = 0, .end = im->g->nodes[id].dims[1 + d] - crop[d], .step = 1};
            id = c.end < 1 ? -1 : kiln_graph_add(im->g, KILN_OP_SLICE, &id, 1, &c, kname(im, 1 + d));
        }
    return define(im, 0, from_2d(im, id));
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
    const kiln_node *xn = &im->g->nodes[x->node];
    int b = im->b, r = xn->rank + b;   /* ONNX ranks, the batch first unless whole */
    bool marked[KILN_MAX_RANK + 2] = {false};
    if (!n && (b || !squeeze))
        return fail(im, "axes are required (squeezing every unit axis could take the batch)", NULL);
    for (int d = 0; !n && d < r; d++)   /* (a whole import: every axis of size 1) */
        if (xn->dims[d] == 1)
            marked[d] = true, n++;
    if (!n)
        return define(im, 0, x->node);
    int out_r = squeeze ? r - (int)n : r + (int)n;
    if (out_r < b || out_r > KILN_MAX_RANK + b)
        return fail(im, "the result's rank is out of range", NULL);
    for (size_t i = 0; i < n && (av || at); i++) {
        int64_t a = list[i] < 0 ? list[i] + (squeeze ? r : out_r) : list[i];
        if (a < b || a >= (squeeze ? r : out_r) || marked[a])
            return fail(im, "an axis is the batch's, out of range or repeated", NULL);
        if (squeeze && xn->dims[a - b] != 1)
            return fail(im, "squeezing an axis whose size is not 1", NULL);
        marked[a] = true;
    }
    kiln_attrs s = {.rank = out_r - b};
    for (int o = b, src = b; o < out_r; o++) {   /* per-example dims of the result */
        if (squeeze) {
            while (marked[src])
                src++;
            s.shape[o - b] = xn->dims[src++ - b];
        } else {
            s.shape[o - b] = marked[o] ? 1 : xn->dims[src++ - b];
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
    int r = onnx_rank(im, x), ax = axis_in(im, attr_int(im, "axis", 0), r);
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

/* A constant's Kiln dtype. */
static kiln_dtype dtype_of(const value *v)
{
    return !v->is_int ? KILN_DT_F32 : v->is_bool ? KILN_DT_BOOL : KILN_DT_I64;
}

/* Whether constant v holds the batch entry of a shape (Shape of a batched tensor). */
static bool has_batch(const value *v)
{
    for (size_t k = 0; v->is_int && k < v->n; k++)
        if (v->i[k] == BATCH_DIM)
            return true;
    return false;
}

/* A new constant as output k of the current node (values to fill), or NULL (reported). */
static value *new_const(importer *im, size_t k, kiln_dtype dt, int rank, const int64_t *dims)
{
    double n = 1;
    for (int d = 0; d < rank; d++)
        n *= (double)dims[d];
    if (rank > KILN_ONNX_MAX_RANK || n > (double)(1 << 28))
        return fail(im, "the constant result is too large", NULL), NULL;
    value *v = add_value(im, k < im->nd->n_output ? im->nd->output[k] : "");
    if (!v)
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin), NULL;
    v->rank = rank;
    if (rank)   /* (a scalar's dims may be NULL) */
        memcpy(v->dims, dims, (size_t)rank * sizeof(int64_t));
    v->n = (size_t)n;
    v->is_int = dt != KILN_DT_F32;
    v->is_bool = dt == KILN_DT_BOOL;
    v->type = dt == KILN_DT_F32 ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : dt == KILN_DT_BOOL
              ? ONNX__TENSOR_PROTO__DATA_TYPE__BOOL : ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
    if (v->is_int ? !(v->i = malloc((v->n ? v->n : 1) * sizeof(int64_t)))
                  : !(v->f = malloc((v->n ? v->n : 1) * sizeof(float))))
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin), NULL;
    return v;
}

/* Whether every input of the current node that is given is a constant (and at least one is). */
static bool all_const(importer *im)
{
    bool any = false;
    for (size_t j = 0; j < im->nd->n_input; j++) {
        value *v = in(im, j);
        if (v && v->node >= 0)
            return false;
        any = any || v;
    }
    return any;
}

/* Whether op may read the batch entry of a shape: it moves or selects values, never computes
 * with them (Equal only against negative numbers, which no size equals). */
static bool batch_ok(importer *im, kiln_op op, int n)
{
    if (op == KILN_OP_EQUAL) {
        for (int j = 0; j < n; j++)
            for (size_t k = 0; in(im, (size_t)j)->is_int && k < in(im, (size_t)j)->n; k++)
                if (in(im, (size_t)j)->i[k] >= 0)
                    return false;
        return true;
    }
    return op == KILN_OP_WHERE || op == KILN_OP_CONCAT || op == KILN_OP_TRANSPOSE ||
           (op == KILN_OP_CAST && im->nd->n_input == 1);
}

/* Output 0 of the current node as Kiln op a over its first n inputs, all constants, evaluated by
 * the IR's folding (src/core/fold.c) in a scratch graph. */
static kiln_status fold_values(importer *im, kiln_op op, kiln_attrs a, int n)
{
    kiln_graph_t *g = kiln_graph_create();
    int ids[KILN_MAX_INPUTS];
    kiln_status st = g ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (int j = 0; j < n && st == KILN_OK; j++) {
        const value *v = in(im, (size_t)j);
        if (!v || v->node >= 0)
            st = fail(im, "expected constant inputs", NULL);
        else if (v->rank > KILN_MAX_RANK || v->n == 0)
            st = fail(im, "a constant that is empty or of rank above 6 is not supported", NULL);
        else if (has_batch(v) && !batch_ok(im, op, n))
            st = fail(im, "arithmetic on the batch size (known only when a session is created) is not supported",
                      NULL);
        if (st != KILN_OK)
            break;
        kiln_attrs c = {.dtype = dtype_of(v), .rank = v->rank};
        c.values = v->is_int ? (const void *)v->i : (const void *)v->f;
        for (int d = 0; d < v->rank; d++)
            c.shape[d] = (int)v->dims[d];
        if ((ids[j] = kiln_graph_add(g, KILN_OP_CONST, NULL, 0, &c, NULL)) < 0)
            st = KILN_ERR_FORMAT;
    }
    int id = st == KILN_OK ? kiln_graph_add(g, op, ids, n, &a, kname(im, 0)) : -1;
    if (st == KILN_OK && id < 0) {
        char why[300];
        snprintf(why, sizeof why, "%s", kiln_last_error());
        st = fail(im, "", why);
    }
    if (st == KILN_OK) {
        const kiln_node *r = &g->nodes[id];
        int64_t dims[KILN_MAX_RANK];
        for (int d = 0; d < r->rank; d++)
            dims[d] = r->dims[d];
        value *v = new_const(im, 0, r->dtype, r->rank, dims);
        if (!v)
            st = KILN_ERR_FORMAT;
        else if (v->is_int)
            memcpy(v->i, kiln_const_ints(r), v->n * sizeof(int64_t));
        else
            memcpy(v->f, kiln_node_tensor(g, r, 0), v->n * sizeof(float));
    }
    kiln_graph_free(g);
    return st;
}

static kiln_status cv_constant(importer *im)
{
    static const char *const k[] = {"value", "value_float", "value_floats", "value_int", "value_ints", NULL};
    const Onnx__AttributeProto *a = attr(im, "value");
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (a && a->t) {
        value *v = add_value(im, im->nd->n_output ? im->nd->output[0] : "");
        if (!v)
            return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        return const_from_tensor(im, v, a->t);
    }
    const Onnx__AttributeProto *f = attr(im, "value_float"), *fs = attr(im, "value_floats");
    const Onnx__AttributeProto *i = attr(im, "value_int"), *is = attr(im, "value_ints");
    int64_t n = fs ? (int64_t)fs->n_floats : is ? (int64_t)is->n_ints : 1;
    value *v = new_const(im, 0, f || fs ? KILN_DT_F32 : KILN_DT_I64, f || i ? 0 : 1, &n);
    if (!v)
        return KILN_ERR_FORMAT;
    for (int64_t k2 = 0; k2 < n; k2++) {
        if (v->f)
            v->f[k2] = f ? f->f : fs ? fs->floats[k2] : 0.0f;
        else
            v->i[k2] = i ? i->i : is ? is->ints[k2] : 0;
    }
    if (!f && !fs && !i && !is)
        return fail(im, "expected attribute value, value_float(s) or value_int(s)", NULL);
    return KILN_OK;
}

/* A new i64 constant output of rank r (dims), n values copied from vals. */
static kiln_status define_ints(importer *im, int r, const int64_t *dims, const int64_t *vals, size_t n)
{
    value *v = new_const(im, 0, KILN_DT_I64, r, dims);
    if (!v)
        return KILN_ERR_FORMAT;
    memcpy(v->i, vals, n * sizeof(int64_t));
    return KILN_OK;
}

static kiln_status cv_shape(importer *im)
{
    static const char *const k[] = {"start", "end", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    int64_t vals[KILN_ONNX_MAX_RANK], n = 0;
    if (x->node >= 0) {
        const kiln_node *xn = &im->g->nodes[x->node];
        if (xn->batched && im->b)
            vals[n++] = BATCH_DIM;
        for (int d = 0; d < xn->rank; d++)
            vals[n++] = xn->dims[d];
    } else {
        for (int d = 0; d < x->rank; d++)
            vals[n++] = x->dims[d];
    }
    int64_t lo = attr_int(im, "start", 0), hi = attr_int(im, "end", n);   /* opset 15: a window */
    lo = lo < 0 ? lo + n : lo;
    hi = hi < 0 ? hi + n : hi;
    lo = lo < 0 ? 0 : lo > n ? n : lo;
    hi = hi < lo ? lo : hi > n ? n : hi;
    int64_t dims[1] = {hi - lo};
    return define_ints(im, 1, dims, vals + lo, (size_t)(hi - lo));
}

/* Strides of a constant's dims (C order). */
static void const_strides(const value *v, size_t *st)
{
    size_t s = 1;
    for (int d = v->rank - 1; d >= 0; d--) {
        st[d] = s;
        s *= (size_t)v->dims[d];
    }
}

/* r[k] = x[at] for constants of one kind. */
static void copy_elem(value *r, size_t k, const value *x, size_t at)
{
    if (r->is_int)
        r->i[k] = x->i[at];
    else
        r->f[k] = x->f[at];
}

/* Output 0: a copy of constant input 0. */
static kiln_status copy_const(importer *im)
{
    const value *x = in(im, 0);
    value *v = new_const(im, 0, dtype_of(x), x->rank, x->dims);
    x = in(im, 0);
    if (!v)
        return KILN_ERR_FORMAT;
    for (size_t k = 0; k < v->n; k++)
        copy_elem(v, k, x, k);
    v->type = x->type;
    return KILN_OK;
}

/* Gather on constants: any rank, any axis. */
static kiln_status gather_consts(importer *im, int64_t axis)
{
    const value *x = in(im, 0), *ix = in(im, 1);
    int r = x->rank, q = ix->rank;
    if (axis < 0)
        axis += r;
    if (axis < 0 || axis >= r || r + q - 1 > KILN_ONNX_MAX_RANK || !ix->is_int)
        return fail(im, "attribute axis or the indices are out of range", NULL);
    int64_t dims[KILN_ONNX_MAX_RANK], len = x->dims[axis];
    int o = 0;
    for (int d = 0; d < axis; d++)
        dims[o++] = x->dims[d];
    for (int d = 0; d < q; d++)
        dims[o++] = ix->dims[d];
    for (int d = (int)axis + 1; d < r; d++)
        dims[o++] = x->dims[d];
    for (size_t j = 0; j < ix->n; j++)
        if (ix->i[j] < -len || ix->i[j] >= len)
            return fail(im, "an index is out of range", NULL);
    value *v = new_const(im, 0, dtype_of(x), o, dims);
    x = in(im, 0), ix = in(im, 1);   /* (new_const may have moved the table) */
    if (!v)
        return KILN_ERR_FORMAT;
    size_t outer = 1, inner = 1, k = 0;
    for (int d = 0; d < axis; d++)
        outer *= (size_t)x->dims[d];
    for (int d = (int)axis + 1; d < r; d++)
        inner *= (size_t)x->dims[d];
    for (size_t a = 0; a < outer; a++)
        for (size_t j = 0; j < ix->n; j++) {
            int64_t i = ix->i[j] < 0 ? ix->i[j] + len : ix->i[j];
            for (size_t e = 0; e < inner; e++)
                copy_elem(v, k++, x, (a * (size_t)len + (size_t)i) * inner + e);
        }
    return KILN_OK;
}

/* Gather on a runtime tensor: by constant indices (slices along the axis), or rows of a constant
 * 2-d table by a runtime int32 index tensor (an embedding). */
static kiln_status cv_gather(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    value *x = in(im, 0), *ix = in(im, 1);
    if (only_attrs(im, k) || !x || !ix)
        return fail(im, "expected data and indices", NULL);
    int64_t axis = attr_int(im, "axis", 0);
    if (x->node < 0 && ix->node < 0)
        return gather_consts(im, axis);
    if (x->node < 0) {   /* a table of embeddings */
        const kiln_node *t = &im->g->nodes[ix->node];
        if (x->is_int || x->rank != 2 || axis != 0 || t->dtype != KILN_DT_I32)
            return fail(im, "runtime indices must be integer graph inputs selecting rows of a 2-d float table", NULL);
        kiln_attrs a = {.vocab = (int)x->dims[0], .units = (int)x->dims[1]};
        int id = kiln_graph_add(im->g, KILN_OP_EMBEDDING, &ix->node, 1, &a, kname(im, 0));
        if (id >= 0)
            set_tensor(im, id, 0, x->f, x->n);
        return define(im, 0, id);
    }
    int r = onnx_rank(im, x), ax = axis_in(im, axis, r);
    if (ax < 0 || ix->node >= 0 || !ix->is_int || ix->rank > 1 || ix->n < 1 || ix->n > KILN_MAX_INPUTS)
        return fail(im, "gathering along the batch axis, by runtime indices or by more than 8 indices is not "
                    "supported", NULL);
    int len = im->g->nodes[x->node].dims[ax], parts[KILN_MAX_INPUTS], rank = ix->rank;
    size_t n = ix->n;
    int64_t idx[KILN_MAX_INPUTS];
    for (size_t j = 0; j < n; j++) {
        idx[j] = ix->i[j] < 0 ? ix->i[j] + len : ix->i[j];
        if (idx[j] < 0 || idx[j] >= len)
            return fail(im, "an index is out of range", NULL);
    }
    int src = x->node;
    for (size_t j = 0; j < n; j++) {
        kiln_attrs a = {.axis = ax, .start = (int)idx[j], .end = (int)idx[j] + 1, .step = 1};
        if ((parts[j] = kiln_graph_add(im->g, KILN_OP_SLICE, &src, 1, &a, kname(im, (int)j + 1))) < 0)
            return KILN_ERR_FORMAT;
    }
    int id = n == 1 ? parts[0] : kiln_graph_add(im->g, KILN_OP_CONCAT, parts, (int)n, &(kiln_attrs){.axis = ax},
                                                kname(im, 0));
    if (id < 0 || rank == 1)
        return define(im, 0, id);
    const kiln_node *nd = &im->g->nodes[id];   /* a scalar index drops the axis */
    kiln_attrs s = {.rank = nd->rank - 1};
    for (int d = 0, o = 0; d < nd->rank; d++)
        if (d != ax)
            s.shape[o++] = nd->dims[d];
    if (s.rank == 0)
        return fail(im, "a scalar per example is not supported", NULL);
    return define(im, 0, kiln_graph_add(im->g, KILN_OP_RESHAPE, &id, 1, &s, kname(im, 9)));
}

/* The axes of Squeeze/Unsqueeze (an attribute before opset 13, an input after) into list. */
static kiln_status squeeze_axes(importer *im, int64_t *list, size_t *n)
{
    const Onnx__AttributeProto *at = attr(im, "axes");
    value *av = in(im, 1);
    *n = 0;
    if (av && (av->node >= 0 || !av->is_int || av->n > KILN_ONNX_MAX_RANK))
        return fail(im, "input axes must be a short int64 constant", NULL);
    if (av)
        memcpy(list, av->i, (*n = av->n) * sizeof(int64_t));
    else if (at && at->n_ints <= KILN_ONNX_MAX_RANK)
        memcpy(list, at->ints, (*n = at->n_ints) * sizeof(int64_t));
    else if (at)
        return fail(im, "attribute axes has too many entries", NULL);
    return KILN_OK;
}

/* Squeeze and Unsqueeze of a constant: the same values under new dims. */
static kiln_status squeeze_const(importer *im, bool squeeze)
{
    int64_t list[KILN_ONNX_MAX_RANK], dims[KILN_ONNX_MAX_RANK];
    size_t n;
    if (squeeze_axes(im, list, &n))
        return KILN_ERR_FORMAT;
    const value *x = in(im, 0);
    int r = x->rank, out_r = squeeze ? (n ? r - (int)n : 0) : r + (int)n;
    bool marked[KILN_ONNX_MAX_RANK + 1] = {false};
    if (out_r < 0 || out_r > KILN_ONNX_MAX_RANK)
        return fail(im, "the result's rank is out of range", NULL);
    for (size_t i = 0; i < n; i++) {
        int64_t a = list[i] < 0 ? list[i] + (squeeze ? r : out_r) : list[i];
        if (a < 0 || a >= (squeeze ? r : out_r) || marked[a] || (squeeze && x->dims[a] != 1))
            return fail(im, "an axis is out of range, repeated, or (squeezed) not of size 1", NULL);
        marked[a] = true;
    }
    int o = 0;
    if (squeeze) {
        for (int d = 0; d < r; d++)
            if (n ? !marked[d] : x->dims[d] != 1)
                dims[o++] = x->dims[d];
    } else {
        for (int d = 0, src = 0; d < out_r; d++)
            dims[o++] = marked[d] ? 1 : x->dims[src++];
    }
    value *v = new_const(im, 0, dtype_of(x), o, dims);
    x = in(im, 0);
    if (!v)
        return KILN_ERR_FORMAT;
    for (size_t k = 0; k < v->n; k++)
        copy_elem(v, k, x, k);
    return KILN_OK;
}

/* Squeeze and Unsqueeze, of a runtime tensor or a constant. */
static kiln_status cv_squeeze(importer *im)
{
    static const char *const k[] = {"axes", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    return x->node >= 0 ? cv_squeeze_runtime(im, x) : squeeze_const(im, strcmp(im->nd->op_type, "Squeeze") == 0);
}

static kiln_status cv_concat_any(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    if (!all_const(im))
        return cv_concat(im);
    const value *first = in(im, 0);
    if (only_attrs(im, k) || im->nd->n_input > KILN_MAX_INPUTS || !first || !attr(im, "axis"))
        return fail(im, "expected 1 to 8 inputs and attribute axis", NULL);
    int64_t ax = attr_int(im, "axis", 0);
    ax = ax < 0 ? ax + first->rank : ax;
    if (ax < 0 || ax >= first->rank)
        return fail(im, "attribute axis is out of range", NULL);
    if (im->nd->n_input == 1)
        return copy_const(im);
    return fold_values(im, KILN_OP_CONCAT, (kiln_attrs){.axis = (int)ax}, (int)im->nd->n_input);
}

/* Output 0: a constant of rank r and dims whose element (c_0 .. c_r-1) is constant input 0's
 * element offset + sum c_d stride[d] (a slice, a broadcast). */
static kiln_status strided_const(importer *im, int r, const int64_t *dims, const int64_t *stride, int64_t offset)
{
    value *v = new_const(im, 0, dtype_of(in(im, 0)), r, dims);
    const value *x = in(im, 0);   /* (new_const may have moved the table) */
    if (!v)
        return KILN_ERR_FORMAT;
    for (size_t k = 0; k < v->n; k++) {
        size_t rest = k;
        int64_t at = offset;
        for (int d = r - 1; d >= 0; d--) {
            at += (int64_t)(rest % (size_t)dims[d]) * stride[d];
            rest /= (size_t)dims[d];
        }
        copy_elem(v, k, x, (size_t)at);
    }
    return KILN_OK;
}

/* Reshape of a constant (ONNX's 0 and -1 in the target). */
static kiln_status reshape_const(importer *im, const value *s)
{
    const value *x = in(im, 0);
    int64_t dims[KILN_ONNX_MAX_RANK], known = 1, infer = -1;
    if (s->n > KILN_ONNX_MAX_RANK || has_batch(s))
        return fail(im, "the target shape is too long or holds the batch", NULL);
    for (size_t d = 0; d < s->n; d++) {
        dims[d] = s->i[d] == 0 && !attr_int(im, "allowzero", 0) ? (d < (size_t)x->rank ? x->dims[d] : -2) : s->i[d];
        if (dims[d] == -1 && infer < 0)
            infer = (int64_t)d;
        else if (dims[d] < 1)
            return fail(im, "a target dim is out of range", NULL);
        else
            known *= dims[d];
    }
    if (infer >= 0)
        dims[infer] = known ? (int64_t)x->n / known : 0;
    if ((infer >= 0 ? known * dims[infer] : known) != (int64_t)x->n)
        return fail(im, "the target shape does not hold the input's element count", NULL);
    value *v = new_const(im, 0, dtype_of(x), (int)s->n, dims);
    x = in(im, 0);
    if (!v)
        return KILN_ERR_FORMAT;
    for (size_t k = 0; k < v->n; k++)
        copy_elem(v, k, x, k);
    return KILN_OK;
}

/* The ONNX slice of one axis of length len: start and step, and the count of elements taken. */
static bool slice_range(int64_t len, int64_t st, int64_t en, int64_t step, int64_t *start, int64_t *count)
{
    if (step == 0)
        return false;
    st = st < 0 ? st + len : st;
    en = en < 0 ? en + len : en;
    if (step > 0) {
        st = st < 0 ? 0 : st > len ? len : st;
        en = en < 0 ? 0 : en > len ? len : en;
        *count = en > st ? (en - st + step - 1) / step : 0;
    } else {
        st = st < 0 ? -1 : st > len - 1 ? len - 1 : st;
        en = en < -1 ? -1 : en > len - 1 ? len - 1 : en;
        *count = st > en ? (st - en - step - 1) / -step : 0;
    }
    *start = st;
    return true;
}

static kiln_status cv_slice(importer *im)
{
    value *x = in(im, 0), *st = in(im, 1), *en = in(im, 2), *axv = in(im, 3), *spv = in(im, 4);
    if (only_attrs(im, NULL) || !x || !st || !en)
        return fail(im, "expected data, starts and ends as inputs (opset 10+)", NULL);
    size_t n = st->n;
    if (st->node >= 0 || en->node >= 0 || !st->is_int || !en->is_int || en->n != n || n < 1 ||
        n > KILN_ONNX_MAX_RANK || (axv && (axv->node >= 0 || !axv->is_int || axv->n != n)) ||
        (spv && (spv->node >= 0 || !spv->is_int || spv->n != n)))
        return fail(im, "starts, ends, axes and steps must be int64 constants of one length", NULL);
    int r = x->node >= 0 ? onnx_rank(im, x) : x->rank;
    int64_t start[KILN_ONNX_MAX_RANK], step[KILN_ONNX_MAX_RANK], count[KILN_ONNX_MAX_RANK], dims[KILN_ONNX_MAX_RANK];
    for (int d = 0; d < r; d++) {
        start[d] = 0;
        step[d] = 1;
        count[d] = x->node >= 0 ? (d >= im->b ? im->g->nodes[x->node].dims[d - im->b] : -1) : x->dims[d];
    }
    bool seen[KILN_ONNX_MAX_RANK] = {false};
    for (size_t k = 0; k < n; k++) {
        int64_t a = axv ? axv->i[k] : (int64_t)k;
        a = a < 0 ? a + r : a;
        if (a < 0 || a >= r || seen[a])
            return fail(im, "an axis is out of range or repeated", NULL);
        seen[a] = true;
        step[a] = spv ? spv->i[k] : 1;
        if (x->node >= 0 && a < im->b) {
            if (st->i[k] != 0 || en->i[k] < INT32_MAX || step[a] != 1)
                return fail(im, "slicing the batch axis is not supported", NULL);
            continue;
        }
        if (!slice_range(count[a], st->i[k], en->i[k], step[a], &start[a], &count[a]))
            return fail(im, "a step of 0", NULL);
        if (count[a] < 1)
            return fail(im, "an empty slice is not supported", NULL);
    }
    if (x->node >= 0) {   /* one Kiln slice per axis cut */
        int id = x->node;
        for (int a = im->b; a < r; a++) {
            if (!seen[a] || (start[a] == 0 && step[a] == 1 && count[a] == im->g->nodes[id].dims[a - im->b]))
                continue;
            if (step[a] < 0)
                return fail(im, "negative steps are not supported on runtime tensors", NULL);
            kiln_attrs s = {.axis = a - im->b, .start = (int)start[a], .step = (int)step[a]};
            s.end = (int)(start[a] + (count[a] - 1) * step[a] + 1);
            if ((id = kiln_graph_add(im->g, KILN_OP_SLICE, &id, 1, &s, kname(im, a))) < 0)
                return KILN_ERR_FORMAT;
        }
        return define(im, 0, id);
    }
    for (int d = 0; d < r; d++)
        dims[d] = count[d];
    size_t xs[KILN_ONNX_MAX_RANK];
    int64_t stride[KILN_ONNX_MAX_RANK], offset = 0;
    const_strides(x, xs);
    for (int d = 0; d < r; d++) {
        stride[d] = step[d] * (int64_t)xs[d];
        offset += start[d] * (int64_t)xs[d];
    }
    return strided_const(im, r, dims, stride, offset);
}

static kiln_status cv_constant_of_shape(importer *im)
{
    static const char *const k[] = {"value", NULL};
    value *s = in(im, 0);
    const Onnx__AttributeProto *a = attr(im, "value");
    if (only_attrs(im, k) || !s || s->node >= 0 || !s->is_int || s->rank != 1 || s->n > KILN_ONNX_MAX_RANK)
        return fail(im, "the shape must be a short 1-d int64 constant", NULL);
    if (has_batch(s))
        return fail(im, "a constant sized by the batch (known only when a session is created) is not supported",
                    NULL);
    value fill = {.rank = 0};
    if (a && a->t) {
        if (kiln_onnx_numel(a->t) != 1 || const_from_tensor(im, &fill, a->t))
            return fail(im, "attribute value must hold one element", NULL);
    }
    int64_t dims[KILN_ONNX_MAX_RANK];
    for (size_t d = 0; d < s->n; d++) {
        if (s->i[d] < 1)
            return free(fill.f), free(fill.i), fail(im, "an empty or negative dim is not supported", NULL);
        dims[d] = s->i[d];
    }
    value *v = new_const(im, 0, a && a->t ? dtype_of(&fill) : KILN_DT_F32, (int)s->n, dims);
    for (size_t k2 = 0; v && k2 < v->n; k2++) {
        if (v->is_int)
            v->i[k2] = fill.i[0];
        else
            v->f[k2] = fill.f ? fill.f[0] : 0.0f;
    }
    free(fill.f);
    free(fill.i);
    return v ? KILN_OK : KILN_ERR_FORMAT;
}

static kiln_status cv_range(importer *im)
{
    value *s = in(im, 0), *l = in(im, 1), *d = in(im, 2);
    if (only_attrs(im, NULL) || !all_const(im) || !s || !l || !d || s->n != 1 || l->n != 1 || d->n != 1 ||
        s->is_int != l->is_int || s->is_int != d->is_int || has_batch(l) || has_batch(s))
        return fail(im, "start, limit and delta must be scalar constants of one type (and not the batch)", NULL);
    double st = s->is_int ? (double)s->i[0] : s->f[0], li = l->is_int ? (double)l->i[0] : l->f[0];
    double de = d->is_int ? (double)d->i[0] : d->f[0], n = ceil((li - st) / de);
    if (!(n >= 1 && n <= (1 << 24)))
        return fail(im, "the range is empty or longer than 2^24", NULL);
    int64_t dims[1] = {(int64_t)n};
    bool ints = s->is_int;
    int64_t si = ints ? s->i[0] : 0, di = ints ? d->i[0] : 0;
    float sf = ints ? 0 : s->f[0], df = ints ? 0 : d->f[0];
    value *v = new_const(im, 0, ints ? KILN_DT_I64 : KILN_DT_F32, 1, dims);
    for (size_t k = 0; v && k < v->n; k++) {
        if (ints)
            v->i[k] = si + (int64_t)k * di;
        else
            v->f[k] = sf + (float)k * df;
    }
    return v ? KILN_OK : KILN_ERR_FORMAT;
}

/* Expand: a constant broadcast to a shape (a new constant), or a runtime tensor (an add of zeros
 * of the per-example shape, where the shape adds axes or widens unit ones). */
static kiln_status cv_expand(importer *im)
{
    value *x = in(im, 0), *s = in(im, 1);
    if (only_attrs(im, NULL) || !x || !s || s->node >= 0 || !s->is_int || s->rank != 1 || s->n > KILN_ONNX_MAX_RANK)
        return fail(im, "the shape must be a short 1-d int64 constant", NULL);
    int xr = x->node >= 0 ? onnx_rank(im, x) : x->rank, r = xr > (int)s->n ? xr : (int)s->n;
    int64_t xd[KILN_ONNX_MAX_RANK], dims[KILN_ONNX_MAX_RANK];
    for (int d = 0; d < xr; d++)
        xd[d] = x->node < 0 ? x->dims[d] : d >= im->b ? im->g->nodes[x->node].dims[d - im->b] : BATCH_DIM;
    for (int d = 0; d < r; d++) {   /* aligned from the right; 1 stretches */
        int e = d - (r - xr), f = d - (r - (int)s->n);
        int64_t a = e >= 0 ? xd[e] : 1, b = f >= 0 ? s->i[f] : 1;
        if (a == BATCH_DIM || b == BATCH_DIM) {
            if ((a != BATCH_DIM && a != 1) || (b != BATCH_DIM && b != 1) || d != 0 || x->node < 0)
                return fail(im, "the batch may only be the first axis of a runtime tensor", NULL);
            dims[d] = BATCH_DIM;
            continue;
        }
        if (a != b && a != 1 && b != 1)
            return fail(im, "the shape does not broadcast with the input", NULL);
        dims[d] = a == 1 ? b : a;
        if (dims[d] < 1)
            return fail(im, "an empty or negative dim is not supported", NULL);
    }
    if (x->node >= 0) {
        if (r != xr)
            return fail(im, "expanding a runtime tensor to a higher rank is not supported", NULL);
        kiln_attrs z = {.dtype = KILN_DT_F32, .rank = r - im->b};
        bool same = true;
        double numel = 1;
        for (int d = im->b; d < r; d++) {
            z.shape[d - im->b] = (int)(dims[d] > (1 << 28) ? 1 << 28 : dims[d]);
            same = same && dims[d] == xd[d];
            numel *= (double)dims[d];
        }
        if (numel > (double)(1 << 28))
            return fail(im, "the result has more than 2^28 elements per example", NULL);
        if (same)
            return define(im, 0, x->node);
        int ids[2] = {x->node, kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &z, kname(im, 1))};
        return ids[1] < 0 ? KILN_ERR_FORMAT
                          : define(im, 0, kiln_graph_add(im->g, KILN_OP_ADD, ids, 2, &(kiln_attrs){0}, kname(im, 0)));
    }
    size_t xs[KILN_ONNX_MAX_RANK];
    int64_t stride[KILN_ONNX_MAX_RANK];
    const_strides(x, xs);
    for (int d = 0; d < r; d++) {   /* aligned from the right; a dim of 1 repeats (stride 0) */
        int e = d - (r - xr);
        stride[d] = e >= 0 && x->dims[e] != 1 ? (int64_t)xs[e] : 0;
    }
    return strided_const(im, r, dims, stride, 0);
}

/* ------------------------------------------------------------------ elementwise math */

static const struct {
    const char *name;
    kiln_op op;
} math_ops[] = {
    {"Add", KILN_OP_ADD}, {"Sub", KILN_OP_SUB}, {"Mul", KILN_OP_MUL}, {"Div", KILN_OP_DIV}, {"Pow", KILN_OP_POW},
    {"Min", KILN_OP_MIN}, {"Max", KILN_OP_MAX}, {"Sum", KILN_OP_ADD}, {"Equal", KILN_OP_EQUAL},
    {"Less", KILN_OP_LESS}, {"Greater", KILN_OP_GREATER}, {"Where", KILN_OP_WHERE}, {"Not", KILN_OP_NOT},
    {"LessOrEqual", KILN_OP_LESS}, {"GreaterOrEqual", KILN_OP_GREATER},
    {"Sqrt", KILN_OP_SQRT}, {"Exp", KILN_OP_EXP}, {"Log", KILN_OP_LOG}, {"Abs", KILN_OP_ABS}, {"Neg", KILN_OP_NEG},
    {"Reciprocal", KILN_OP_RECIPROCAL}, {"Floor", KILN_OP_FLOOR}, {"Ceil", KILN_OP_CEIL}, {"Round", KILN_OP_ROUND},
    {"Erf", KILN_OP_ERF},
};

/* Kiln nodes of inputs 0..n-1 of the current node into ins: runtime tensors of one ONNX rank, and
 * constants of at most that rank (as nodes, a leading batch dim of 1 dropped). */
static kiln_status operand_nodes(importer *im, size_t n, int *ins)
{
    int r = -1;
    for (size_t j = 0; j < n; j++) {
        value *v = in(im, j);
        if (!v)
            return fail(im, "a required input is missing", NULL);
        if (v->node >= 0) {
            if (r >= 0 && onnx_rank(im, v) != r)
                return fail(im, "runtime inputs of different ranks are not supported", NULL);
            r = onnx_rank(im, v);
        }
    }
    for (size_t j = 0; j < n; j++) {
        value *v = in(im, j);
        if (v->node < 0 && v->rank > r)
            return fail(im, "a constant of higher rank than the runtime input (it would move the batch axis) is not "
                        "supported", NULL);
        if ((ins[j] = node_of(im, j, r)) < 0)
            return KILN_ERR_FORMAT;
    }
    return KILN_OK;
}

/* Node x (whole numbers) wrapped into uint8's 0..255, or int8's -128..127, as two's complement
 * arithmetic wraps: y - 256 floor((y + o) / 256) with o 0 or 128. */
static int wrap_8bit(importer *im, int x, bool is_signed)
{
    float o = is_signed ? 128.0f : 0.0f, k = 256.0f, inv = 1.0f / 256.0f;
    kiln_attrs ao = {.dtype = KILN_DT_F32, .values = &o}, ak = {.dtype = KILN_DT_F32, .values = &k};
    kiln_attrs ai = {.dtype = KILN_DT_F32, .values = &inv};
    int c_o = kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &ao, kname(im, 2));
    int c_k = kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &ak, kname(im, 3));
    int c_i = kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &ai, kname(im, 4));
    if (c_o < 0 || c_k < 0 || c_i < 0)
        return -1;
    int a[2] = {x, c_o}, t = kiln_graph_add(im->g, KILN_OP_ADD, a, 2, &(kiln_attrs){0}, kname(im, 5));
    int m[2] = {t, c_i};   /* (exact: a power of two) */
    t = t < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_MUL, m, 2, &(kiln_attrs){0}, kname(im, 6));
    t = t < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_FLOOR, &t, 1, &(kiln_attrs){0}, kname(im, 7));
    int m2[2] = {t, c_k};
    t = t < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_MUL, m2, 2, &(kiln_attrs){0}, kname(im, 8));
    int d[2] = {x, t};
    return t < 0 ? -1 : kiln_graph_add(im->g, KILN_OP_SUB, d, 2, &(kiln_attrs){0}, kname(im, 9));
}

/* Output 0 as not(compare(input 0, input 1)), both constants. */
static kiln_status fold_not_of(importer *im, kiln_op compare)
{
    kiln_status st = fold_values(im, compare, (kiln_attrs){0}, 2);
    value *v = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
    for (size_t k = 0; v && k < v->n; k++)
        v->i[k] = !v->i[k];
    return st;
}

/* Elementwise ops: folded when every input is a constant, else the Kiln op of the same meaning. */
static kiln_status cv_math(importer *im)
{
    kiln_op op = KILN_OP_ADD;
    for (size_t k = 0; k < sizeof math_ops / sizeof math_ops[0]; k++)
        if (strcmp(im->nd->op_type, math_ops[k].name) == 0)
            op = math_ops[k].op;
    size_t n = im->nd->n_input;
    if (only_attrs(im, NULL) || n < 1 || n > KILN_MAX_INPUTS)
        return fail(im, "expected 1 to 8 inputs and no attributes", NULL);
    for (size_t j = 0; j < n; j++)
        if (!in(im, j))
            return fail(im, "a required input is missing", NULL);
    value *x = in(im, 0);
    bool variadic = op == KILN_OP_MIN || op == KILN_OP_MAX || strcmp(im->nd->op_type, "Sum") == 0;
    if (n == 1 && variadic)
        return x->node >= 0 ? define(im, 0, x->node) : copy_const(im);
    bool or_equal = strstr(im->nd->op_type, "OrEqual") != NULL;   /* a <= b is not (a > b) */
    if (all_const(im) && or_equal)
        return fold_not_of(im, op == KILN_OP_LESS ? KILN_OP_GREATER : KILN_OP_LESS);
    if (all_const(im))
        return fold_values(im, op, (kiln_attrs){0}, (int)n);
    int ins[KILN_MAX_INPUTS];
    if (operand_nodes(im, n, ins))
        return KILN_ERR_FORMAT;
    int32_t type = in(im, 0)->type;   /* a carried integer type (the operands' types agree, as ONNX asks) */
    bool ints = in(im, 0)->node >= 0 && int_type(type);
    bool small = type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 || type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
    if (ints && (op == KILN_OP_DIV ? type != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 : !small &&
                 (op == KILN_OP_ADD || op == KILN_OP_SUB || op == KILN_OP_MUL || op == KILN_OP_POW)))
        return fail(im, "integer arithmetic at run time is supported on uint8 and int8 (division: uint8) only", NULL);
    int id = kiln_graph_add(im->g, op, ins, (int)n, &(kiln_attrs){0}, kname(im, 0));
    if (id >= 0 && ints && op == KILN_OP_DIV)   /* integer division: the quotient rounded down */
        id = kiln_graph_add(im->g, KILN_OP_FLOOR, &id, 1, &(kiln_attrs){0}, kname(im, 1));
    if (id >= 0 && ints && small && op != KILN_OP_DIV && op != KILN_OP_MIN && op != KILN_OP_MAX)
        id = wrap_8bit(im, id, type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8);
    kiln_status st = define(im, 0, id);
    value *y = find(im, im->nd->output[0]);
    if (st == KILN_OK && y && ints)
        y->type = type;   /* integers stay integers */
    return st;
}

/* A scalar constant input j as a float into *out (absent: unchanged). */
static kiln_status scalar_input(importer *im, size_t j, float *out, const char *what)
{
    value *v = in(im, j);
    if (!v)
        return KILN_OK;
    if (v->node >= 0 || v->n != 1)
        return fail(im, what, " must be a scalar constant");
    *out = v->is_int ? (float)v->i[0] : v->f[0];
    return KILN_OK;
}

static kiln_status cv_clip(importer *im)
{
    static const char *const k[] = {"min", "max", NULL};
    value *x = in(im, 0);
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    kiln_attrs a = {.lo = attr_float(im, "min", -INFINITY), .hi = attr_float(im, "max", INFINITY)};
    if (scalar_input(im, 1, &a.lo, "min") || scalar_input(im, 2, &a.hi, "max"))
        return KILN_ERR_FORMAT;
    if (a.lo != a.lo || a.hi != a.hi)
        return fail(im, "a NaN bound is not supported", NULL);
    if (a.lo > a.hi)   /* ONNX: every value becomes max */
        a.lo = a.hi;
    if (x->node < 0)
        return fold_values(im, KILN_OP_CLIP, a, 1);
    if (a.lo == 0.0f && a.hi == INFINITY)   /* a relu, which conv and dense fuse */
        return unary(im, KILN_OP_RELU, (kiln_attrs){0});
    if (a.lo == 0.0f && a.hi == 6.0f)
        return unary(im, KILN_OP_RELU6, (kiln_attrs){0});
    return unary(im, KILN_OP_CLIP, a);
}

static kiln_status cv_size(importer *im)
{
    value *x = in(im, 0);
    if (only_attrs(im, NULL) || !x)
        return fail(im, "expected an input", NULL);
    if (x->node >= 0 && im->g->nodes[x->node].batched && im->b)
        return fail(im, "the size of a batched tensor (known only when a session is created) is not supported", NULL);
    int64_t n = x->node >= 0 ? (int64_t)im->g->nodes[x->node].numel : (int64_t)x->n;
    return define_ints(im, 0, NULL, &n, 1);
}

/* Whether ONNX element type t is an integer type. */
static bool int_type(int64_t t)
{
    return t == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 || t == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 ||
           t == ONNX__TENSOR_PROTO__DATA_TYPE__INT16 || t == ONNX__TENSOR_PROTO__DATA_TYPE__UINT16 ||
           t == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || t == ONNX__TENSOR_PROTO__DATA_TYPE__UINT32 ||
           t == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 || t == ONNX__TENSOR_PROTO__DATA_TYPE__UINT64;
}

static kiln_status cv_cast(importer *im)
{
    static const char *const k[] = {"to", "saturate", NULL};
    value *x = in(im, 0), *like = in(im, 1);
    int64_t to = like ? like->type : attr_int(im, "to", -1);   /* CastLike: the type of input 1 */
    if (like && attr(im, "to"))
        return fail(im, "attribute to is not an attribute of CastLike", NULL);
    bool to_float = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || to == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    if (!to_float && !int_type(to) && to != ONNX__TENSOR_PROTO__DATA_TYPE__BOOL)
        return fail(im, "attribute to: only float, double, the integer types and bool are supported", NULL);
    if (x->node < 0) {
        kiln_dtype dt = to_float ? KILN_DT_F32 : to == ONNX__TENSOR_PROTO__DATA_TYPE__BOOL ? KILN_DT_BOOL : KILN_DT_I64;
        kiln_status st = fold_values(im, KILN_OP_CAST, (kiln_attrs){.dtype = dt}, 1);
        value *y = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
        if (y)
            y->type = (int32_t)to;
        return st;
    }
    bool from_int = int_type(x->type);
    if (!to_float && !(from_int && int_type(to)))
        return fail(im, "casting a runtime float tensor to an integer or bool type is not supported", NULL);
    kiln_status st = define(im, 0, x->node);   /* carried integers are f32 already */
    value *y = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
    if (y)
        y->type = to_float ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT : (int32_t)to;
    return st;
}

/* ------------------------------------------------------------------ quantised ops
 * Integer tensors at run time are carried as f32 holding their integer values (exact below
 * 2^24): QuantizeLinear is divide, round half to even, add the zero point and saturate;
 * DequantizeLinear subtracts and scales; the QLinear and Integer ops run their integer products
 * as f32 products of whole numbers and requantise with one multiplier, as ONNX defines them. */

/* The integer range of ONNX type t (UINT8 when t is 0: no zero point given). */
static void qrange(int32_t t, float *lo, float *hi)
{
    bool s8 = t == ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
    *lo = s8 ? -128.0f : 0.0f;
    *hi = s8 ? 127.0f : 255.0f;
}

/* A per-tensor (n 1) or per-axis (n values along ONNX axis ax) constant as a Kiln const node
 * that broadcasts against a runtime tensor of ONNX rank r, holding f(v[k]). */
static int axis_const(importer *im, const float *v, size_t n, int64_t ax, int r)
{
    kiln_attrs a = {.dtype = KILN_DT_F32, .rank = 0, .values = v};
    if (n > 1) {
        int k = axis_in(im, ax, r);
        if (k < 0)
            return fail(im, "a per-axis scale along the batch axis is not supported", NULL), -1;
        a.rank = r - im->b - k;
        a.shape[0] = (int)n;
        for (int d = 1; d < a.rank; d++)
            a.shape[d] = 1;
    }
    return kiln_graph_add(im->g, KILN_OP_CONST, NULL, 0, &a, kname(im, 7));
}

/* Scale (input j) and zero point (input j + 1, may be absent) as n floats each (1, or one per
 * index of axis ax of a tensor whose dims are given). */
static kiln_status qparams(importer *im, size_t j, float **scale, float **zp, size_t *n, int32_t *type)
{
    value *s = in(im, j), *z = in(im, j + 1);
    if (!s || s->node >= 0 || s->is_int || s->n < 1 || (z && (z->node >= 0 || !z->is_int || z->n != s->n)))
        return fail(im, "the scale must be a float constant and the zero point an integer constant of as many "
                    "values", NULL);
    *n = s->n;
    *type = z ? z->type : ONNX__TENSOR_PROTO__DATA_TYPE__UINT8;
    *scale = malloc(s->n * sizeof(float));
    *zp = malloc(s->n * sizeof(float));
    if (!*scale || !*zp)
        return free(*scale), free(*zp), kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (size_t k = 0; k < s->n; k++) {
        (*scale)[k] = s->f[k];
        (*zp)[k] = z ? (float)z->i[k] : 0.0f;
        if (!(s->f[k] > 0) || !isfinite(s->f[k]))
            return free(*scale), free(*zp), fail(im, "a scale is not a positive finite number", NULL);
    }
    return KILN_OK;
}

/* The index along ONNX axis ax of element k of constant x (n > 1: per-axis parameters). */
static size_t axis_index(const value *x, int64_t ax, size_t k)
{
    size_t inner = 1;
    for (int d = (int)ax + 1; d < x->rank; d++)
        inner *= (size_t)x->dims[d];
    return k / inner % (size_t)x->dims[ax];
}

/* Node x then op with a constant of n values along ONNX axis ax: a new node, or -1. */
static int with_const(importer *im, int x, kiln_op op, const float *v, size_t n, int64_t ax, int r, int k)
{
    int c = axis_const(im, v, n, ax, r);
    if (c < 0)
        return -1;
    int ins[2] = {x, c};
    return kiln_graph_add(im->g, op, ins, 2, &(kiln_attrs){0}, kname(im, k));
}

/* Requantises node x by multipliers mul (n of them along axis ax; NULL: none), then rounds, adds
 * the zero points (n) and saturates: output 0 of the current node, of ONNX type type. */
static kiln_status requantise(importer *im, int x, const float *mul, const float *zp, size_t n, int64_t ax, int r,
                              int32_t type)
{
    float lo, hi;
    qrange(type, &lo, &hi);
    bool any_zp = false;
    for (size_t k = 0; k < n; k++)
        any_zp = any_zp || zp[k] != 0.0f;
    int id = mul ? with_const(im, x, KILN_OP_MUL, mul, n, ax, r, 1) : x;
    if (id >= 0)
        id = kiln_graph_add(im->g, KILN_OP_ROUND, &id, 1, &(kiln_attrs){0}, kname(im, 2));
    if (id >= 0 && any_zp)
        id = with_const(im, id, KILN_OP_ADD, zp, n, ax, r, 3);
    if (id >= 0)
        id = kiln_graph_add(im->g, KILN_OP_CLIP, &id, 1, &(kiln_attrs){.lo = lo, .hi = hi}, kname(im, 4));
    kiln_status st = define(im, 0, id);
    value *y = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
    if (y)
        y->type = type;
    return st;
}

static kiln_status cv_quantize(importer *im)
{
    static const char *const k[] = {"axis", "saturate", NULL};
    value *x = in(im, 0);
    float *scale, *zp, lo, hi;
    size_t n;
    int32_t type;
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    if (qparams(im, 1, &scale, &zp, &n, &type))
        return KILN_ERR_FORMAT;
    if (type != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 && type != ONNX__TENSOR_PROTO__DATA_TYPE__INT8) {
        free(scale), free(zp);
        return fail(im, "only uint8 and int8 zero points are supported", NULL);
    }
    qrange(type, &lo, &hi);
    int r = x->node >= 0 ? onnx_rank(im, x) : x->rank;
    int64_t ax = attr_int(im, "axis", 1);
    ax = ax < 0 ? ax + r : ax;
    kiln_status st = KILN_OK;
    if (n > 1 && (ax < 0 || ax >= r || (x->node < 0 && (size_t)x->dims[ax] != n) ||
                  (x->node >= 0 && (ax < im->b || (size_t)im->g->nodes[x->node].dims[ax - im->b] != n))))
        st = fail(im, "the per-axis scale's length does not match attribute axis", NULL);
    else if (x->node < 0 && x->is_int)
        st = fail(im, "the input must be float", NULL);
    else if (x->node < 0) {   /* weights: quantised here */
        value *v = new_const(im, 0, KILN_DT_I64, x->rank, x->dims);
        x = in(im, 0);
        for (size_t e = 0; v && e < v->n; e++) {
            size_t c = n > 1 ? axis_index(x, ax, e) : 0;
            float q = nearbyintf(x->f[e] / scale[c]) + zp[c];
            v->i[e] = (int64_t)(q < lo ? lo : q > hi ? hi : q);
        }
        if (v)
            v->type = type;
        st = v ? KILN_OK : KILN_ERR_FORMAT;
    } else {
        int id = with_const(im, x->node, KILN_OP_DIV, scale, n, ax, r, 6);   /* x / s as ONNX: a divide */
        st = id < 0 ? KILN_ERR_FORMAT : requantise(im, id, NULL, zp, n, ax, r, type);
    }
    free(scale);
    free(zp);
    return st;
}

static kiln_status cv_dequantize(importer *im)
{
    static const char *const k[] = {"axis", NULL};
    value *x = in(im, 0);
    float *scale, *zp;
    size_t n;
    int32_t type;
    if (only_attrs(im, k) || !x)
        return fail(im, "expected an input", NULL);
    if (qparams(im, 1, &scale, &zp, &n, &type))
        return KILN_ERR_FORMAT;
    int r = x->node >= 0 ? onnx_rank(im, x) : x->rank;
    int64_t ax = attr_int(im, "axis", 1);
    ax = ax < 0 ? ax + r : ax;
    kiln_status st = KILN_OK;
    if (n > 1 && (ax < 0 || ax >= r || (x->node < 0 && (size_t)x->dims[ax] != n) ||
                  (x->node >= 0 && (ax < im->b || (size_t)im->g->nodes[x->node].dims[ax - im->b] != n))))
        st = fail(im, "the per-axis scale's length does not match attribute axis", NULL);
    else if (x->node < 0) {   /* weights: f32 here (Kiln quantises them again with its own scheme) */
        value *v = new_const(im, 0, KILN_DT_F32, x->rank, x->dims);
        x = in(im, 0);
        for (size_t e = 0; v && e < v->n; e++) {
            size_t c = n > 1 ? axis_index(x, ax, e) : 0;
            v->f[e] = ((x->is_int ? (float)x->i[e] : x->f[e]) - zp[c]) * scale[c];
        }
        st = v ? KILN_OK : KILN_ERR_FORMAT;
    } else {
        bool any_zp = false;
        for (size_t c = 0; c < n; c++)
            any_zp = any_zp || zp[c] != 0.0f;
        int id = any_zp ? with_const(im, x->node, KILN_OP_SUB, zp, n, ax, r, 1) : x->node;
        if (id >= 0)
            id = with_const(im, id, KILN_OP_MUL, scale, n, ax, r, 2);
        st = define(im, 0, id);
    }
    free(scale);
    free(zp);
    return st;
}

/* Constant input j minus its zero point (input zj, absent: 0; per-axis along ONNX axis ax) as a
 * new float value *out (owned by the caller: free out->f). */
static kiln_status shifted_weight(importer *im, size_t j, size_t zj, int64_t ax, value *out)
{
    value *w = in(im, j), *z = in(im, zj);
    if (!w || w->node >= 0 || !w->is_int || (z && (z->node >= 0 || !z->is_int)))
        return fail(im, "the weight and its zero point must be integer constants", NULL);
    size_t per = z ? z->n : 1;
    if (per > 1 && (ax >= w->rank || (size_t)w->dims[ax] != per))
        return fail(im, "the weight's zero points do not match its output channels", NULL);
    *out = *w;
    out->i = NULL;
    out->is_int = false;
    if (!(out->f = malloc((w->n ? w->n : 1) * sizeof(float))))
        return kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (size_t e = 0; e < w->n; e++)
        out->f[e] = (float)(w->i[e] - (z ? z->i[per > 1 ? axis_index(w, ax, e) : 0] : 0));
    return KILN_OK;
}

/* Runtime input 0 minus its zero point (input zj, a scalar constant; absent: 0): a node, or -1. */
static int shifted_input(importer *im, size_t zj)
{
    value *x = in(im, 0), *z = in(im, zj);
    if (!x || x->node < 0)
        return fail(im, "expected a runtime input", NULL), -1;
    if (!z || (z->is_int && z->n == 1 && z->i[0] == 0))
        return x->node;
    if (z->node >= 0 || !z->is_int || z->n != 1)
        return fail(im, "the input's zero point must be a scalar integer constant", NULL), -1;
    float v = (float)z->i[0];
    return with_const(im, x->node, KILN_OP_SUB, &v, 1, 0, onnx_rank(im, x), 5);
}

/* The multipliers of a QLinear op, in_scale * w_scale[c] / out_scale, and the output zero point
 * repeated, n of each (n: the weight's scales); the output's ONNX type into *type. */
static kiln_status qlinear_out(importer *im, size_t in_s, size_t w_s, size_t out_s, float **mul, float **zp,
                               size_t *n, int32_t *type)
{
    float *xs, *xz, *ws, *wz, *ys, *yz;
    size_t nx, nw, ny;
    int32_t t;
    if (qparams(im, in_s, &xs, &xz, &nx, &t))
        return KILN_ERR_FORMAT;
    if (qparams(im, w_s, &ws, &wz, &nw, &t)) {
        free(xs), free(xz);
        return KILN_ERR_FORMAT;
    }
    if (qparams(im, out_s, &ys, &yz, &ny, type)) {
        free(xs), free(xz), free(ws), free(wz);
        return KILN_ERR_FORMAT;
    }
    kiln_status st = KILN_OK;
    if (nx != 1 || ny != 1)
        st = fail(im, "the input's and output's scales must be scalars", NULL);
    *mul = malloc(nw * sizeof(float));
    *zp = malloc(nw * sizeof(float));
    if (st == KILN_OK && (!*mul || !*zp))
        st = kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (size_t c = 0; st == KILN_OK && c < nw; c++) {
        (*mul)[c] = xs[0] * ws[c] / ys[0];
        (*zp)[c] = yz[0];
    }
    *n = nw;
    free(xs), free(xz), free(ws), free(wz), free(ys), free(yz);
    if (st != KILN_OK) {
        free(*mul), free(*zp);
        *mul = *zp = NULL;
    }
    return st;
}

/* The int32 bias input j of a QLinearConv as floats (NULL if absent; *bad on error). */
static float *int_bias(importer *im, size_t j, size_t units, bool *bad)
{
    value *b = in(im, j);
    *bad = false;
    if (!b)
        return NULL;
    if (b->node >= 0 || !b->is_int || b->n != units) {
        *bad = true;
        return fail(im, "the bias must be an integer constant of one value per output channel", NULL), NULL;
    }
    float *f = malloc(units * sizeof(float) + 1);
    for (size_t c = 0; f && c < units; c++)
        f[c] = (float)b->i[c];
    *bad = !f;
    return f;
}

static kiln_status cv_qlinear_conv(importer *im)
{
    if (!conv_input(im))
        return KILN_ERR_FORMAT;
    value w = {0};
    float *mul = NULL, *zp = NULL, *bias = NULL;
    size_t n = 0;
    int32_t type;
    bool bad = false;
    kiln_status st = shifted_weight(im, 3, 5, 0, &w);
    if (st == KILN_OK)
        st = qlinear_out(im, 1, 4, 6, &mul, &zp, &n, &type);
    if (st == KILN_OK && n != 1 && (int64_t)n != w.dims[0])
        st = fail(im, "the weight's scales do not match its output channels", NULL);
    if (st == KILN_OK && (bias = int_bias(im, 8, (size_t)w.dims[0], &bad), bad))
        st = KILN_ERR_FORMAT;
    int xs = st == KILN_OK ? shifted_input(im, 2) : -1;
    int id = xs >= 0 ? conv_node(im, xs, &w, bias) : -1;
    if (st == KILN_OK)
        st = id < 0 ? KILN_ERR_FORMAT : requantise(im, id, mul, zp, n, 1, 4, type);
    free(w.f), free(mul), free(zp), free(bias);
    return st;
}

static kiln_status cv_conv_integer(importer *im)
{
    if (!conv_input(im))
        return KILN_ERR_FORMAT;
    value w = {0};
    kiln_status st = shifted_weight(im, 1, 3, 0, &w);
    int xs = st == KILN_OK ? shifted_input(im, 2) : -1;
    if (st == KILN_OK)
        st = define(im, 0, xs < 0 ? -1 : conv_node(im, xs, &w, NULL));
    value *y = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
    if (y)
        y->type = ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    free(w.f);
    return st;
}

/* MatMulInteger and QLinearMatMul: a runtime left operand by a constant 2-d right one. */
static kiln_status cv_qmatmul(importer *im)
{
    bool qlinear = strcmp(im->nd->op_type, "QLinearMatMul") == 0;
    value *x = in(im, 0);
    if (only_attrs(im, NULL) || !x || x->node < 0 || onnx_rank(im, x) < 2)
        return fail(im, "expected a runtime left operand of rank 2 or more", NULL);
    value w = {0};
    float *mul = NULL, *zp = NULL;
    size_t n = 1;
    int32_t type = ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
    kiln_status st = shifted_weight(im, qlinear ? 3 : 1, qlinear ? 5 : 3, 1, &w);
    if (st == KILN_OK && w.rank != 2)
        st = fail(im, "the right operand must be a 2-d constant", NULL);
    if (st == KILN_OK && qlinear)
        st = qlinear_out(im, 1, 4, 6, &mul, &zp, &n, &type);
    if (st == KILN_OK && n != 1 && (int64_t)n != w.dims[1])
        st = fail(im, "the right operand's scales do not match its columns", NULL);
    int xs = st == KILN_OK ? shifted_input(im, 2) : -1;
    int id = xs >= 0 ? linear_node(im, xs, &w, true, 1.0f, NULL, 1.0f) : -1;
    if (st == KILN_OK && qlinear)
        st = id < 0 ? KILN_ERR_FORMAT : requantise(im, id, mul, zp, n, onnx_rank(im, x) - 1, onnx_rank(im, x), type);
    else if (st == KILN_OK) {
        st = define(im, 0, id);
        value *y = st == KILN_OK ? find(im, im->nd->output[0]) : NULL;
        if (y)
            y->type = type;
    }
    free(w.f), free(mul), free(zp);
    return st;
}

/* ------------------------------------------------------------------ resize */

/* Resize of (N, C, H, W) over H and W: nearest (any rounding) or linear, with the half-pixel,
 * PyTorch half-pixel, asymmetric or align-corners coordinates. */
static kiln_status cv_resize(importer *im)
{
    static const char *const k[] = {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a",
                                    "exclude_outside", "extrapolation_value", NULL};
    static const char *const modes[] = {"nearest", "linear", "cubic", NULL};
    static const char *const coords[] = {"half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners", NULL};
    static const char *const roundings[] = {"floor", "round_prefer_floor", "round_prefer_ceil", "ceil", NULL};
    value *x = in(im, 0), *scales = in(im, 2), *sizes = in(im, 3);
    if (only_attrs(im, k))
        return KILN_ERR_FORMAT;
    if (!x || x->node < 0 || onnx_rank(im, x) != 4)
        return fail(im, "expected a runtime (N, C, H, W) input", NULL);
    int mode = str_attr_index(im, "mode", "nearest", modes);
    int coord = str_attr_index(im, "coordinate_transformation_mode", "half_pixel", coords);
    int rounding = str_attr_index(im, "nearest_mode", "round_prefer_floor", roundings);
    if (mode < 0)
        return fail(im, "attribute mode is not one of ONNX's", NULL);
    if (coord < 0)
        return fail(im, "attribute coordinate_transformation_mode: only half_pixel, pytorch_half_pixel, asymmetric "
                    "and align_corners are supported", NULL);
    if (rounding < 0)
        return fail(im, "attribute nearest_mode is not one of ONNX's", NULL);
    if (scales && scales->n == 0)
        scales = NULL;   /* (an empty scales beside sizes) */
    if (!!scales == !!sizes || (scales && (scales->node >= 0 || scales->is_int || scales->n != 4)) ||
        (sizes && (sizes->node >= 0 || !sizes->is_int || sizes->n != 4)))
        return fail(im, "expected scales (4 floats) or sizes (4 int64), constants, one of them", NULL);
    const kiln_node *xn = &im->g->nodes[x->node];
    kiln_attrs a = {.mode = mode, .coord = coord == 0 ? 1 : coord == 1 ? 4 : coord, .rounding = mode == 0 ? rounding : 0};
    if (mode == 2) {   /* bicubic */
        a.cubic_a = attr_float(im, "cubic_coeff_a", -0.75f);
        a.exclude = attr_int(im, "exclude_outside", 0) != 0;
    } else if (attr_int(im, "exclude_outside", 0)) {
        return fail(im, "attribute exclude_outside applies to cubic only", NULL);
    }
    if (scales ? scales->f[0] != 1.0f || scales->f[1] != 1.0f
               : (sizes->i[0] != BATCH_DIM && sizes->i[0] != 0 && sizes->i[0] != 1) || sizes->i[1] != xn->dims[0])
        return fail(im, "resizing the batch or channel axes is not supported", NULL);
    for (int d = 0; d < 2; d++) {
        if (scales) {
            a.scale[d] = scales->f[2 + d];
            if (!(a.scale[d] > 0) || a.scale[d] * (float)xn->dims[1 + d] > 1e6f)
                return fail(im, "a scale is not positive or too large", NULL);
        } else {
            if (sizes->i[2 + d] < 1 || sizes->i[2 + d] > 1000000)
                return fail(im, "a size is out of 1..10^6", NULL);
            a.size[d] = (int)sizes->i[2 + d];
        }
    }
    int id = kiln_graph_add(im->g, KILN_OP_UPSAMPLE, &x->node, 1, &a, kname(im, 0));
    if (id >= 0 && im->g->nodes[id].numel > (1u << 28))
        return fail(im, "the output has more than 2^28 elements per example", NULL);
    return define(im, 0, id);
}

/* ------------------------------------------------------------------ the table and the walk */

static const struct {
    const char *op;
    convert_fn fn;
} converters[] = {
    {"Relu", cv_relu}, {"Sigmoid", cv_sigmoid}, {"Tanh", cv_tanh}, {"LeakyRelu", cv_leaky},
    {"Softmax", cv_softmax}, {"LogSoftmax", cv_softmax}, {"Identity", cv_identity}, {"Dropout", cv_identity},
    {"Conv", cv_conv}, {"MaxPool", cv_pool}, {"AveragePool", cv_pool}, {"GlobalAveragePool", cv_global_avgpool},
    {"Flatten", cv_flatten}, {"Gemm", cv_gemm}, {"MatMul", cv_matmul}, {"BatchNormalization", cv_batchnorm},
    {"Concat", cv_concat_any}, {"Transpose", cv_transpose}, {"Reshape", cv_reshape}, {"Constant", cv_constant},
    {"Shape", cv_shape}, {"Gather", cv_gather}, {"Unsqueeze", cv_squeeze}, {"Squeeze", cv_squeeze},
    {"Pad", cv_pad}, {"LayerNormalization", cv_layernorm}, {"ReduceMean", cv_reduce}, {"ReduceSum", cv_reduce},
    {"Slice", cv_slice}, {"ConvTranspose", cv_conv_transpose}, {"Split", cv_split}, {"Clip", cv_clip},
    {"Cast", cv_cast}, {"ConstantOfShape", cv_constant_of_shape}, {"Range", cv_range}, {"Expand", cv_expand},
    {"Resize", cv_resize}, {"QuantizeLinear", cv_quantize}, {"DequantizeLinear", cv_dequantize},
    {"QLinearConv", cv_qlinear_conv}, {"ConvInteger", cv_conv_integer}, {"QLinearMatMul", cv_qmatmul},
    {"MatMulInteger", cv_qmatmul},
    {"Add", cv_math}, {"Sub", cv_math}, {"Mul", cv_math}, {"Div", cv_math}, {"Pow", cv_math}, {"Min", cv_math},
    {"Max", cv_math}, {"Sum", cv_math}, {"Equal", cv_math}, {"Less", cv_math}, {"Greater", cv_math},
    {"Where", cv_math}, {"Not", cv_math}, {"Sqrt", cv_math}, {"Exp", cv_math}, {"Log", cv_math}, {"Abs", cv_math},
    {"Neg", cv_math}, {"Reciprocal", cv_math}, {"Floor", cv_math}, {"Ceil", cv_math}, {"Round", cv_math},
    {"Erf", cv_math}, {"LessOrEqual", cv_math}, {"GreaterOrEqual", cv_math}, {"Size", cv_size},
    {"CastLike", cv_cast},
};

/* The graph inputs that are not initializers, as Kiln inputs. */
static kiln_status add_inputs(importer *im, const Onnx__GraphProto *gp)
{
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (find(im, vi->name))
            continue;   /* an initializer listed as an input */
        const Onnx__TypeProto__Tensor *tt = vi->type ? vi->type->tensor_type : NULL;
        if (!tt || !tt->shape || tt->shape->n_dim < (size_t)im->b || tt->shape->n_dim > (size_t)KILN_MAX_RANK + im->b)
            return kiln_error(KILN_ERR_FORMAT, "%s: input \"%s\": expected a tensor with a known rank 1..7 (the batch "
                              "first)", im->origin, vi->name);
        /* FLOAT; UINT8 and INT8 carried as f32 (the quantised ops); INT32 and INT64 as Kiln's i32
         * indices when a Gather reads them first (an embedding's), else carried as f32 too */
        int32_t et = tt->has_elem_type ? tt->elem_type : -1;
        bool carried = et == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 || et == ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
        bool ints = et == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 || et == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        int reader = kiln_name_map_get(&im->reader, vi->name);   /* indices: the first reader gathers by it */
        bool index = ints && reader >= 0 && strcmp(gp->node[reader]->op_type, "Gather") == 0 &&
                     gp->node[reader]->n_input > 1 && strcmp(gp->node[reader]->input[1], vi->name) == 0;
        carried = carried || (ints && !index);
        if (et != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && !carried && !index)
            return kiln_error(KILN_ERR_FORMAT, "%s: input \"%s\": elem_type: expected FLOAT, UINT8, INT8, INT32 or "
                              "INT64, found %d", im->origin, vi->name, (int)et);
        int dims[KILN_MAX_RANK], r = (int)tt->shape->n_dim - im->b;
        for (int d = 0; d < r; d++) {
            const Onnx__TensorShapeProto__Dimension *dm = tt->shape->dim[d + im->b];
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
        if ((v->node = kiln_graph_input_nd(im->g, name, index ? KILN_DT_I32 : KILN_DT_F32, r, dims)) < 0)
            return KILN_ERR_FORMAT;
        v->type = et;
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

/* Whether an ONNX op maps to one of Kiln's image ops, which take (C, H, W) per example. */
static bool image_op(const char *op)
{
    static const char *const ops[] = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
                                      "BatchNormalization", "Resize", "QLinearConv", "ConvInteger", NULL};
    for (int k = 0; ops[k]; k++)
        if (strcmp(op, ops[k]) == 0)
            return true;
    return false;
}

/* Runs the importer over m's initializers, inputs and nodes into im (im->g created); whole takes
 * every graph input whole (its first dim not a batch). */
static kiln_status import_nodes(importer *im, const kiln_onnx_model *m, bool whole)
{
    *im = (importer){.m = m, .origin = kiln_onnx_origin(m), .g = kiln_graph_create(), .b = !whole};
    const Onnx__GraphProto *gp = kiln_onnx_graph(m);
    kiln_status st = im->g ? KILN_OK : KILN_ERR_NOMEM;
    for (size_t i = 0; i < gp->n_initializer && st == KILN_OK; i++) {
        value *v = add_value(im, gp->initializer[i]->name);
        st = v ? const_from_tensor(im, v, gp->initializer[i]) : KILN_ERR_NOMEM;
    }
    if (st == KILN_OK && !(im->fused = malloc((gp->n_node + 1) * sizeof(int))))
        st = kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    for (size_t i = 0; i < gp->n_node && st == KILN_OK; i++) {   /* who reads what */
        im->fused[i] = -1;
        for (size_t j = 0; j < gp->node[i]->n_input; j++) {
            const char *name = gp->node[i]->input[j];
            int r = *name ? kiln_name_map_put(&im->reader, name, (int)i) : 0;
            if (r < 0 || (r == 1 && kiln_name_map_put(&im->shared, name, 1) < 0))
                st = kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
        }
    }
    for (size_t k = 0; k < gp->n_output && st == KILN_OK; k++)
        if (kiln_name_map_put(&im->shared, gp->output[k]->name, 1) < 0)
            st = kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im->origin);
    if (st == KILN_OK)
        st = add_inputs(im, gp);
    for (size_t i = 0; i < gp->n_node && st == KILN_OK; i++) {
        im->nd = gp->node[i];
        snprintf(im->node_name, sizeof im->node_name, "%.70s",
                 im->nd->name && *im->nd->name ? im->nd->name : im->nd->op_type);
        im->one_d = false;
        if (im->fused[i] >= 0) {   /* an Add whose bias a linear took */
            st = define(im, 0, im->fused[i]);
            continue;
        }
        convert_fn fn = NULL;
        for (size_t k = 0; k < sizeof converters / sizeof converters[0] && !fn; k++)
            if (strcmp(converters[k].op, im->nd->op_type) == 0)
                fn = converters[k].fn;
        if (!fn) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": op %s is not supported", im->origin, im->node_name,
                            im->nd->op_type);
            break;
        }
        if (whole && image_op(im->nd->op_type)) {   /* Kiln's image ops take (C, H, W) examples */
            st = kiln_error(KILN_ERR_FORMAT, "%s: node \"%s\": op %s needs the batch as the first axis", im->origin,
                            im->node_name, im->nd->op_type);
            break;
        }
        if ((st = fn(im)) != KILN_OK && !strstr(kiln_last_error(), im->origin)) {   /* a shape error from the IR */
            char why[400];
            snprintf(why, sizeof why, "%s", kiln_last_error());
            kiln_error(st, "%s: node \"%s\": %s: %s", im->origin, im->node_name, im->nd->op_type, why);
        }
    }
    return st;
}

/* Frees what the importer holds (not the graph). */
static void importer_free(importer *im)
{
    for (size_t k = 0; k < im->n; k++)
        free(im->v[k].f), free(im->v[k].i);
    free(im->v);
    free(im->fused);
    kiln_name_map_free(&im->index);
    kiln_name_map_free(&im->reader);
    kiln_name_map_free(&im->shared);
}

kiln_graph_t *kiln_onnx_import(const kiln_onnx_model *m)
{
    return kiln_onnx_import_whole(m, false);
}

kiln_graph_t *kiln_onnx_import_whole(const kiln_onnx_model *m, bool whole)
{
    importer im;
    const Onnx__GraphProto *gp = kiln_onnx_graph(m);
    kiln_status st = import_nodes(&im, m, whole);
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
    importer_free(&im);
    if (st != KILN_OK) {
        kiln_graph_free(im.g);
        return NULL;
    }
    return im.g;
}

kiln_status kiln_onnx_const_outputs(const kiln_onnx_model *m, float **out, size_t *count, size_t n)
{
    importer im;
    const Onnx__GraphProto *gp = kiln_onnx_graph(m);
    kiln_status st = import_nodes(&im, m, false);
    for (size_t k = 0; k < n; k++)
        out[k] = NULL;
    for (size_t k = 0; k < n && st == KILN_OK; k++) {
        value *v = k < gp->n_output ? find(&im, gp->output[k]->name) : NULL;
        if (!v || v->node >= 0) {
            st = kiln_error(KILN_ERR_FORMAT, "%s: output %zu: expected a constant", im.origin, k);
            break;
        }
        if (!(out[k] = malloc((v->n ? v->n : 1) * sizeof(float)))) {
            st = kiln_error(KILN_ERR_NOMEM, "out of memory importing %s", im.origin);
            break;
        }
        for (size_t e = 0; e < v->n; e++)
            out[k][e] = v->is_int ? (float)v->i[e] : v->f[e];
        count[k] = v->n;
    }
    importer_free(&im);
    kiln_graph_free(im.g);
    if (st != KILN_OK)
        for (size_t k = 0; k < n; k++)
            free(out[k]), out[k] = NULL;
    return st;
}
