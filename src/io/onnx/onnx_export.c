/* ONNX export (docs/ONNX.md, "Writing"): an fp32 model's optimised graph as an opset-17 ONNX
 * model. Each Kiln op becomes one or a few ONNX nodes (a fused activation is a node after its
 * producer); the batch is the symbolic first dim "N" of inputs and outputs; weights become
 * initializers. An op with no ONNX form here is refused by name. */
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

static void *pool_alloc(pool *p, size_t bytes)
{
    return pool_keep(p, calloc(1, bytes ? bytes : 1));
}

static char *pool_str(pool *p, const char *fmt, const char *a, int b)
{
    char buf[160];
    snprintf(buf, sizeof buf, fmt, a, b);
    char *s = pool_alloc(p, strlen(buf) + 1);
    if (s)
        strcpy(s, buf);
    return s;
}

typedef struct {
    pool p;
    const kiln_graph_t *g;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    char **name;   /* per Kiln node: the ONNX value holding its output */
} exporter;

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

/* A new initializer of data type dt, name and dims (copied), appended to the graph; NULL when out
 * of memory. */
static Onnx__TensorProto *new_init(exporter *e, const char *name, int32_t dt, int rank, const int64_t *dims)
{
    Onnx__TensorProto *t = pool_alloc(&e->p, sizeof *t);
    int64_t *d = pool_alloc(&e->p, (size_t)(rank ? rank : 1) * sizeof(int64_t));
    char *nm = pool_str(&e->p, "%s", name, 0);
    if (!t || !d || !nm || !grow(&e->p, (void ***)&e->inits, e->n_inits, &e->cap_inits))
        return NULL;
    onnx__tensor_proto__init(t);
    memcpy(d, dims, (size_t)rank * sizeof(int64_t));
    t->name = nm;
    t->n_dims = (size_t)rank;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = dt;
    e->inits[e->n_inits++] = t;
    return t;
}

/* A float initializer of the given dims (values copied, as raw data); its name. */
static const char *init_f32(exporter *e, const char *name, int rank, const int64_t *dims, const float *v)
{
    size_t n = 1;
    for (int i = 0; i < rank; i++)
        n *= (size_t)dims[i];
    Onnx__TensorProto *t = new_init(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, dims);
    uint8_t *data = pool_alloc(&e->p, n * sizeof(float));
    if (!t || !data)
        return NULL;
    memcpy(data, v, n * sizeof(float));
    t->has_raw_data = 1;
    t->raw_data.len = n * sizeof(float);
    t->raw_data.data = data;
    return t->name;
}

/* An int64 vector initializer of n values; its name. */
static const char *init_i64(exporter *e, const char *name, int n, const int64_t *v)
{
    int64_t dims[1] = {n};
    Onnx__TensorProto *t = new_init(e, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims);
    int64_t *data = pool_alloc(&e->p, (size_t)n * sizeof(int64_t));
    if (!t || !data)
        return NULL;
    memcpy(data, v, (size_t)n * sizeof(int64_t));
    t->n_int64_data = (size_t)n;
    t->int64_data = data;
    return t->name;
}

