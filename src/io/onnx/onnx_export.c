/* ONNX export (docs/ONNX.md, "Writing"): a model's optimised graph as an opset-17 ONNX model.
 * Each Kiln op becomes one or a few ONNX nodes (a fused activation is a node after its producer;
 * attention, rmsnorm, gelu and silu are decomposed); the batch is the symbolic first dim "N" of
 * inputs and outputs; weights become initializers. An int8 model is written in QDQ form:
 * QuantizeLinear/DequantizeLinear pairs with Kiln's own scales and zero points around each int8
 * product (u8 activations, int8 weights per output channel, int32 biases), so that a runtime
 * reproduces Kiln's integer arithmetic. An op with no ONNX form here is refused by name. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "core/op_table.h"
#include "infer/runtime.h"
#include "io/atomic_file.h"
#include "io/onnx/onnx_read.h"

enum { EXPORT_OPSET = 17 };

/* Everything the message points at, freed together. */
typedef struct {
    void **ptr;
    size_t n, cap;
    bool nomem;
} pool;

/* Keeps x (freed with the pool); NULL (and x freed) when x is NULL or the pool cannot grow. */
static void *pool_keep(pool *p, void *x)
{
    if (!x || p->nomem) {
        p->nomem = true;
        free(x);
        return NULL;
    }
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 256;
        void **q = realloc(p->ptr, cap * sizeof *q);
        if (!q) {
            p->nomem = true;
            free(x);
            return NULL;
        }
        p->ptr = q;
        p->cap = cap;
    }
    return p->ptr[p->n++] = x;
}

/* Zeroed bytes kept by the pool. */
static void *pool_alloc(pool *p, size_t bytes)
{
    return pool_keep(p, calloc(1, bytes ? bytes : 1));
}

/* A formatted string kept by the pool. */
static char *pool_fmt(pool *p, const char *fmt, ...)
{
    char buf[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = pool_alloc(p, strlen(buf) + 1);
    if (s)
        strcpy(s, buf);
    return s;
}

typedef struct {
    pool p;
    const kiln_graph_t *g;
    const kiln_qmodel *q;   /* NULL for fp32 models */
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    char **name;   /* per Kiln node: the ONNX value holding its output (fp32, or token ids) */
} exporter;

/* Makes room for element n of *arr. */
static bool grow(pool *p, void ***arr, size_t n, size_t *cap)
{
    if (n < *cap)
        return true;
    size_t c = *cap ? 2 * *cap : 64;
    void **q = realloc(*arr, c * sizeof *q);
    if (!q)
        return p->nomem = true, false;
    *arr = q;
    *cap = c;
    return true;
}

/* The name "NODE.suffix" of a value helping to export nd. */
static char *sub(exporter *e, const kiln_node *nd, const char *suffix)
{
    return pool_fmt(&e->p, "%s.%s", nd->name, suffix);
}

/* A new initializer of data type dt, name and dims (copied) holding bytes of raw data (copied),
 * appended to the graph; its name, or NULL when out of memory. */
static const char *init_raw(exporter *e, const char *name, int32_t dt, int rank, const int64_t *dims,
                            const void *data, size_t bytes)
{
    Onnx__TensorProto *t = pool_alloc(&e->p, sizeof *t);
    int64_t *d = pool_alloc(&e->p, (size_t)(rank ? rank : 1) * sizeof(int64_t));
    uint8_t *raw = pool_alloc(&e->p, bytes);
    char *nm = pool_fmt(&e->p, "%s", name);
    if (!t || !d || !raw || !nm || !grow(&e->p, (void ***)&e->inits, e->n_inits, &e->cap_inits))
        return NULL;
    onnx__tensor_proto__init(t);
    if (rank)
        memcpy(d, dims, (size_t)rank * sizeof(int64_t));
    memcpy(raw, data, bytes);
    t->name = nm;
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dt;
    t->has_raw_data = 1;
    t->raw_data.len = bytes;
    t->raw_data.data = raw;
    e->inits[e->n_inits++] = t;
    return t->name;
}

/* Elements of a tensor of the given dims. */
static size_t count_of(int rank, const int64_t *dims)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    return n;
}

/* A float initializer of the given dims; its name. */
static const char *init_f32(exporter *e, const char *name, int rank, const int64_t *dims, const float *v)
{
    return init_raw(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims, v, count_of(rank, dims) * sizeof(float));
}

/* A float scalar initializer; its name. */
static const char *init_scalar(exporter *e, const char *name, float v)
{
    return init_f32(e, name, 0, NULL, &v);
}

/* An int64 vector initializer of n values; its name. */
static const char *init_i64(exporter *e, const char *name, int n, const int64_t *v)
{
    int64_t dims[1] = {n};
    return init_raw(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims, v, (size_t)n * sizeof(int64_t));
}

/* Appends a node of op with inputs (n_in names, "" for an omitted optional one) and one output
 * named out; NULL when out of memory. */
static Onnx__NodeProto *emit(exporter *e, const char *op, const char *const *in, int n_in, const char *out)
{
    Onnx__NodeProto *nd = pool_alloc(&e->p, sizeof *nd);
    char **ins = pool_alloc(&e->p, (size_t)n_in * sizeof(char *)), **outs = pool_alloc(&e->p, sizeof(char *));
    if (!nd || !ins || !outs || !out || !grow(&e->p, (void ***)&e->nodes, e->n_nodes, &e->cap_nodes))
        return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i])
            return e->p.nomem = true, NULL;
    onnx__node_proto__init(nd);
    for (int i = 0; i < n_in; i++)
        ins[i] = (char *)in[i];
    outs[0] = (char *)out;
    nd->op_type = (char *)op;
    nd->n_input = (size_t)n_in;
    nd->input = ins;
    nd->n_output = 1;
    nd->output = outs;
    nd->name = (char *)out;
    e->nodes[e->n_nodes++] = nd;
    return nd;
}

/* emit for one input. */
static Onnx__NodeProto *emit1(exporter *e, const char *op, const char *x, const char *out)
{
    return emit(e, op, &x, 1, out);
}

/* emit for two inputs. */
static Onnx__NodeProto *emit2(exporter *e, const char *op, const char *x, const char *y, const char *out)
{
    const char *in[2] = {x, y};
    return emit(e, op, in, 2, out);
}

