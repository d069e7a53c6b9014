/* Constant folding at graph construction (docs/IR.md, "Constants"): a node whose inputs are all
 * constants is evaluated when it is added and becomes a const holding the result. i64 and bool
 * tensors exist only as constants, so an op that would run on one is refused here. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"
#include "ops/ops.h"

/* A tensor's values as folding reads and writes them: int64 (I64, BOOL) or float (F32). */
typedef struct {
    const kiln_node *nd;    /* its shape */
    int64_t *i;
    float *f;
} values;

static kiln_status fold_error(const kiln_node *nd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static kiln_status fold_error(const kiln_node *nd, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_ERR_SHAPE, "%s: %s: %s", nd->name, kiln_op_name(nd->op), msg);
}

/* The values of const node x. */
static values values_of(const kiln_graph_t *g, const kiln_node *x)
{
    values v = {x, NULL, NULL};
    if (x->dtype == KILN_DT_F32)
        v.f = kiln_node_tensor(g, x, 0);
    else
        v.i = (int64_t *)kiln_const_ints(x);
    return v;
}

/* Index into x of element k of out under NumPy broadcasting (shapes aligned from the right). */
static size_t bcast_at(const kiln_node *out, const kiln_node *x, size_t k)
{
    size_t at = 0, stride = 1;
    for (int d = out->rank - 1, e = x->rank - 1; d >= 0 && e >= 0; d--, e--) {
        size_t c = k % (size_t)out->dims[d];
        k /= (size_t)out->dims[d];
        if (x->dims[e] != 1)
            at += c * stride;
        stride *= (size_t)x->dims[e];
    }
    return at;
}

/* r[k] = v[s] (the same dtype). */
static void put(values *r, size_t k, const values *v, size_t s)
{
    if (r->i)
        r->i[k] = v->i[s];
    else
        r->f[k] = v->f[s];
}

/* x op y on int64 with the wrap-around of two's complement; false for a division by zero. */
static bool int_arith(kiln_op op, int64_t x, int64_t y, int64_t *r)
{
    uint64_t ux = (uint64_t)x, uy = (uint64_t)y;
    switch (op) {
    case KILN_OP_ADD: *r = (int64_t)(ux + uy); return true;
    case KILN_OP_SUB: *r = (int64_t)(ux - uy); return true;
    case KILN_OP_MUL: *r = (int64_t)(ux * uy); return true;
    case KILN_OP_MIN: *r = x < y ? x : y; return true;
    case KILN_OP_MAX: *r = x > y ? x : y; return true;
    case KILN_OP_POW: {   /* a negative exponent truncates toward zero, as integer division */
        uint64_t p = 1, b = ux;
        if (y < 0) {
            *r = x == 1 ? 1 : x == -1 ? (y % 2 ? -1 : 1) : 0;
            return x != 0;
        }
        for (; y; y >>= 1, b *= b)
            if (y & 1)
                p *= b;
        *r = (int64_t)p;
        return true;
    }
    default:   /* div: truncation toward zero, as C and ONNX's integer Div */
        if (y == 0)
            return false;
        *r = (x == INT64_MIN && y == -1) ? INT64_MIN : x / y;
        return true;
    }
}

/* add/sub/mul/div over every input, left to right, broadcast. */
static kiln_status eval_arith(const kiln_node *nd, const values *in, values *r)
{
    for (size_t k = 0; k < nd->numel; k++) {
        if (r->i) {
            int64_t acc = in[0].i[bcast_at(nd, in[0].nd, k)];
            for (int j = 1; j < nd->n_inputs; j++) {
                int64_t y = in[j].i[bcast_at(nd, in[j].nd, k)];
                if (!int_arith(nd->op, acc, y, &acc))
                    return fold_error(nd, "integer division by zero at element %zu", k);
            }
            r->i[k] = acc;
        } else {
            float acc = in[0].f[bcast_at(nd, in[0].nd, k)];
            for (int j = 1; j < nd->n_inputs; j++) {
                float y = in[j].f[bcast_at(nd, in[j].nd, k)];
                switch (nd->op) {
                case KILN_OP_ADD: acc += y; break;
                case KILN_OP_SUB: acc -= y; break;
                case KILN_OP_MUL: acc *= y; break;
                case KILN_OP_DIV: acc /= y; break;
                case KILN_OP_POW: acc = powf(acc, y); break;
                case KILN_OP_MIN: acc = acc != acc || acc < y ? acc : y; break;
                default: acc = acc != acc || acc > y ? acc : y; break;
                }
            }
            if (!isfinite(acc))
                return fold_error(nd, "element %zu is %g: constants must be finite", k, acc);
            r->f[k] = acc;
        }
    }
    return KILN_OK;
}

