/* Shape inference of the N-d ops: each sets the node's output tensor from its inputs and
 * attributes and reserves its parameters. Errors name the node, the op and the shapes. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"

const char *kiln_shape_str(char *buf, size_t n, int rank, const int *dims)
{
    if (rank == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < rank && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? "x" : "", dims[i]);
    return buf;
}

/* The input j of nd. */
static const kiln_node *in_of(const kiln_graph_t *g, const kiln_node *nd, int j)
{
    return &g->nodes[nd->inputs[j]];
}

/* The output is batched when any input is (params are not). */
static bool any_batched(const kiln_graph_t *g, const kiln_node *nd)
{
    for (int j = 0; j < nd->n_inputs; j++)
        if (in_of(g, nd, j)->batched)
            return true;
    return false;
}

#define SHAPE(buf, x) kiln_shape_str(buf, sizeof buf, (x)->rank, (x)->dims)

static kiln_status fail(const kiln_node *nd, kiln_status st, const char *what)
{
    return kiln_error(st, "%s: %s: %s", nd->name, kiln_op_name(nd->op), what);
}

kiln_status kiln_infer_param(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_attrs *a = &nd->a;
    if (a->rank < 0 || a->rank > KILN_MAX_RANK)
        return fail(nd, KILN_ERR_ARG, "rank out of 0..6");
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] <= 0)
            return fail(nd, KILN_ERR_ARG, "dims must be positive");
    if (a->std < 0)
        return fail(nd, KILN_ERR_ARG, "std must not be negative");
    kiln_node_set_shape(nd, a->rank, a->shape);
    nd->batched = false;
    return kiln_node_add_param(g, nd, "weight", true, a->rank, a->shape);
}