/* Appends a node of op with inputs (n_in names) and one output named out. */
static Onnx__NodeProto *emit(exporter *e, const char *op, const char *const *in, int n_in, const char *out)
{
    Onnx__NodeProto *nd = pool_alloc(&e->p, sizeof *nd);
    char **ins = pool_alloc(&e->p, (size_t)n_in * sizeof(char *)), **outs = pool_alloc(&e->p, sizeof(char *));
    if (!nd || !ins || !outs || !grow(&e->p, (void ***)&e->nodes, e->n_nodes, &e->cap_nodes))
        return NULL;
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

/* Adds a FLOAT attribute to nd. */
static void attr_float(exporter *e, Onnx__NodeProto *nd, const char *name, float v)
{
    Onnx__AttributeProto *a = new_attr(e, nd, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a) {
        a->has_f = 1;
        a->f = v;
    }
}

static const char *act_op(kiln_op act)
{
    switch (act) {
    case KILN_OP_RELU: return "Relu";
    case KILN_OP_SIGMOID: return "Sigmoid";
    case KILN_OP_TANH: return "Tanh";
    case KILN_OP_LEAKY_RELU: return "LeakyRelu";
    default: return NULL;
    }
}

/* The node's weight tensor k with its own dims. */
static const char *param(exporter *e, const kiln_node *nd, int k, const char *suffix)
{
    int64_t d[KILN_MAX_RANK];
    for (int i = 0; i < nd->params[k].ndim; i++)
        d[i] = nd->params[k].dims[i];
    char nm[96];
    snprintf(nm, sizeof nm, "%s.%s", nd->name, suffix);
    return init_f32(e, nm, nd->params[k].ndim, d, kiln_node_tensor(e->g, nd, k));
}

/* Emits Kiln node id; its output's ONNX name into e->name[id]. */
static kiln_status export_node(exporter *e, int id)
{
    const kiln_graph_t *g = e->g;
    const kiln_node *nd = &g->nodes[id];
    const char *x = nd->n_inputs ? e->name[nd->inputs[0]] : NULL;
    kiln_op act = nd->a.act;
    char *out = pool_str(&e->p, act != KILN_OP_INPUT ? "%s.pre" : "%s", nd->name, 0);
    Onnx__NodeProto *o = NULL;
    if (!out)
        return KILN_ERR_NOMEM;
    switch (nd->op) {
    case KILN_OP_CONV2D: {
        const char *in[3] = {x, param(e, nd, 0, "weight"), nd->a.no_bias ? NULL : param(e, nd, 1, "bias")};
        o = emit(e, "Conv", in, nd->a.no_bias ? 2 : 3, out);
        int64_t k[2] = {nd->a.kernel[0], nd->a.kernel[1]}, s[2] = {nd->a.stride[0], nd->a.stride[1]},
                p[4] = {nd->a.pad[0], nd->a.pad[1], nd->a.pad[0], nd->a.pad[1]},
                d[2] = {nd->a.dilation[0], nd->a.dilation[1]}, grp = nd->a.groups;
        attr_ints(e, o, "kernel_shape", k, 2, true);
        attr_ints(e, o, "strides", s, 2, true);
        attr_ints(e, o, "pads", p, 4, true);
        attr_ints(e, o, "dilations", d, 2, true);
        attr_ints(e, o, "group", &grp, 1, false);
        break;
    }
    case KILN_OP_MAXPOOL2D:
    case KILN_OP_AVGPOOL2D: {
        if (nd->op == KILN_OP_AVGPOOL2D && (nd->a.pad[0] || nd->a.pad[1]))
            return kiln_error(KILN_ERR_ARG, "%s: avgpool2d with padding has no ONNX form here", nd->name);
        o = emit(e, nd->op == KILN_OP_MAXPOOL2D ? "MaxPool" : "AveragePool", &x, 1, out);
        int64_t k[2] = {nd->a.kernel[0], nd->a.kernel[1]}, s[2] = {nd->a.stride[0], nd->a.stride[1]},
                p[4] = {nd->a.pad[0], nd->a.pad[1], nd->a.pad[0], nd->a.pad[1]};
        attr_ints(e, o, "kernel_shape", k, 2, true);
        attr_ints(e, o, "strides", s, 2, true);
        attr_ints(e, o, "pads", p, 4, true);
        break;
    }
    case KILN_OP_DENSE:
    case KILN_OP_LINEAR: {   /* on vectors: Gemm (transB, the weight as it is); else MatMul by W^T, then the bias */
        if (g->nodes[nd->inputs[0]].rank == 1) {
            const char *in[3] = {x, param(e, nd, 0, "weight"), nd->a.no_bias ? NULL : param(e, nd, 1, "bias")};
            o = emit(e, "Gemm", in, nd->a.no_bias ? 2 : 3, out);
            int64_t one = 1;
            attr_ints(e, o, "transB", &one, 1, false);
            break;
        }
        int units = nd->a.units ? nd->a.units : nd->dims[nd->rank - 1];
        int k = (int)(nd->params[0].numel / (size_t)units);
        float *wt = pool_alloc(&e->p, (size_t)units * k * sizeof(float));
        const float *w = kiln_node_tensor(g, nd, 0);
        if (!wt)
            return KILN_ERR_NOMEM;
        for (int r = 0; r < units; r++)
            for (int c = 0; c < k; c++)
                wt[(size_t)c * units + r] = w[(size_t)r * k + c];
        char nm[96];
        snprintf(nm, sizeof nm, "%s.weight_t", nd->name);
        int64_t d[2] = {k, units};
        const char *in[2] = {x, init_f32(e, nm, 2, d, wt)};
        if (nd->a.no_bias) {
            o = emit(e, "MatMul", in, 2, out);
        } else {
            char *mm = pool_str(&e->p, "%s.matmul", nd->name, 0);
            emit(e, "MatMul", in, 2, mm);
            const char *add[2] = {mm, param(e, nd, 1, "bias")};
            o = emit(e, "Add", add, 2, out);
        }
        break;
    }
    case KILN_OP_FLATTEN:
    case KILN_OP_RESHAPE: {   /* the batch kept by a 0 */
        int64_t s[KILN_MAX_RANK + 1] = {0};
        for (int i = 0; i < nd->rank; i++)
            s[i + 1] = nd->dims[i];
        char nm[96];
        snprintf(nm, sizeof nm, "%s.shape", nd->name);
        const char *in[2] = {x, init_i64(e, nm, nd->rank + 1, s)};
        o = emit(e, "Reshape", in, 2, out);
        break;
    }
    case KILN_OP_GLOBAL_AVGPOOL: {   /* Kiln's output is (c): ONNX's (N, c, 1, 1) flattened */
        char *gp = pool_str(&e->p, "%s.pool", nd->name, 0);
        emit(e, "GlobalAveragePool", &x, 1, gp);
        const char *in[1] = {gp};
        o = emit(e, "Flatten", in, 1, out);
        break;
    }
    case KILN_OP_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH: case KILN_OP_LEAKY_RELU:
        o = emit(e, act_op(nd->op), &x, 1, out);
        if (nd->op == KILN_OP_LEAKY_RELU)
            attr_float(e, o, "alpha", nd->a.alpha);
        break;
    case KILN_OP_SOFTMAX:
    case KILN_OP_LOG_SOFTMAX: {
        o = emit(e, nd->op == KILN_OP_SOFTMAX ? "Softmax" : "LogSoftmax", &x, 1, out);
        int64_t ax = nd->a.axis < 0 ? nd->a.axis : nd->a.axis + 1;
        attr_ints(e, o, "axis", &ax, 1, false);
        break;
    }
    case KILN_OP_BATCHNORM: {
        const char *in[5] = {x, param(e, nd, 0, "weight"), param(e, nd, 1, "bias"), param(e, nd, 2, "mean"),
                             param(e, nd, 3, "var")};
        o = emit(e, "BatchNormalization", in, 5, out);
        attr_float(e, o, "epsilon", nd->a.eps);
        break;
    }
    case KILN_OP_LAYERNORM: {
        const char *in[3] = {x, param(e, nd, 0, "weight"), param(e, nd, 1, "bias")};
        o = emit(e, "LayerNormalization", in, 3, out);
        int64_t ax = -1;
        attr_ints(e, o, "axis", &ax, 1, false);
        attr_float(e, o, "epsilon", nd->a.eps);
        break;
    }
    case KILN_OP_ADD: case KILN_OP_SUB: case KILN_OP_MUL: case KILN_OP_DIV: {
        static const char *const names[] = {"Add", "Sub", "Mul", "Div"};
        int k = nd->op == KILN_OP_ADD ? 0 : nd->op == KILN_OP_SUB ? 1 : nd->op == KILN_OP_MUL ? 2 : 3;
        if (nd->n_inputs != 2)
            return kiln_error(KILN_ERR_ARG, "%s: an add of %d inputs has no ONNX form here", nd->name, nd->n_inputs);
        const char *in[2] = {x, e->name[nd->inputs[1]]};
        o = emit(e, names[k], in, 2, out);
        break;
    }
    case KILN_OP_PARAM:
    case KILN_OP_CONST: {   /* unbatched: an initializer of its per-example shape */
        if (nd->op == KILN_OP_CONST && nd->a.dtype != KILN_DT_F32)
            return kiln_error(KILN_ERR_ARG, "%s: an i64/bool constant read at run time has no ONNX form here", nd->name);
        int64_t d[KILN_MAX_RANK];
        for (int i = 0; i < nd->rank; i++)
            d[i] = nd->dims[i];
        e->name[id] = (char *)init_f32(e, nd->name, nd->rank, d, kiln_node_tensor(g, nd, 0));
        return e->name[id] ? KILN_OK : KILN_ERR_NOMEM;
    }
    case KILN_OP_CONCAT: {
        const char *in[KILN_MAX_INPUTS];
        for (int j = 0; j < nd->n_inputs; j++)
            in[j] = e->name[nd->inputs[j]];
        o = emit(e, "Concat", in, nd->n_inputs, out);
        int64_t ax = nd->a.axis < 0 ? nd->a.axis : nd->a.axis + 1;
        attr_ints(e, o, "axis", &ax, 1, false);
        break;
    }
    case KILN_OP_TRANSPOSE: {
        int64_t perm[KILN_MAX_RANK + 1] = {0};
        for (int i = 0; i < nd->rank; i++)
            perm[i + 1] = nd->a.perm[i] + 1;
        o = emit(e, "Transpose", &x, 1, out);
        attr_ints(e, o, "perm", perm, nd->rank + 1, true);
        break;
    }
    default:
        return kiln_error(KILN_ERR_ARG, "%s: op %s has no ONNX form yet", nd->name, kiln_op_name(nd->op));
    }
    if (!o)
        return kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", nd->name);
    if (act != KILN_OP_INPUT) {   /* the fused activation as its own node */
        if (!act_op(act))
            return kiln_error(KILN_ERR_ARG, "%s: a fused %s has no ONNX form here", nd->name, kiln_op_name(act));
        char *fin = pool_str(&e->p, "%s", nd->name, 0);
        const char *in[1] = {out};
        Onnx__NodeProto *a = emit(e, act_op(act), in, 1, fin);
        if (act == KILN_OP_LEAKY_RELU)
            attr_float(e, a, "alpha", nd->a.alpha);
        out = fin;
    }
    e->name[id] = out;
    return e->p.nomem ? kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", nd->name) : KILN_OK;
}

/* A graph input or output value: float, dims ("N", per-example...). */
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
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    v->name = (char *)name;
    v->type = t;
    return v;
}