/* The elementwise math ops, clip and not (int64 inputs: abs, neg, clip and not only). */
static kiln_status eval_unary(const kiln_node *nd, const values *x, values *r)
{
    for (size_t k = 0; k < nd->numel; k++) {
        if (r->i) {
            int64_t v = x->i[k];
            switch (nd->op) {
            case KILN_OP_NOT: v = !v; break;
            case KILN_OP_ABS: v = v < 0 ? (int64_t)(0 - (uint64_t)v) : v; break;
            case KILN_OP_NEG: v = (int64_t)(0 - (uint64_t)v); break;
            default:   /* clip: the float bounds, whole numbers inward */
                v = (double)v < nd->a.lo ? (int64_t)ceil(nd->a.lo) : (double)v > nd->a.hi ? (int64_t)floor(nd->a.hi) : v;
                break;
            }
            r->i[k] = v;
        } else {
            float v = kiln_unary_value(nd->op, &nd->a, x->f[k]);
            if (!isfinite(v))
                return fold_error(nd, "element %zu is %g: constants must be finite", k, v);
            r->f[k] = v;
        }
    }
    return KILN_OK;
}

/* equal/less/greater into bool. */
static void eval_compare(const kiln_node *nd, const values *in, values *r)
{
    for (size_t k = 0; k < nd->numel; k++) {
        size_t a = bcast_at(nd, in[0].nd, k), b = bcast_at(nd, in[1].nd, k);
        int c = in[0].i ? (in[0].i[a] > in[1].i[b]) - (in[0].i[a] < in[1].i[b])
                        : (in[0].f[a] > in[1].f[b]) - (in[0].f[a] < in[1].f[b]);
        r->i[k] = nd->op == KILN_OP_EQUAL ? c == 0 : nd->op == KILN_OP_LESS ? c < 0 : c > 0;
    }
}

/* cast to r's dtype: f32 -> i64 truncates toward zero, anything -> bool is "not zero". */
static kiln_status eval_cast(const kiln_node *nd, const values *x, values *r)
{
    for (size_t k = 0; k < nd->numel; k++) {
        if (nd->a.dtype == KILN_DT_F32) {
            r->f[k] = x->i ? (float)x->i[k] : x->f[k];
        } else if (nd->a.dtype == KILN_DT_BOOL) {
            r->i[k] = x->i ? x->i[k] != 0 : x->f[k] != 0.0f;
        } else if (x->i) {
            r->i[k] = x->i[k];
        } else {
            double v = trunc((double)x->f[k]);
            if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
                return fold_error(nd, "element %zu, %g, does not fit I64", k, x->f[k]);
            r->i[k] = (int64_t)v;
        }
    }
    return KILN_OK;
}

/* Blocks of a split around axis ax: outer (before it), and per index along it, inner (after). */
static size_t outer_of(const kiln_node *x, int ax)
{
    size_t n = 1;
    for (int i = 0; i < ax; i++)
        n *= (size_t)x->dims[i];
    return n;
}

static size_t inner_of(const kiln_node *x, int ax)
{
    size_t n = 1;
    for (int i = ax + 1; i < x->rank; i++)
        n *= (size_t)x->dims[i];
    return n;
}

static void eval_concat(const kiln_node *nd, const values *in, values *r)
{
    int ax = nd->a.axis;
    size_t outer = outer_of(nd, ax), inner = inner_of(nd, ax), k = 0;
    for (size_t o = 0; o < outer; o++)
        for (int j = 0; j < nd->n_inputs; j++) {
            size_t run = (size_t)in[j].nd->dims[ax] * inner;
            for (size_t e = 0; e < run; e++)
                put(r, k++, &in[j], o * run + e);
        }
}

static void eval_slice(const kiln_node *nd, const values *x, values *r)
{
    const kiln_attrs *a = &nd->a;
    size_t outer = outer_of(nd, a->axis), inner = inner_of(nd, a->axis), len = (size_t)x->nd->dims[a->axis], k = 0;
    for (size_t o = 0; o < outer; o++)
        for (int t = 0; t < nd->dims[a->axis]; t++)
            for (size_t e = 0; e < inner; e++)
                put(r, k++, x, (o * len + (size_t)a->start + (size_t)t * (size_t)a->step) * inner + e);
}