/* A new attribute of nd, appended to its list; NULL when out of memory (or nd is NULL). */
static Onnx__AttributeProto *new_attr(exporter *e, Onnx__NodeProto *nd, const char *name,
                                      Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = pool_alloc(&e->p, sizeof *a);
    Onnx__AttributeProto **as = pool_alloc(&e->p, ((nd ? nd->n_attribute : 0) + 1) * sizeof *as);
    if (!nd || !a || !as)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    if (nd->n_attribute)
        memcpy(as, nd->attribute, nd->n_attribute * sizeof *as);
    as[nd->n_attribute++] = a;
    nd->attribute = as;
    return a;
}

/* Adds an INTS attribute (list) or an INT one (v[0]) to nd. */
static void attr_ints(exporter *e, Onnx__NodeProto *nd, const char *name, const int64_t *v, int n, bool list)
{
    Onnx__AttributeProto *a = new_attr(e, nd, name, list ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS
                                                         : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    int64_t *vals = list ? pool_alloc(&e->p, (size_t)n * sizeof(int64_t)) : NULL;
    if (!a || (list && !vals))
        return;
    if (list) {
        memcpy(vals, v, (size_t)n * sizeof(int64_t));
        a->n_ints = (size_t)n;
        a->ints = vals;
    } else {
        a->has_i = 1;
        a->i = v[0];
    }
}

/* Adds an INT attribute to nd. */
static void attr_int(exporter *e, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    attr_ints(e, nd, name, &v, 1, false);
}

/* Adds a FLOAT attribute to nd. */
static void attr_float(exporter *e, Onnx__NodeProto *nd, const char *name, float v)
{
    Onnx__AttributeProto *a = new_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

/* Adds a STRING attribute (v, a literal) to nd. */
static void attr_str(exporter *e, Onnx__NodeProto *nd, const char *name, const char *v)
{
    Onnx__AttributeProto *a = new_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING);
    if (a) {
        a->has_s = 1;
        a->s.len = strlen(v);
        a->s.data = (uint8_t *)v;
    }
}

/* The ONNX value of input j of nd. */
static const char *in_name(exporter *e, const kiln_node *nd, int j)
{
    return e->name[nd->inputs[j]];
}

/* 1 when nd's ONNX tensor has the batch as its first dim (ONNX axis = per-example axis + 1). */
static int boff(const kiln_node *nd)
{
    return nd->batched ? 1 : 0;
}

/* An ONNX axis attribute from per-example axis ax (negative: from the end, unchanged). */
static int64_t onnx_axis(const kiln_node *nd, int ax)
{
    return ax < 0 ? ax : ax + boff(nd);
}

/* The node's weight tensor k with its own dims; its name. */
static const char *param(exporter *e, const kiln_node *nd, int k, const char *suffix)
{
    int64_t d[KILN_MAX_RANK];
    for (int i = 0; i < nd->params[k].ndim; i++)
        d[i] = nd->params[k].dims[i];
    return init_f32(e, sub(e, nd, suffix), nd->params[k].ndim, d, kiln_node_tensor(e->g, nd, k));
}

/* x quantised and dequantised with qp (u8 with a zero point, Kiln's activations); the
 * DequantizeLinear output is named out (NULL: LABEL.dq). by_inverse rounds x * (1 / scale) as
 * kiln_quantize_u8 does (x / scale, QuantizeLinear's, can round the other way at a half): x is
 * multiplied by the inverse first and quantised with scale 1; the dequantisation keeps Kiln's
 * scale, so runtimes still fuse the DequantizeLinear into their integer kernels. */
static const char *qdq(exporter *e, const char *x, kiln_qparams qp, const char *label, const char *out, bool by_inverse)
{
    uint8_t zero = (uint8_t)qp.zero;
    const char *scale = init_scalar(e, pool_fmt(&e->p, "%s.scale", label), qp.scale);
    const char *zp = init_raw(e, pool_fmt(&e->p, "%s.zero", label), ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, 0, NULL, &zero, 1);
    const char *in[3] = {x, scale, zp};
    if (by_inverse) {
        in[0] = pool_fmt(&e->p, "%s.scaled", label);
        in[1] = init_scalar(e, pool_fmt(&e->p, "%s.unit", label), 1.0f);
        emit2(e, "Mul", x, init_scalar(e, pool_fmt(&e->p, "%s.inv_scale", label), 1.0f / qp.scale), in[0]);
    }
    const char *q = pool_fmt(&e->p, "%s.q", label), *dq = out ? out : pool_fmt(&e->p, "%s.dq", label);
    emit(e, "QuantizeLinear", in, 3, q);
    const char *din[3] = {q, scale, zp};
    emit(e, "DequantizeLinear", din, 3, dq);
    return dq;
}

/* Whether node id runs in int8 (its products on u8 inputs and int8 weights). */
static bool is_int8(const exporter *e, int id)
{
    return e->q && e->q->int8[id];
}

/* The input of product node id (conv, dense, linear): as it is, or for an int8 node reading an
 * fp32 tensor, quantised on the way in with that tensor's range (Kiln's kiln_quantize_u8). */
static const char *product_input(exporter *e, int id)
{
    const kiln_node *nd = &e->g->nodes[id];
    int src = nd->inputs[0];
    if (!is_int8(e, id) || e->q->elem_bytes[src] == 1)
        return e->name[src];
    return qdq(e, e->name[src], e->q->qp[src], sub(e, nd, "in"), NULL, true);
}

/* int8 node id's weights as int8 (transposed to (k, m) for a MatMul) dequantised per output
 * channel (axis 0, or 1 when transposed) with Kiln's scales; the float value's name. */
static const char *q_weight(exporter *e, int id, bool transpose)
{
    const kiln_node *nd = &e->g->nodes[id];
    const kiln_qweights *qw = &e->q->qw[id];
    int m = qw->m, k = qw->k, rank = transpose ? 2 : nd->params[0].ndim;
    int64_t d[KILN_MAX_RANK] = {k, m}, dm[1] = {m};
    for (int i = 0; !transpose && i < rank; i++)
        d[i] = nd->params[0].dims[i];
    int8_t *w = pool_alloc(&e->p, (size_t)m * k), *zero = pool_alloc(&e->p, (size_t)m);
    if (!w || !zero)
        return NULL;
    for (int r = 0; r < m; r++)
        for (int c = 0; c < k; c++)
            w[transpose ? (size_t)c * m + r : (size_t)r * k + c] = qw->w[(size_t)r * k + c];
    const char *in[3] = {init_raw(e, sub(e, nd, "weight_q"), ONNX__TENSOR_PROTO__DATA_TYPE__INT8, rank, d, w,
                                  (size_t)m * k),
                         init_f32(e, sub(e, nd, "weight_scale"), 1, dm, qw->w_scale),
                         init_raw(e, sub(e, nd, "weight_zero"), ONNX__TENSOR_PROTO__DATA_TYPE__INT8, 1, dm, zero,
                                  (size_t)m)};
    const char *out = sub(e, nd, "weight");
    attr_int(e, emit(e, "DequantizeLinear", in, 3, out), "axis", transpose ? 1 : 0);
    return out;
}

/* int8 node id's bias as Kiln adds it to the accumulators: int32 round(bias / (input scale x
 * weight scale)), dequantised per channel by that scale; the float value's name. */
static const char *q_bias(exporter *e, int id)
{
    const kiln_node *nd = &e->g->nodes[id];
    const kiln_qweights *qw = &e->q->qw[id];
    int m = qw->m;
    int64_t dm[1] = {m};
    int32_t *bq = pool_alloc(&e->p, (size_t)m * sizeof(int32_t)), *zero = pool_alloc(&e->p, (size_t)m * sizeof(int32_t));
    if (!bq || !zero)
        return NULL;
    for (int j = 0; j < m; j++) {   /* as kiln_qweights_derive rounds it */
        double b = qw->deq[j] > 0 ? qw->bias[j] / qw->deq[j] : 0;
        b = b > 1e9 ? 1e9 : b < -1e9 ? -1e9 : b;
        bq[j] = (int32_t)llround(b);
    }
    const char *in[3] = {init_raw(e, sub(e, nd, "bias_q"), ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 1, dm, bq,
                                  (size_t)m * sizeof(int32_t)),
                         init_f32(e, sub(e, nd, "bias_scale"), 1, dm, qw->deq),
                         init_raw(e, sub(e, nd, "bias_zero"), ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 1, dm, zero,
                                  (size_t)m * sizeof(int32_t))};
    const char *out = sub(e, nd, "bias");
    attr_int(e, emit(e, "DequantizeLinear", in, 3, out), "axis", 0);
    return out;
}

/* Product node id's weight as ONNX takes it: as stored, or (transpose) as (k, m) for a MatMul. */
static const char *product_weight(exporter *e, int id, bool transpose)
{
    const kiln_node *nd = &e->g->nodes[id];
    if (is_int8(e, id))
        return q_weight(e, id, transpose);
    if (!transpose)
        return param(e, nd, 0, "weight");
    int m = nd->params[0].dims[0], k = (int)(nd->params[0].numel / (size_t)m);
    float *wt = pool_alloc(&e->p, (size_t)m * k * sizeof(float));
    const float *w = kiln_node_tensor(e->g, nd, 0);
    if (!wt)
        return NULL;
    for (int r = 0; r < m; r++)
        for (int c = 0; c < k; c++)
            wt[(size_t)c * m + r] = w[(size_t)r * k + c];
    int64_t d[2] = {k, m};
    return init_f32(e, sub(e, nd, "weight_t"), 2, d, wt);
}

/* Product node id's bias (NULL when it has none: check no_bias first). */
static const char *product_bias(exporter *e, int id)
{
    return is_int8(e, id) ? q_bias(e, id) : param(e, &e->g->nodes[id], 1, "bias");
}

/* Shape(x) from start to end (int64), named out. */
static const char *shape_of(exporter *e, const char *x, int start, int end, const char *out)
{
    Onnx__NodeProto *o = emit1(e, "Shape", x, out);
    attr_int(e, o, "start", start);
    attr_int(e, o, "end", end);
    return out;
}

/* The int64 shape (N, dims[0..rank)) with N the batch of batched value ref; named LABEL. */
static const char *batch_shape(exporter *e, const kiln_node *nd, const char *label, const char *ref, int rank,
                               const int *dims)
{
    int64_t d[KILN_MAX_RANK];
    for (int i = 0; i < rank; i++)
        d[i] = dims[i];
    const char *n = shape_of(e, ref, 0, 1, pool_fmt(&e->p, "%s.%s_n", nd->name, label));
    const char *rest = init_i64(e, pool_fmt(&e->p, "%s.%s_dims", nd->name, label), rank, d);
    const char *out = sub(e, nd, label);
    attr_int(e, emit2(e, "Concat", n, rest, out), "axis", 0);
    return out;
}

/* A batched input's ONNX value (the first), to take the batch from; NULL if none. */
static const char *batched_ref(exporter *e, const kiln_node *nd)
{
    for (int j = 0; j < nd->n_inputs; j++)
        if (e->g->nodes[nd->inputs[j]].batched)
            return in_name(e, nd, j);
    return NULL;
}

/* Input j of batched nd as ONNX broadcasting needs it against nd's rank: a batched input of a
 * lower per-example rank gets 1s after its batch (Kiln aligns per-example shapes from the right);
 * an unbatched one is expanded over the batch when expand (Concat does not broadcast). */
static const char *aligned_input(exporter *e, const kiln_node *nd, int j, bool expand)
{
    const kiln_node *x = &e->g->nodes[nd->inputs[j]];
    const char *name = in_name(e, nd, j);
    char label[32];
    snprintf(label, sizeof label, "in%d", j);
    if (!nd->batched || (x->batched && x->rank == nd->rank) || (!x->batched && !expand))
        return name;
    int ones[KILN_MAX_RANK];
    if (!x->batched) {   /* Expand to (N, 1, ..., 1) broadcasts it over the batch */
        for (int i = 0; i < nd->rank; i++)
            ones[i] = 1;
        const char *shape = batch_shape(e, nd, label, batched_ref(e, nd), nd->rank, ones);
        const char *out = pool_fmt(&e->p, "%s.%s_b", nd->name, label);
        emit2(e, "Expand", name, shape, out);
        return out;
    }
    int64_t s[KILN_MAX_RANK + 1] = {0};
    for (int i = 0; i < nd->rank; i++)
        s[1 + i] = i < nd->rank - x->rank ? 1 : x->dims[i - (nd->rank - x->rank)];
    const char *shape = init_i64(e, pool_fmt(&e->p, "%s.%s_shape", nd->name, label), nd->rank + 1, s);
    const char *out = pool_fmt(&e->p, "%s.%s_r", nd->name, label);
    emit2(e, "Reshape", name, shape, out);
    return out;
}

/* Reshape of x to per-example dims (the batch kept by a leading 0 when batched), named out. */
static Onnx__NodeProto *reshape_to(exporter *e, const char *x, bool batched, int rank, const int *dims,
                                   const char *out)
{
    int64_t s[KILN_MAX_RANK + 2] = {0};
    int b = batched ? 1 : 0;
    for (int i = 0; i < rank; i++)
        s[b + i] = dims[i];
    return emit2(e, "Reshape", x, init_i64(e, pool_fmt(&e->p, "%s.shape", out), rank + b, s), out);
}

/* Transpose of x by perm (n axes, ONNX's), named out. */
static Onnx__NodeProto *transpose_by(exporter *e, const char *x, const int64_t *perm, int n, const char *out)
{
    Onnx__NodeProto *o = emit1(e, "Transpose", x, out);
    attr_ints(e, o, "perm", perm, n, true);
    return o;
}

/* x[start:end] along ONNX axis ax, named out. */
static Onnx__NodeProto *slice_of(exporter *e, const char *x, int64_t ax, int64_t start, int64_t end, int64_t step,
                                 const char *out)
{
    const char *in[5] = {x, init_i64(e, pool_fmt(&e->p, "%s.starts", out), 1, &start),
                         init_i64(e, pool_fmt(&e->p, "%s.ends", out), 1, &end),
                         init_i64(e, pool_fmt(&e->p, "%s.axes", out), 1, &ax),
                         init_i64(e, pool_fmt(&e->p, "%s.steps", out), 1, &step)};
    return emit(e, "Slice", in, 5, out);
}

/* x op c, c a float scalar constant named after out; the node. */
static Onnx__NodeProto *with_scalar(exporter *e, const char *op, const char *x, float c, const char *out)
{
    return emit2(e, op, x, init_scalar(e, pool_fmt(&e->p, "%s.c", out), c), out);
}

/* Activation act (Kiln's formula) of x, named out. */
static kiln_status emit_act(exporter *e, const kiln_node *nd, kiln_op act, const char *x, const char *out)
{
    static const struct {
        kiln_op op;
        const char *onnx;
    } simple[] = {{KILN_OP_RELU, "Relu"}, {KILN_OP_SIGMOID, "Sigmoid"}, {KILN_OP_TANH, "Tanh"},
                  {KILN_OP_LEAKY_RELU, "LeakyRelu"}, {KILN_OP_HARD_SWISH, "HardSwish"}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (simple[i].op == act) {
            Onnx__NodeProto *o = emit1(e, simple[i].onnx, x, out);
            if (act == KILN_OP_LEAKY_RELU)
                attr_float(e, o, "alpha", nd->a.alpha);
            return KILN_OK;
        }
    const char *t1 = pool_fmt(&e->p, "%s.t1", out), *t2 = pool_fmt(&e->p, "%s.t2", out),
               *t3 = pool_fmt(&e->p, "%s.t3", out), *h = pool_fmt(&e->p, "%s.half", out);
    switch (act) {
    case KILN_OP_GELU:   /* 0.5 x (1 + erf(x / sqrt 2)), the exact form */
        with_scalar(e, "Mul", x, 0.70710678118654752f, t1);
        emit1(e, "Erf", t1, t2);
        with_scalar(e, "Add", t2, 1.0f, t3);
        with_scalar(e, "Mul", x, 0.5f, h);
        emit2(e, "Mul", h, t3, out);
        return KILN_OK;
    case KILN_OP_SILU:   /* x sigmoid(x) */
        emit1(e, "Sigmoid", x, t1);
        emit2(e, "Mul", x, t1, out);
        return KILN_OK;
    case KILN_OP_RELU6: {   /* Clip to [0, 6] */
        const char *in[3] = {x, init_scalar(e, pool_fmt(&e->p, "%s.min", out), 0.0f),
                             init_scalar(e, pool_fmt(&e->p, "%s.max", out), 6.0f)};
        emit(e, "Clip", in, 3, out);
        return KILN_OK;
    }
    default:
        return kiln_error(KILN_ERR_ARG, "%s: activation %s has no ONNX form here", nd->name, kiln_op_name(act));
    }
}

/* conv2d: Conv (int8: on dequantised u8 input, int8 weights and int32 bias). */
static kiln_status x_conv(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *in[3] = {product_input(e, id), product_weight(e, id, false), nd->a.no_bias ? NULL : product_bias(e, id)};
    Onnx__NodeProto *o = emit(e, "Conv", in, nd->a.no_bias ? 2 : 3, out);
    int64_t k[2] = {nd->a.kernel[0], nd->a.kernel[1]}, s[2] = {nd->a.stride[0], nd->a.stride[1]},
            p[4] = {nd->a.pad[0], nd->a.pad[1], nd->a.pad[0], nd->a.pad[1]},
            d[2] = {nd->a.dilation[0], nd->a.dilation[1]};
    attr_ints(e, o, "kernel_shape", k, 2, true);
    attr_ints(e, o, "strides", s, 2, true);
    attr_ints(e, o, "pads", p, 4, true);
    attr_ints(e, o, "dilations", d, 2, true);
    attr_int(e, o, "group", nd->a.groups);
    return KILN_OK;
}

/* conv_transpose2d: ConvTranspose (PyTorch's weight layout is ONNX's). */
static kiln_status x_conv_transpose(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *in[3] = {in_name(e, nd, 0), param(e, nd, 0, "weight"), nd->a.no_bias ? NULL : param(e, nd, 1, "bias")};
    Onnx__NodeProto *o = emit(e, "ConvTranspose", in, nd->a.no_bias ? 2 : 3, out);
    int64_t k[2] = {nd->a.kernel[0], nd->a.kernel[1]},
            s[2] = {nd->a.stride[0] ? nd->a.stride[0] : 1, nd->a.stride[1] ? nd->a.stride[1] : 1},
            p[4] = {nd->a.pad[0], nd->a.pad[1], nd->a.pad[0], nd->a.pad[1]},
            d[2] = {nd->a.dilation[0] ? nd->a.dilation[0] : 1, nd->a.dilation[1] ? nd->a.dilation[1] : 1},
            op[2] = {nd->a.out_pad[0], nd->a.out_pad[1]};
    attr_ints(e, o, "kernel_shape", k, 2, true);
    attr_ints(e, o, "strides", s, 2, true);
    attr_ints(e, o, "pads", p, 4, true);
    attr_ints(e, o, "dilations", d, 2, true);
    attr_ints(e, o, "output_padding", op, 2, true);
    return KILN_OK;
}

/* maxpool2d, avgpool2d: MaxPool, AveragePool (no padding). */
static kiln_status x_pool(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    if (nd->op == KILN_OP_AVGPOOL2D && (nd->a.pad[0] || nd->a.pad[1]))
        return kiln_error(KILN_ERR_ARG, "%s: avgpool2d with padding has no ONNX form here", nd->name);
    Onnx__NodeProto *o = emit1(e, nd->op == KILN_OP_MAXPOOL2D ? "MaxPool" : "AveragePool", in_name(e, nd, 0), out);
    int64_t k[2] = {nd->a.kernel[0], nd->a.kernel[1]}, s[2] = {nd->a.stride[0], nd->a.stride[1]},
            p[4] = {nd->a.pad[0], nd->a.pad[1], nd->a.pad[0], nd->a.pad[1]};
    attr_ints(e, o, "kernel_shape", k, 2, true);
    attr_ints(e, o, "strides", s, 2, true);
    attr_ints(e, o, "pads", p, 4, true);
    return KILN_OK;
}

/* dense, linear: Gemm on (N, k) vectors (transB: the weight as stored); else MatMul by W^T, then
 * the bias. */
static kiln_status x_linear(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const kiln_node *x = &e->g->nodes[nd->inputs[0]];
    if (x->rank == 1 && x->batched) {
        const char *in[3] = {product_input(e, id), product_weight(e, id, false), nd->a.no_bias ? NULL : product_bias(e, id)};
        attr_int(e, emit(e, "Gemm", in, nd->a.no_bias ? 2 : 3, out), "transB", 1);
        return KILN_OK;
    }
    const char *xin = product_input(e, id), *w = product_weight(e, id, true);
    if (nd->a.no_bias) {
        emit2(e, "MatMul", xin, w, out);
        return KILN_OK;
    }
    const char *mm = sub(e, nd, "matmul");
    emit2(e, "MatMul", xin, w, mm);
    emit2(e, "Add", mm, product_bias(e, id), out);
    return KILN_OK;
}

/* flatten, reshape: Reshape. */
static kiln_status x_reshape(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    reshape_to(e, in_name(e, nd, 0), nd->batched, nd->rank, nd->dims, out);
    return KILN_OK;
}

/* global_avgpool: GlobalAveragePool then Flatten (Kiln's output is (c)). */
static kiln_status x_global_avgpool(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *gp = sub(e, nd, "pool");
    emit1(e, "GlobalAveragePool", in_name(e, nd, 0), gp);
    emit1(e, "Flatten", gp, out);
    return KILN_OK;
}

/* The elementwise activations. */
static kiln_status x_activation(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    return emit_act(e, nd, nd->op, in_name(e, nd, 0), out);
}

/* softmax, log_softmax: over an axis. */
static kiln_status x_softmax(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    Onnx__NodeProto *o = emit1(e, nd->op == KILN_OP_SOFTMAX ? "Softmax" : "LogSoftmax", in_name(e, nd, 0), out);
    attr_int(e, o, "axis", onnx_axis(nd, nd->a.axis));
    return KILN_OK;
}

/* batchnorm (inference form): BatchNormalization. */
static kiln_status x_batchnorm(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *in[5] = {in_name(e, nd, 0), param(e, nd, 0, "weight"), param(e, nd, 1, "bias"), param(e, nd, 2, "mean"),
                         param(e, nd, 3, "var")};
    attr_float(e, emit(e, "BatchNormalization", in, 5, out), "epsilon", nd->a.eps);
    return KILN_OK;
}

/* layernorm: LayerNormalization over the last axis. */
static kiln_status x_layernorm(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *in[3] = {in_name(e, nd, 0), param(e, nd, 0, "weight"), param(e, nd, 1, "bias")};
    Onnx__NodeProto *o = emit(e, "LayerNormalization", in, 3, out);
    attr_int(e, o, "axis", -1);
    attr_float(e, o, "epsilon", nd->a.eps);
    return KILN_OK;
}

/* rmsnorm: x * (1 / sqrt(mean(x^2) + eps)) * weight over the last axis, as Kiln computes it. */
static kiln_status x_rmsnorm(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *x = in_name(e, nd, 0), *sq = sub(e, nd, "sq"), *ms = sub(e, nd, "ms"), *me = sub(e, nd, "ms_eps"),
               *rt = sub(e, nd, "rms"), *inv = sub(e, nd, "rstd"), *y = sub(e, nd, "normed");
    emit2(e, "Mul", x, x, sq);
    Onnx__NodeProto *o = emit1(e, "ReduceMean", sq, ms);
    int64_t last = -1;
    attr_ints(e, o, "axes", &last, 1, true);
    attr_int(e, o, "keepdims", 1);
    with_scalar(e, "Add", ms, nd->a.eps, me);
    emit1(e, "Sqrt", me, rt);
    emit1(e, "Reciprocal", rt, inv);
    emit2(e, "Mul", x, inv, y);
    emit2(e, "Mul", y, param(e, nd, 0, "weight"), out);
    return KILN_OK;
}

/* add (any number of inputs, pairwise in order), sub, mul, div: broadcasting as Kiln's. */
static kiln_status x_binary(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *op = nd->op == KILN_OP_ADD ? "Add" : nd->op == KILN_OP_SUB ? "Sub" : nd->op == KILN_OP_MUL ? "Mul" : "Div";
    const char *acc = aligned_input(e, nd, 0, false);
    for (int j = 1; j < nd->n_inputs; j++) {
        const char *to = j == nd->n_inputs - 1 ? out : pool_fmt(&e->p, "%s.sum%d", nd->name, j);
        emit2(e, op, acc, aligned_input(e, nd, j, false), to);
        acc = to;
    }
    return KILN_OK;
}

/* matmul: MatMul (leading axes broadcast as Kiln's). */
static kiln_status x_matmul(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    emit2(e, "MatMul", aligned_input(e, nd, 0, false), aligned_input(e, nd, 1, false), out);
    return KILN_OK;
}

/* concat: Concat (an unbatched input expanded over the batch). */
static kiln_status x_concat(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const char *in[KILN_MAX_INPUTS];
    for (int j = 0; j < nd->n_inputs; j++)
        in[j] = aligned_input(e, nd, j, true);
    attr_int(e, emit(e, "Concat", in, nd->n_inputs, out), "axis", onnx_axis(nd, nd->a.axis));
    return KILN_OK;
}

/* transpose: Transpose (the batch stays first). */
static kiln_status x_transpose(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    int b = boff(nd);
    int64_t perm[KILN_MAX_RANK + 1] = {0};
    for (int i = 0; i < nd->rank; i++)
        perm[b + i] = nd->a.perm[i] + b;
    transpose_by(e, in_name(e, nd, 0), perm, nd->rank + b, out);
    return KILN_OK;
}

/* slice: Slice of one axis (start, end and step resolved by shape inference). */
static kiln_status x_slice(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    slice_of(e, in_name(e, nd, 0), onnx_axis(nd, nd->a.axis), nd->a.start, nd->a.end, nd->a.step, out);
    return KILN_OK;
}

/* mean, sum: ReduceMean (axes attribute, opset 17), ReduceSum (axes input). */
static kiln_status x_reduce(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    const kiln_node *x = &e->g->nodes[nd->inputs[0]];
    int64_t axes[KILN_MAX_RANK];
    int n = 0;
    for (int i = 0; i < x->rank; i++)
        if (nd->a.axes >> i & 1)
            axes[n++] = i + boff(x);
    Onnx__NodeProto *o;
    if (nd->op == KILN_OP_MEAN) {
        o = emit1(e, "ReduceMean", in_name(e, nd, 0), out);
        attr_ints(e, o, "axes", axes, n, true);
    } else {
        o = emit2(e, "ReduceSum", in_name(e, nd, 0), init_i64(e, sub(e, nd, "axes"), n, axes), out);
    }
    attr_int(e, o, "keepdims", nd->a.keepdims);
    return KILN_OK;
}

/* pad: Pad with a constant (none on the batch). */
static kiln_status x_pad(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    int b = boff(nd), r = nd->rank + b;
    int64_t pads[2 * (KILN_MAX_RANK + 1)] = {0};
    for (int i = 0; i < nd->rank; i++) {
        pads[b + i] = nd->a.pads[i];
        pads[r + b + i] = nd->a.pads[KILN_MAX_RANK + i];
    }
    const char *in[3] = {in_name(e, nd, 0), init_i64(e, sub(e, nd, "pads"), 2 * r, pads),
                         init_scalar(e, sub(e, nd, "value"), nd->a.value)};
    Onnx__NodeProto *o = emit(e, "Pad", in, 3, out);
    if (nd->a.mode)
        attr_str(e, o, "mode", nd->a.mode == 1 ? "reflect" : "edge");
    return KILN_OK;
}

/* upsample: Resize by its scale or to its output size: nearest as floor(o * r) (asymmetric, floor);
 * bilinear with align_corners false (half_pixel, clamped at the borders, as Kiln's). */
static kiln_status x_upsample(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    if (!nd->batched)
        return kiln_error(KILN_ERR_ARG, "%s: an unbatched upsample has no ONNX form here", nd->name);
    const char *in[4] = {in_name(e, nd, 0), "", "", ""};
    if (nd->a.scale[0] > 0) {   /* sampled at 1/scale: ONNX's scales mean the same */
        float sc[4] = {1.0f, 1.0f, nd->a.scale[0], nd->a.scale[1]};
        int64_t four = 4;
        in[2] = init_f32(e, sub(e, nd, "scales"), 1, &four, sc);
    } else {
        in[3] = batch_shape(e, nd, "sizes", in_name(e, nd, 0), 3, nd->dims);
    }
    Onnx__NodeProto *o = emit(e, "Resize", in, 4, out);
    static const char *const coords[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
    static const char *const roundings[] = {"floor", "round_prefer_floor", "round_prefer_ceil", "ceil"};
    int coord = nd->a.coord ? nd->a.coord : nd->a.mode == 0 ? 2 : 1;
    attr_str(e, o, "mode", nd->a.mode == 0 ? "nearest" : nd->a.mode == 1 ? "linear" : "cubic");
    attr_str(e, o, "coordinate_transformation_mode", coords[coord - 1]);
    if (nd->a.mode == 0)
        attr_str(e, o, "nearest_mode", roundings[nd->a.rounding]);
    if (nd->a.mode == 2) {
        attr_float(e, o, "cubic_coeff_a", nd->a.cubic_a != 0.0f ? nd->a.cubic_a : -0.75f);
        if (nd->a.exclude)
            attr_int(e, o, "exclude_outside", 1);
    }
    return KILN_OK;
}

/* embedding: Gather of the table's rows by the int32 token ids. */
static kiln_status x_embedding(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    attr_int(e, emit2(e, "Gather", param(e, nd, 0, "weight"), in_name(e, nd, 0), out), "axis", 0);
    return KILN_OK;
}

/* (N, T, D) value x as heads (N, H, T, dh) (or (N, H, dh, T) when keys), named LABEL. */
static const char *split_heads(exporter *e, const kiln_node *nd, const char *x, int t, bool keys, const char *label)
{
    int h = nd->a.heads, dims[3] = {t, h, nd->dims[1] / h};
    const char *r = pool_fmt(&e->p, "%s.%s4", nd->name, label), *out = sub(e, nd, label);
    reshape_to(e, x, true, 3, dims, r);
    int64_t qperm[4] = {0, 2, 1, 3}, kperm[4] = {0, 2, 3, 1};
    transpose_by(e, r, keys ? kperm : qperm, 4, out);
    return out;
}

/* The causal mask (t, s): 0 where key j <= query i, else -1e9 (softmax gives those keys 0). */
static const char *causal_mask(exporter *e, const kiln_node *nd, int t, int s)
{
    float *m = pool_alloc(&e->p, (size_t)t * s * sizeof(float));
    if (!m)
        return NULL;
    for (int i = 0; i < t; i++)
        for (int j = 0; j < s; j++)
            m[(size_t)i * s + j] = j <= i ? 0.0f : -1e9f;
    int64_t d[2] = {t, s};
    return init_f32(e, sub(e, nd, "mask"), 2, d, m);
}

/* attention: heads split from the width; softmax(Q (K / sqrt dh)^T [+ mask]) V (Kiln scales
 * the keys); heads joined back into the width. Packed qkv is sliced into q, k, v first. */
static kiln_status x_attention(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    if (!nd->batched)
        return kiln_error(KILN_ERR_ARG, "%s: an unbatched attention has no ONNX form here", nd->name);
    int t = nd->dims[0], w = nd->dims[1], s = nd->n_inputs == 1 ? t : e->g->nodes[nd->inputs[1]].dims[0];
    const char *q, *k, *v;
    if (nd->n_inputs == 1) {
        const char *x = in_name(e, nd, 0);
        q = sub(e, nd, "q"), k = sub(e, nd, "k"), v = sub(e, nd, "v");
        slice_of(e, x, 2, 0, w, 1, q);
        slice_of(e, x, 2, w, 2 * w, 1, k);
        slice_of(e, x, 2, 2 * w, 3 * w, 1, v);
    } else {
        q = aligned_input(e, nd, 0, true), k = aligned_input(e, nd, 1, true), v = aligned_input(e, nd, 2, true);
    }
    const char *ks = sub(e, nd, "k_scaled");
    with_scalar(e, "Mul", k, 1.0f / sqrtf((float)(w / nd->a.heads)), ks);
    const char *qh = split_heads(e, nd, q, t, false, "qh"), *kh = split_heads(e, nd, ks, s, true, "kh"),
               *vh = split_heads(e, nd, v, s, false, "vh");
    const char *sc = sub(e, nd, "scores"), *p = sub(e, nd, "probs"), *o = sub(e, nd, "heads"), *ot = sub(e, nd, "heads_t");
    emit2(e, "MatMul", qh, kh, sc);
    if (nd->a.causal) {
        const char *masked = sub(e, nd, "masked");
        emit2(e, "Add", sc, causal_mask(e, nd, t, s), masked);
        sc = masked;
    }
    attr_int(e, emit1(e, "Softmax", sc, p), "axis", -1);
    emit2(e, "MatMul", p, vh, o);
    int64_t perm[4] = {0, 2, 1, 3};
    transpose_by(e, o, perm, 4, ot);
    reshape_to(e, ot, true, 2, nd->dims, out);
    return KILN_OK;
}

/* param, f32 const: an initializer of its per-example shape (unbatched). */
static kiln_status x_constant(exporter *e, int id, const char *out)
{
    const kiln_node *nd = &e->g->nodes[id];
    if (nd->op == KILN_OP_CONST && nd->dtype != KILN_DT_F32)
        return kiln_error(KILN_ERR_ARG, "%s: an i64/bool constant read at run time has no ONNX form here", nd->name);
    int64_t d[KILN_MAX_RANK];
    for (int i = 0; i < nd->rank; i++)
        d[i] = nd->dims[i];
    return init_f32(e, out, nd->rank, d, kiln_node_tensor(e->g, nd, 0)) ? KILN_OK : KILN_ERR_NOMEM;
}

typedef kiln_status (*op_exporter)(exporter *e, int id, const char *out);

/* The exporter of op, or NULL if it has no ONNX form. */
static op_exporter exporter_of(kiln_op op)
{
    switch (op) {
    case KILN_OP_CONV2D: return x_conv;
    case KILN_OP_CONV_TRANSPOSE2D: return x_conv_transpose;
    case KILN_OP_MAXPOOL2D: case KILN_OP_AVGPOOL2D: return x_pool;
    case KILN_OP_DENSE: case KILN_OP_LINEAR: return x_linear;
    case KILN_OP_FLATTEN: case KILN_OP_RESHAPE: return x_reshape;
    case KILN_OP_GLOBAL_AVGPOOL: return x_global_avgpool;
    case KILN_OP_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH: case KILN_OP_LEAKY_RELU: case KILN_OP_GELU:
    case KILN_OP_SILU: case KILN_OP_HARD_SWISH: case KILN_OP_RELU6: return x_activation;
    case KILN_OP_SOFTMAX: case KILN_OP_LOG_SOFTMAX: return x_softmax;
    case KILN_OP_BATCHNORM: return x_batchnorm;
    case KILN_OP_LAYERNORM: return x_layernorm;
    case KILN_OP_RMSNORM: return x_rmsnorm;
    case KILN_OP_ADD: case KILN_OP_SUB: case KILN_OP_MUL: case KILN_OP_DIV: return x_binary;
    case KILN_OP_MATMUL: return x_matmul;
    case KILN_OP_CONCAT: return x_concat;
    case KILN_OP_TRANSPOSE: return x_transpose;
    case KILN_OP_SLICE: return x_slice;
    case KILN_OP_MEAN: case KILN_OP_SUM: return x_reduce;
    case KILN_OP_PAD: return x_pad;
    case KILN_OP_UPSAMPLE: return x_upsample;
    case KILN_OP_EMBEDDING: return x_embedding;
    case KILN_OP_ATTENTION: return x_attention;
    case KILN_OP_PARAM: case KILN_OP_CONST: return x_constant;
    default: return NULL;
    }
}

/* Emits Kiln node id (then its fused activation, and for a u8 output of an int8 model the
 * quantisation to Kiln's u8 and back); its output's ONNX name into e->name[id]. */
static kiln_status export_node(exporter *e, int id)
{
    const kiln_node *nd = &e->g->nodes[id];
    op_exporter f = exporter_of(nd->op);
    if (nd->op == KILN_OP_DROPOUT) {   /* identity at inference */
        e->name[id] = e->name[nd->inputs[0]];
        return KILN_OK;
    }
    if (!f)
        return kiln_error(KILN_ERR_ARG, "%s: op %s has no ONNX form yet", nd->name, kiln_op_name(nd->op));
    kiln_op act = nd->a.act;
    bool u8 = e->q && e->q->elem_bytes[id] == 1 && !kiln_op_is_view(nd->op);
    char *fin = pool_fmt(&e->p, "%s", nd->name), *cur = act != KILN_OP_INPUT || u8 ? sub(e, nd, "pre") : fin;
    if (!fin || !cur)
        return kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", nd->name);
    kiln_status st = f(e, id, cur);
    if (st == KILN_OK && act != KILN_OP_INPUT) {
        char *a = u8 ? sub(e, nd, "act") : fin;
        st = emit_act(e, nd, act, cur, a);
        cur = a;
    }
    if (st == KILN_OK && u8)
        qdq(e, cur, e->q->qp[id], sub(e, nd, "out"), fin, false);
    e->name[id] = fin;
    if (st == KILN_OK && e->p.nomem)
        st = kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", nd->name);
    return st;
}

/* A graph input or output value: fp32 or int32 (token ids), dims ("N", per-example...). */
static Onnx__ValueInfoProto *value_info(exporter *e, const char *name, const kiln_node *nd)
{
    Onnx__ValueInfoProto *v = pool_alloc(&e->p, sizeof *v);
    Onnx__TypeProto *t = pool_alloc(&e->p, sizeof *t);
    Onnx__TypeProto__Tensor *tt = pool_alloc(&e->p, sizeof *tt);
    Onnx__TensorShapeProto *sh = pool_alloc(&e->p, sizeof *sh);
    Onnx__TensorShapeProto__Dimension *dims = pool_alloc(&e->p, (size_t)(nd->rank + 1) * sizeof *dims);
    Onnx__TensorShapeProto__Dimension **dp = pool_alloc(&e->p, (size_t)(nd->rank + 1) * sizeof *dp);
    if (!v || !t || !tt || !sh || !dims || !dp)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    for (int i = 0; i <= nd->rank; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        if (i == 0) {
            dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[i].dim_param = "N";
        } else {
            dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[i].dim_value = nd->dims[i - 1];
        }
        dp[i] = &dims[i];
    }
    sh->n_dim = (size_t)nd->rank + 1;
    sh->dim = dp;
    tt->has_elem_type = 1;
    tt->elem_type = nd->dtype == KILN_DT_I32 ? ONNX__TENSOR_PROTO__DATA_TYPE__INT32 : ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->name = (char *)name;
    v->type = t;
    return v;
}

/* Packs the model of the exported graph and writes it to path atomically. */
static kiln_status write_model(exporter *e, Onnx__ValueInfoProto **ins, size_t n_in, Onnx__ValueInfoProto **outs,
                               size_t n_out, const char *path)
{
    Onnx__GraphProto gp;
    Onnx__ModelProto mp;
    Onnx__OperatorSetIdProto opset, *opsets[1] = {&opset};
    onnx__graph_proto__init(&gp);
    onnx__model_proto__init(&mp);
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = EXPORT_OPSET;
    gp.name = "kiln";
    gp.n_node = e->n_nodes;
    gp.node = e->nodes;
    gp.n_initializer = e->n_inits;
    gp.initializer = e->inits;
    gp.n_input = n_in;
    gp.input = ins;
    gp.n_output = n_out;
    gp.output = outs;
    mp.has_ir_version = 1;
    mp.ir_version = 8;
    mp.producer_name = "kiln";
    mp.n_opset_import = 1;
    mp.opset_import = opsets;
    mp.graph = &gp;
    size_t len = onnx__model_proto__get_packed_size(&mp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return kiln_error(KILN_ERR_NOMEM, "out of memory for %zu bytes exporting %s", len, path);
    onnx__model_proto__pack(&mp, buf);
    kiln_atomic_file f;
    kiln_status st = kiln_atomic_open(&f, path);
    if (st == KILN_OK) {
        if (fwrite(buf, 1, len, f.fp) != len) {
            kiln_atomic_abort(&f);
            st = kiln_error(KILN_ERR_IO, "%s: short write", path);
        } else {
            st = kiln_atomic_commit(&f);
        }
    }
    free(buf);
    return st;
}

kiln_status kiln_model_export_onnx(const kiln_model_t *m, const char *path)
{
    exporter e = {.g = m->g, .q = m->q};
    const kiln_graph_t *g = m->g;
    kiln_status st = KILN_OK;
    e.name = pool_alloc(&e.p, (size_t)g->n * sizeof(char *));
    Onnx__ValueInfoProto *ins[KILN_MAX_INPUTS + 8], *outs[KILN_MAX_OUTPUTS];
    size_t n_in = 0;
    for (int i = 0; e.name && i < g->n && st == KILN_OK; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op != KILN_OP_INPUT) {
            st = export_node(&e, i);
        } else if (nd->dtype != KILN_DT_F32 && nd->dtype != KILN_DT_I32) {
            st = kiln_error(KILN_ERR_ARG, "%s: input %s: only f32 and i32 inputs are exported", path, nd->name);
        } else if (n_in == sizeof ins / sizeof ins[0]) {
            st = kiln_error(KILN_ERR_ARG, "%s: more than %zu inputs", path, n_in);
        } else if (!(e.name[i] = pool_fmt(&e.p, "%s", nd->name)) || !(ins[n_in++] = value_info(&e, e.name[i], nd))) {
            st = KILN_ERR_NOMEM;
        }
    }
    int ids[KILN_MAX_OUTPUTS], n_out = kiln_graph_outputs(g, ids);
    for (int k = 0; k < n_out && st == KILN_OK; k++)
        if (!(outs[k] = value_info(&e, e.name[ids[k]], &g->nodes[ids[k]])))
            st = KILN_ERR_NOMEM;
    if (st == KILN_OK && (e.p.nomem || !e.name))
        st = kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", path);
    if (st == KILN_OK)
        st = write_model(&e, ins, n_in, outs, (size_t)n_out, path);
    for (size_t i = 0; i < e.p.n; i++)
        free(e.p.ptr[i]);
    free(e.p.ptr);
    free(e.nodes);
    free(e.inits);
    return st;
}