kiln_status kiln_model_export_onnx(const kiln_model_t *m, const char *path)
{
    if (m->q)
        return kiln_error(KILN_ERR_ARG, "%s: exporting int8 models to ONNX is not built yet; export the fp32 model",
                          path);
    exporter e = {.g = m->g};
    const kiln_graph_t *g = m->g;
    kiln_status st = KILN_OK;
    e.name = pool_alloc(&e.p, (size_t)g->n * sizeof(char *));
    Onnx__ValueInfoProto *ins[KILN_MAX_INPUTS + 8], *outs[KILN_MAX_OUTPUTS];
    size_t n_in = 0;
    for (int i = 0; e.name && i < g->n && st == KILN_OK; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_INPUT) {
            if (nd->dtype != KILN_DT_F32)
                st = kiln_error(KILN_ERR_ARG, "%s: input %s: only f32 inputs are exported yet", path, nd->name);
            else if (!(e.name[i] = pool_str(&e.p, "%s", nd->name, 0)) || !(ins[n_in++] = value_info(&e, e.name[i], nd)))
                st = KILN_ERR_NOMEM;
            continue;
        }
        if (kiln_op_is_view(nd->op) && nd->op != KILN_OP_RESHAPE && nd->op != KILN_OP_FLATTEN) {
            e.name[i] = e.name[nd->inputs[0]];
            continue;
        }
        st = export_node(&e, i);
    }
    int ids[KILN_MAX_OUTPUTS], n_out = kiln_graph_outputs(g, ids);
    for (int k = 0; k < n_out && st == KILN_OK; k++)
        if (!(outs[k] = value_info(&e, e.name[ids[k]], &g->nodes[ids[k]])))
            st = KILN_ERR_NOMEM;
    if (st == KILN_OK && (e.p.nomem || !e.name))
        st = kiln_error(KILN_ERR_NOMEM, "out of memory exporting %s", path);
    if (st == KILN_OK) {
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
        gp.n_node = e.n_nodes;
        gp.node = e.nodes;
        gp.n_initializer = e.n_inits;
        gp.initializer = e.inits;
        gp.n_input = n_in;
        gp.input = ins;
        gp.n_output = (size_t)n_out;
        gp.output = outs;
        mp.has_ir_version = 1;
        mp.ir_version = 8;
        mp.producer_name = "kiln";
        mp.n_opset_import = 1;
        mp.opset_import = opsets;
        mp.graph = &gp;
        size_t len = onnx__model_proto__get_packed_size(&mp);
        uint8_t *buf = malloc(len ? len : 1);
        kiln_atomic_file f;
        if (!buf) {
            st = kiln_error(KILN_ERR_NOMEM, "out of memory for %zu bytes exporting %s", len, path);
        } else {
            onnx__model_proto__pack(&mp, buf);
            if ((st = kiln_atomic_open(&f, path)) == KILN_OK) {
                if (fwrite(buf, 1, len, f.fp) != len) {
                    kiln_atomic_abort(&f);
                    st = kiln_error(KILN_ERR_IO, "%s: short write", path);
                } else {
                    st = kiln_atomic_commit(&f);
                }
            }
        }
        free(buf);
    }
    for (size_t i = 0; i < e.p.n; i++)
        free(e.p.ptr[i]);
    free(e.p.ptr);
    free(e.nodes);
    free(e.inits);
    return st;
}