static void eval_transpose(const kiln_node *nd, const values *x, values *r)
{
    size_t stride[KILN_MAX_RANK], s = 1;   /* the input's strides */
    for (int i = x->nd->rank - 1; i >= 0; i--) {
        stride[i] = s;
        s *= (size_t)x->nd->dims[i];
    }
    for (size_t k = 0; k < nd->numel; k++) {
        size_t rest = k, at = 0;
        for (int i = nd->rank - 1; i >= 0; i--) {   /* output axis i is input axis perm[i] */
            at += rest % (size_t)nd->dims[i] * stride[nd->a.perm[i]];
            rest /= (size_t)nd->dims[i];
        }
        put(r, k, x, at);
    }
}

/* The dtype nd's result has, or an error when its inputs' dtypes do not fit the op. */
static kiln_status result_dtype(const kiln_graph_t *g, const kiln_node *nd, kiln_dtype *out)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    int first = 0;
    switch (nd->op) {
    case KILN_OP_SHAPE: *out = KILN_DT_I64; return KILN_OK;
    case KILN_OP_CAST: *out = nd->a.dtype; return KILN_OK;
    case KILN_OP_WHERE:
        if (x->dtype != KILN_DT_BOOL)
            return fold_error(nd, "condition %s is %s, expected BOOL", x->name, kiln_dtype_name(x->dtype));
        first = 1;
        break;
    default:
        break;
    }
    const kiln_node *y = &g->nodes[nd->inputs[first]];
    for (int j = first + 1; j < nd->n_inputs; j++) {
        const kiln_node *z = &g->nodes[nd->inputs[j]];
        if (z->dtype != y->dtype)
            return fold_error(nd, "inputs %s and %s are %s and %s: cast one first", y->name, z->name,
                              kiln_dtype_name(y->dtype), kiln_dtype_name(z->dtype));
    }
    bool arith = nd->op == KILN_OP_ADD || nd->op == KILN_OP_SUB || nd->op == KILN_OP_MUL || nd->op == KILN_OP_DIV ||
                 nd->op == KILN_OP_POW || nd->op == KILN_OP_MIN || nd->op == KILN_OP_MAX || nd->op == KILN_OP_ABS ||
                 nd->op == KILN_OP_NEG || nd->op == KILN_OP_CLIP;
    bool float_only = nd->op >= KILN_OP_SQRT && nd->op <= KILN_OP_ERF && nd->op != KILN_OP_ABS && nd->op != KILN_OP_NEG;
    if (arith && y->dtype == KILN_DT_BOOL)
        return fold_error(nd, "arithmetic on BOOL input %s: cast it first", y->name);
    if (float_only && y->dtype != KILN_DT_F32)
        return fold_error(nd, "input %s is %s, expected F32", y->name, kiln_dtype_name(y->dtype));
    if (nd->op == KILN_OP_NOT && y->dtype != KILN_DT_BOOL)
        return fold_error(nd, "input %s is %s, expected BOOL", y->name, kiln_dtype_name(y->dtype));
    bool compare = nd->op == KILN_OP_EQUAL || nd->op == KILN_OP_LESS || nd->op == KILN_OP_GREATER;
    *out = compare ? KILN_DT_BOOL : y->dtype;
    return KILN_OK;
}

/* Evaluates nd (inputs constants, or a shape) into r. */
static kiln_status evaluate(const kiln_graph_t *g, const kiln_node *nd, values *r)
{
    values in[KILN_MAX_INPUTS];
    for (int j = 0; j < nd->n_inputs && nd->op != KILN_OP_SHAPE; j++)
        in[j] = values_of(g, &g->nodes[nd->inputs[j]]);
    switch (nd->op) {
    case KILN_OP_SHAPE: {
        const kiln_node *x = &g->nodes[nd->inputs[0]];
        for (int i = 0; i < x->rank; i++)
            r->i[i] = x->dims[i];
        return KILN_OK;
    }
    case KILN_OP_ADD: case KILN_OP_SUB: case KILN_OP_MUL: case KILN_OP_DIV:
    case KILN_OP_POW: case KILN_OP_MIN: case KILN_OP_MAX:
        return eval_arith(nd, in, r);
    case KILN_OP_SQRT: case KILN_OP_EXP: case KILN_OP_LOG: case KILN_OP_ABS: case KILN_OP_NEG:
    case KILN_OP_RECIPROCAL: case KILN_OP_FLOOR: case KILN_OP_CEIL: case KILN_OP_ROUND: case KILN_OP_ERF:
    case KILN_OP_CLIP: case KILN_OP_NOT:
        return eval_unary(nd, &in[0], r);
    case KILN_OP_EQUAL: case KILN_OP_LESS: case KILN_OP_GREATER:
        eval_compare(nd, in, r);
        return KILN_OK;
    case KILN_OP_WHERE:
        for (size_t k = 0; k < nd->numel; k++) {
            int pick = in[0].i[bcast_at(nd, in[0].nd, k)] ? 1 : 2;
            put(r, k, &in[pick], bcast_at(nd, in[pick].nd, k));
        }
        return KILN_OK;
    case KILN_OP_CAST:
        return eval_cast(nd, &in[0], r);
    case KILN_OP_CONCAT:
        eval_concat(nd, in, r);
        return KILN_OK;
    case KILN_OP_SLICE:
        eval_slice(nd, &in[0], r);
        return KILN_OK;
    case KILN_OP_TRANSPOSE:
        eval_transpose(nd, &in[0], r);
        return KILN_OK;
    case KILN_OP_RESHAPE:   /* the same values under the new shape */
        for (size_t k = 0; k < nd->numel; k++)
            put(r, k, &in[0], k);
        return KILN_OK;
    default:
        return fold_error(nd, "cannot be folded");
    }
}