kiln_status kiln_infer_linear(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    if (x->rank < 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: linear: input %s is a scalar, expected rank >= 1", nd->name, x->name);
    if (nd->a.units <= 0)
        return fail(nd, KILN_ERR_ARG, "units must be positive");
    int d[KILN_MAX_RANK];
    memcpy(d, x->dims, sizeof d);
    int in_f = d[x->rank - 1];
    d[x->rank - 1] = nd->a.units;
    kiln_node_set_shape(nd, x->rank, d);
    nd->batched = x->batched;
    int wd[2] = {nd->a.units, in_f};
    if (kiln_node_add_param(g, nd, "weight", true, 2, wd) != KILN_OK ||
        (!nd->a.no_bias && kiln_node_add_param(g, nd, "bias", true, 1, wd) != KILN_OK))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

kiln_status kiln_infer_matmul(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0), *y = in_of(g, nd, 1);
    char sa[64], sb[64];
    if (x->rank < 2 || y->rank < 2)
        return kiln_error(KILN_ERR_SHAPE, "%s: matmul: operands need rank >= 2, found %s and %s", nd->name,
                          SHAPE(sa, x), SHAPE(sb, y));
    int m = x->dims[x->rank - 2], k = x->dims[x->rank - 1], k2 = y->dims[y->rank - 2], n = y->dims[y->rank - 1];
    if (k != k2)
        return kiln_error(KILN_ERR_SHAPE, "%s: matmul: inner dims differ: %s and %s", nd->name, SHAPE(sa, x),
                          SHAPE(sb, y));
    int r = x->rank > y->rank ? x->rank : y->rank, d[KILN_MAX_RANK];
    for (int i = 0; i < r - 2; i++) {   /* leading dims, aligned from the right */
        int ix = i - (r - x->rank), iy = i - (r - y->rank);
        int dx = ix >= 0 ? x->dims[ix] : 1, dy = iy >= 0 ? y->dims[iy] : 1;
        if (dx != dy && dx != 1 && dy != 1)
            return kiln_error(KILN_ERR_SHAPE, "%s: matmul: leading dims do not broadcast: %s and %s", nd->name,
                              SHAPE(sa, x), SHAPE(sb, y));
        d[i] = dx > dy ? dx : dy;
    }
    d[r - 2] = m;
    d[r - 1] = n;
    kiln_node_set_shape(nd, r, d);
    nd->batched = any_batched(g, nd);
    return KILN_OK;
}

kiln_status kiln_infer_norm(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    if (x->rank < 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: %s: input %s is a scalar, expected rank >= 1", nd->name,
                          kiln_op_name(nd->op), x->name);
    kiln_node_set_shape(nd, x->rank, x->dims);
    nd->batched = x->batched;
    int d[1] = {x->dims[x->rank - 1]};
    if (kiln_node_add_param(g, nd, "weight", true, 1, d) != KILN_OK ||
        (nd->op == KILN_OP_LAYERNORM && kiln_node_add_param(g, nd, "bias", true, 1, d) != KILN_OK))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

kiln_status kiln_infer_softmax(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    char s[64], msg[128];
    if (kiln_axis(nd->a.axis, x->rank) < 0) {
        snprintf(msg, sizeof msg, "axis %d is outside input %s", nd->a.axis, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    kiln_node_set_shape(nd, x->rank, x->dims);
    nd->batched = x->batched;
    return KILN_OK;
}

kiln_status kiln_infer_clip(kiln_graph_t *g, kiln_node *nd)
{
    char msg[96];
    if (!(nd->a.lo <= nd->a.hi)) {
        snprintf(msg, sizeof msg, "lo %g is not at most hi %g", nd->a.lo, nd->a.hi);
        return fail(nd, KILN_ERR_ARG, msg);
    }
    return kiln_infer_same(g, nd);
}

kiln_status kiln_infer_same(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    kiln_node_set_shape(nd, x->rank, x->dims);
    nd->batched = x->batched;
    return KILN_OK;
}

/* Reads reshape's second input, an i64 constant target shape with ONNX's rules (0 copies the
 * input's dim at that position, -1 is inferred), into a->rank and a->shape, and drops the input:
 * the node is then a static reshape. */
static kiln_status shape_from_const(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0), *s = in_of(g, nd, 1);
    char sh[64], msg[224];
    if (s->op != KILN_OP_CONST || s->dtype != KILN_DT_I64 || s->rank != 1 || s->dims[0] > KILN_MAX_RANK) {
        snprintf(msg, sizeof msg, "target shape %s is %s%s of shape %s, expected an i64 constant of rank 1 with "
                 "1..6 values", s->name, s->op == KILN_OP_CONST ? "a const " : "", kiln_dtype_name(s->dtype),
                 SHAPE(sh, s));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    const int64_t *v = kiln_const_ints(s);
    nd->a.rank = s->dims[0];
    for (int i = 0; i < nd->a.rank; i++) {
        if (v[i] == 0 && i >= x->rank) {
            snprintf(msg, sizeof msg, "target entry %d is 0 (copy the input's dim) but input %s is %s", i, x->name,
                     SHAPE(sh, x));
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
        if (v[i] < -1 || v[i] > 1000000000) {
            snprintf(msg, sizeof msg, "target entry %d is %lld, expected -1, 0 or a dim", i, (long long)v[i]);
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
        nd->a.shape[i] = v[i] == 0 ? x->dims[i] : (int)v[i];
    }
    nd->n_inputs = 1;
    nd->inputs[1] = 0;
    return KILN_OK;
}

kiln_status kiln_infer_reshape(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    kiln_attrs *a = &nd->a;
    char s[64], t[64], msg[192];
    bool from_const = nd->n_inputs == 2;
    if (from_const) {
        kiln_status st = shape_from_const(g, nd);
        if (st != KILN_OK)
            return st;
    }
    if (a->rank < 0 || a->rank > KILN_MAX_RANK)
        return fail(nd, KILN_ERR_ARG, "target rank out of 0..6");
    int d[KILN_MAX_RANK] = {0}, infer_at = -1;
    size_t known = 1;
    for (int i = 0; i < a->rank; i++) {
        d[i] = a->shape[i];
        if (d[i] == -1 && infer_at < 0)
            infer_at = i;
        else if (d[i] <= 0)
            return fail(nd, KILN_ERR_ARG, "target dims must be positive, with at most one -1");
        else
            known *= (size_t)d[i];
    }
    if (infer_at >= 0) {
        if (known == 0 || x->numel % known) {
            snprintf(msg, sizeof msg, "cannot reshape %s to %s", SHAPE(s, x),
                     kiln_shape_str(t, sizeof t, a->rank, a->shape));
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
        d[infer_at] = (int)(x->numel / known);
        known *= (size_t)d[infer_at];
    }
    if (known != x->numel) {
        snprintf(msg, sizeof msg, "cannot reshape %s (%zu elements) to %s", SHAPE(s, x), x->numel,
                 kiln_shape_str(t, sizeof t, a->rank, a->shape));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    kiln_node_set_shape(nd, a->rank, d);
    nd->batched = x->batched;
    if (from_const)   /* written back resolved, so the spec says the static reshape it is */
        memcpy(a->shape, d, (size_t)a->rank * sizeof *d);
    return KILN_OK;
}

kiln_status kiln_infer_transpose(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    const kiln_attrs *a = &nd->a;
    char s[64], msg[160];
    if (a->rank != x->rank || a->rank == 0) {
        snprintf(msg, sizeof msg, "permutation of %d axes for input %s of rank %d", a->rank, SHAPE(s, x), x->rank);
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    int d[KILN_MAX_RANK];
    unsigned seen = 0;
    for (int i = 0; i < a->rank; i++) {
        int p = a->perm[i];
        if (p < 0 || p >= x->rank || (seen >> p & 1))
            return fail(nd, KILN_ERR_ARG, "perm is not a permutation of the input's axes");
        seen |= 1u << p;
        d[i] = x->dims[p];
    }
    kiln_node_set_shape(nd, x->rank, d);
    nd->batched = x->batched;
    return KILN_OK;
}

kiln_status kiln_infer_slice(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    kiln_attrs *a = &nd->a;
    char s[64], msg[192];
    int ax = kiln_axis(a->axis, x->rank);
    if (ax < 0) {
        snprintf(msg, sizeof msg, "axis %d is outside input %s", a->axis, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    int len = x->dims[ax], st = a->start < 0 ? a->start + len : a->start;
    int en = a->end == 0 ? len : a->end < 0 ? a->end + len : a->end;
    en = en > len ? len : en;
    if (a->step < 0)
        return fail(nd, KILN_ERR_ARG, "step must be positive");
    int step = a->step ? a->step : 1;
    if (st < 0 || st >= en) {
        snprintf(msg, sizeof msg, "slice %d:%d of axis %d (length %d) of input %s is empty", a->start, a->end, ax,
                 len, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    a->axis = ax;       /* resolved: kernels read them as they are */
    a->start = st;
    a->end = en;
    a->step = step;
    int d[KILN_MAX_RANK];
    memcpy(d, x->dims, sizeof d);
    d[ax] = (en - st + step - 1) / step;
    kiln_node_set_shape(nd, x->rank, d);
    nd->batched = x->batched;
    return KILN_OK;
}

kiln_status kiln_infer_concat(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    char s[64], t[64], msg[224];
    if (nd->n_inputs < 2)
        return fail(nd, KILN_ERR_ARG, "needs at least 2 inputs");
    int ax = kiln_axis(nd->a.axis, x->rank);
    if (ax < 0) {
        snprintf(msg, sizeof msg, "axis %d is outside input %s", nd->a.axis, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    int d[KILN_MAX_RANK];
    memcpy(d, x->dims, sizeof d);
    d[ax] = 0;
    for (int j = 0; j < nd->n_inputs; j++) {
        const kiln_node *y = in_of(g, nd, j);
        bool same = y->rank == x->rank;
        for (int i = 0; same && i < x->rank; i++)
            same = i == ax || y->dims[i] == x->dims[i];
        if (!same) {
            snprintf(msg, sizeof msg, "input %s has shape %s, expected %s but for axis %d", y->name, SHAPE(s, y),
                     SHAPE(t, x), ax);
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
        d[ax] += y->dims[ax];
    }
    nd->a.axis = ax;
    kiln_node_set_shape(nd, x->rank, d);
    nd->batched = any_batched(g, nd);
    return KILN_OK;
}

kiln_status kiln_infer_broadcast(kiln_graph_t *g, kiln_node *nd)
{
    char s[64], t[64], msg[224];
    if (nd->op != KILN_OP_ADD && nd->op != KILN_OP_WHERE && nd->op != KILN_OP_MIN && nd->op != KILN_OP_MAX &&
        nd->n_inputs != 2)
        return fail(nd, KILN_ERR_ARG, "takes exactly 2 inputs");
    int r = 0, d[KILN_MAX_RANK];
    for (int j = 0; j < nd->n_inputs; j++)
        r = in_of(g, nd, j)->rank > r ? in_of(g, nd, j)->rank : r;
    for (int i = 0; i < r; i++)
        d[i] = 1;
    for (int j = 0; j < nd->n_inputs; j++) {
        const kiln_node *y = in_of(g, nd, j);
        for (int i = 0; i < y->rank; i++) {
            int k = i + r - y->rank, v = y->dims[i];
            if (v != d[k] && v != 1 && d[k] != 1) {
                snprintf(msg, sizeof msg, "input %s of shape %s does not broadcast with %s", y->name, SHAPE(s, y),
                         kiln_shape_str(t, sizeof t, r, d));
                return fail(nd, KILN_ERR_SHAPE, msg);
            }
            d[k] = v > d[k] ? v : d[k];
        }
    }
    kiln_node_set_shape(nd, r, d);
    nd->batched = any_batched(g, nd);
    return KILN_OK;
}

kiln_status kiln_infer_embedding(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    if (x->dtype != KILN_DT_I32)
        return kiln_error(KILN_ERR_SHAPE, "%s: embedding: input %s is %s, expected I32 indices", nd->name, x->name,
                          kiln_dtype_name(x->dtype));
    if (x->rank >= KILN_MAX_RANK)
        return fail(nd, KILN_ERR_SHAPE, "input rank leaves no room for the width axis");
    if (nd->a.vocab <= 0 || nd->a.units <= 0)
        return fail(nd, KILN_ERR_ARG, "vocabulary and width must be positive");
    int d[KILN_MAX_RANK];
    memcpy(d, x->dims, sizeof d);
    d[x->rank] = nd->a.units;
    kiln_node_set_shape(nd, x->rank + 1, d);
    nd->batched = x->batched;
    int wd[2] = {nd->a.vocab, nd->a.units};
    return kiln_node_add_param(g, nd, "weight", true, 2, wd);
}

kiln_status kiln_infer_attention(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *q = in_of(g, nd, 0);
    char s[64], t[64], msg[224];
    int h = nd->a.heads;
    if (nd->n_inputs != 1 && nd->n_inputs != 3)
        return fail(nd, KILN_ERR_ARG, "takes packed qkv (1 input) or q, k, v (3 inputs)");
    if (q->rank != 2) {
        snprintf(msg, sizeof msg, "input %s is %s, expected (tokens, width)", q->name, SHAPE(s, q));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    int width = nd->n_inputs == 1 ? q->dims[1] / 3 : q->dims[1];
    if (nd->n_inputs == 1 && q->dims[1] % 3) {
        snprintf(msg, sizeof msg, "packed qkv %s: width not a multiple of 3", SHAPE(s, q));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    if (h <= 0 || width % h) {
        snprintf(msg, sizeof msg, "%d heads do not divide the width %d", h, width);
        return fail(nd, KILN_ERR_ARG, msg);
    }
    if (nd->n_inputs == 3) {
        const kiln_node *k = in_of(g, nd, 1), *v = in_of(g, nd, 2);
        if (k->rank != 2 || v->rank != 2 || k->dims[1] != width || v->dims[1] != width || k->dims[0] != v->dims[0]) {
            snprintf(msg, sizeof msg, "keys %s and values %s must be (keys, %d) alike", SHAPE(s, k), SHAPE(t, v), width);
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
        if (nd->a.causal && k->dims[0] != q->dims[0])
            return fail(nd, KILN_ERR_SHAPE, "a causal mask needs as many keys as queries");
    }
    int d[2] = {q->dims[0], width};
    kiln_node_set_shape(nd, 2, d);
    nd->batched = any_batched(g, nd);
    return KILN_OK;
}

kiln_status kiln_infer_reduce(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    char s[64], msg[160];
    for (int k = 1; k <= KILN_MAX_RANK; k++)   /* negative axes (bit 8 + k - 1 for -k) to their place */
        if (nd->a.axes >> (8 + k - 1) & 1) {
            nd->a.axes &= ~(1u << (8 + k - 1));
            nd->a.axes |= x->rank - k >= 0 ? 1u << (x->rank - k) : 1u << 7;   /* bit 7: out of range */
        }
    if (nd->a.axes == 0 || nd->a.axes >> x->rank) {
        snprintf(msg, sizeof msg, "axes (mask 0x%x) must name axes of input %s", nd->a.axes, SHAPE(s, x));
        return fail(nd, KILN_ERR_ARG, msg);
    }
    int d[KILN_MAX_RANK], r = 0;
    for (int i = 0; i < x->rank; i++) {
        if (!(nd->a.axes >> i & 1))
            d[r++] = x->dims[i];
        else if (nd->a.keepdims)
            d[r++] = 1;
    }
    kiln_node_set_shape(nd, r, d);
    nd->batched = x->batched;
    return KILN_OK;
}

kiln_status kiln_infer_upsample(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    kiln_attrs *a = &nd->a;
    char s[64], msg[160];
    if (x->rank != 3) {
        snprintf(msg, sizeof msg, "input %s is %s, expected (c, h, w)", x->name, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    if (a->mode < 0 || a->mode > 2)
        return fail(nd, KILN_ERR_ARG, "mode must be nearest, bilinear or bicubic");
    if (a->coord < 0 || a->coord > 4 || a->rounding < 0 || a->rounding > 3 || (a->rounding && a->mode != 0) ||
        ((a->cubic_a != 0.0f || a->exclude) && a->mode != 2) || !isfinite(a->cubic_a))
        return fail(nd, KILN_ERR_ARG, "coord must be 0..4, rounding 0..3 (nearest only), cubic_a and exclude bicubic "
                    "only");
    int d[3] = {x->dims[0], a->size[0], a->size[1]};
    for (int i = 0; i < 2; i++) {
        if (a->size[i] <= 0) {
            if (!(a->scale[i] > 0) || a->scale[i] * x->dims[1 + i] > 1e6)
                return fail(nd, KILN_ERR_ARG, "needs size=HxW or a positive scale=");
            d[1 + i] = (int)floorf(x->dims[1 + i] * a->scale[i]);
            if (d[1 + i] < 1)
                return fail(nd, KILN_ERR_ARG, "the scale leaves no pixels");
        }
        a->size[i] = d[1 + i];   /* resolved: kernels read the size */
    }
    kiln_node_set_shape(nd, 3, d);
    nd->batched = x->batched;
    return KILN_OK;
}

kiln_status kiln_infer_conv_transpose(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    const kiln_attrs *a = &nd->a;
    char s[64], msg[192];
    if (x->rank != 3) {
        snprintf(msg, sizeof msg, "input %s is %s, expected (c, h, w)", x->name, SHAPE(s, x));
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    if (a->units <= 0 || a->groups != 1)
        return fail(nd, KILN_ERR_ARG, "needs positive out channels, and groups 1");
    int d[3] = {a->units, 0, 0};
    for (int i = 0; i < 2; i++) {
        if (a->pad[i] < 0 || a->out_pad[i] < 0 || a->out_pad[i] >= (a->stride[i] > a->dilation[i] ? a->stride[i] : a->dilation[i]))
            return fail(nd, KILN_ERR_ARG, "padding must be >= 0 and output padding below the stride or dilation");
        d[1 + i] = (x->dims[1 + i] - 1) * a->stride[i] - 2 * a->pad[i] + a->dilation[i] * (a->kernel[i] - 1) +
                   a->out_pad[i] + 1;
        if (d[1 + i] <= 0) {
            snprintf(msg, sizeof msg, "padding %dx%d leaves no output for input %s", a->pad[0], a->pad[1], SHAPE(s, x));
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
    }
    kiln_node_set_shape(nd, 3, d);
    nd->batched = x->batched;
    int wd[4] = {x->dims[0], a->units, a->kernel[0], a->kernel[1]};   /* PyTorch's (in, out, kh, kw) */
    if (kiln_node_add_param(g, nd, "weight", true, 4, wd) != KILN_OK ||
        (!a->no_bias && kiln_node_add_param(g, nd, "bias", true, 1, &a->units) != KILN_OK))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

kiln_status kiln_infer_pad(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = in_of(g, nd, 0);
    char s[64], msg[160];
    int d[KILN_MAX_RANK];
    if (nd->a.mode < 0 || nd->a.mode > 2)
        return fail(nd, KILN_ERR_ARG, "mode must be constant, reflect or edge");
    for (int i = 0; i < x->rank; i++) {
        int lo = nd->a.pads[i], hi = nd->a.pads[KILN_MAX_RANK + i];
        if (lo < 0 || hi < 0 || (double)x->dims[i] + lo + hi > 1e9) {
            snprintf(msg, sizeof msg, "pads of axis %d (%d, %d) must be >= 0 for input %s", i, lo, hi, SHAPE(s, x));
            return fail(nd, KILN_ERR_ARG, msg);
        }
        if (nd->a.mode == 1 && (lo >= x->dims[i] || hi >= x->dims[i])) {
            snprintf(msg, sizeof msg, "reflect pads of axis %d (%d, %d) must be below its size in %s", i, lo, hi,
                     SHAPE(s, x));
            return fail(nd, KILN_ERR_ARG, msg);
        }
        d[i] = x->dims[i] + lo + hi;
    }
    for (int i = x->rank; i < KILN_MAX_RANK; i++)
        if (nd->a.pads[i] || nd->a.pads[KILN_MAX_RANK + i]) {
            snprintf(msg, sizeof msg, "pads name axis %d, past input %s", i, SHAPE(s, x));
            return fail(nd, KILN_ERR_SHAPE, msg);
        }
    kiln_node_set_shape(nd, x->rank, d);
    nd->batched = x->batched;
    return KILN_OK;
}