/* Turns nd into a const holding its evaluated value. */
static kiln_status fold(kiln_graph_t *g, kiln_node *nd)
{
    kiln_dtype dt = KILN_DT_F32;
    kiln_status st = result_dtype(g, nd, &dt);
    if (st != KILN_OK)
        return st;
    values r = {nd, NULL, NULL};
    if (dt == KILN_DT_F32)
        r.f = malloc(nd->numel * sizeof(float) + 1);
    else
        r.i = malloc(nd->numel * sizeof(int64_t) + 1);
    if (!r.f && !r.i)
        return kiln_error(KILN_ERR_NOMEM, "out of memory folding %s", nd->name);
    st = evaluate(g, nd, &r);
    if (st == KILN_OK) {
        kiln_attrs a = {.rank = nd->rank, .dtype = dt};
        a.values = r.f ? (const void *)r.f : (const void *)r.i;
        memcpy(a.shape, nd->dims, sizeof a.shape);
        nd->op = KILN_OP_CONST;
        nd->n_inputs = 0;
        memset(nd->inputs, 0, sizeof nd->inputs);
        nd->a = a;
        st = kiln_infer_const(g, nd);
    }
    free(r.f);
    free(r.i);
    return st;
}

kiln_status kiln_fold_node(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_op_def *def = kiln_op_def_of(nd->op);
    if (nd->n_inputs == 0)
        return KILN_OK;
    bool all_const = true;
    int special = -1;   /* the first i64/bool input */
    for (int j = 0; j < nd->n_inputs; j++) {
        const kiln_node *x = &g->nodes[nd->inputs[j]];
        all_const = all_const && x->op == KILN_OP_CONST;
        if (special < 0 && kiln_dtype_const_only(x->dtype))
            special = j;
    }
    /* a fused activation (act=) is not evaluated here: such a node runs */
    if (nd->op == KILN_OP_SHAPE || (def->fold != KILN_FOLD_NEVER && all_const && nd->a.act == KILN_OP_INPUT))
        return fold(g, nd);
    int live = -1;   /* the first input computed at run time */
    for (int j = 0; j < nd->n_inputs && live < 0; j++)
        if (g->nodes[nd->inputs[j]].op != KILN_OP_CONST)
            live = j;
    if (def->fold == KILN_FOLD_ONLY && live >= 0)
        return fold_error(nd, "input %s is computed at run time; %s runs only on constants for now (folded when the "
                          "graph is built)", g->nodes[nd->inputs[live]].name, def->name);
    if (special >= 0) {
        const kiln_node *x = &g->nodes[nd->inputs[special]];
        if (def->fold == KILN_FOLD_NEVER || live < 0)
            return fold_error(nd, "input %s is %s: i64/bool tensors exist only as constants for shape arithmetic, "
                              "and %s does not take them (training and runtime kernels are f32/i32)", x->name,
                              kiln_dtype_name(x->dtype), def->name);
        return fold_error(nd, "input %s is %s and input %s is computed at run time: i64/bool tensors exist only as "
                          "constants, and %s folds only when every input is one (training and runtime kernels are "
                          "f32/i32)", x->name, kiln_dtype_name(x->dtype), g->nodes[nd->inputs[live]].name, def->name);
    }
    return KILN_OK;
}
