/* Constants (docs/IR.md, "Constants"): the const op's shape inference and the graph's store of
 * i64/bool values, and the inference of the ops that exist only on constants (shape, cast).
 * f32 constants keep their values in the graph's buffers (tensor "value"); i64/bool ones in one
 * block per node, so a node's a.values stays valid while the graph grows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"

#define CONST_MAX_VALUES (1 << 20)     /* most values of one i64/bool constant (shape arithmetic) */
#define GRAPH_MAX_CONST_VALUES (1 << 24) /* most i64/bool values in one graph (128 MiB) */

static kiln_status fail(const kiln_node *nd, kiln_status st, const char *what)
{
    return kiln_error(st, "%s: %s: %s", nd->name, kiln_op_name(nd->op), what);
}

/* Keeps a copy of n values in g's store; returns it (NULL with the error set). */
static int64_t *store_values(kiln_graph_t *g, const kiln_node *nd, const int64_t *v, size_t n)
{
    if (g->n_const_values + n > GRAPH_MAX_CONST_VALUES) {
        kiln_error(KILN_ERR_SHAPE, "%s: const: %zu values take the graph's i64/bool constants past 2^24", nd->name, n);
        return NULL;
    }
    if (g->n_consts == g->cap_consts) {
        int cap = g->cap_consts ? 2 * g->cap_consts : 8;
        int64_t **grown = realloc(g->consts, (size_t)cap * sizeof *grown);
        if (!grown) {
            kiln_error(KILN_ERR_NOMEM, "out of memory for constant %s", nd->name);
            return NULL;
        }
        g->consts = grown;
        g->cap_consts = cap;
    }
    int64_t *block = malloc((n + 1) * sizeof *block);   /* [0]: the count, for kiln_graph_drop_consts */
    if (!block) {
        kiln_error(KILN_ERR_NOMEM, "out of memory for constant %s", nd->name);
        return NULL;
    }
    block[0] = (int64_t)n;
    memcpy(block + 1, v, n * sizeof *v);
    g->consts[g->n_consts++] = block;
    g->n_const_values += n;
    return block + 1;
}

void kiln_graph_drop_consts(kiln_graph_t *g, int keep)
{
    while (g->n_consts > keep) {
        int64_t *block = g->consts[--g->n_consts];
        g->n_const_values -= (size_t)block[0];
        free(block);
    }
}

kiln_status kiln_infer_const(kiln_graph_t *g, kiln_node *nd)
{
    kiln_attrs *a = &nd->a;
    char msg[160];
    if (a->rank < 0 || a->rank > KILN_MAX_RANK)
        return fail(nd, KILN_ERR_ARG, "rank out of 0..6");
    double count = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->shape[i] <= 0)
            return fail(nd, KILN_ERR_ARG, "dims must be positive");
        count *= a->shape[i];
    }
    if (a->dtype != KILN_DT_F32 && !kiln_dtype_const_only(a->dtype)) {
        snprintf(msg, sizeof msg, "dtype %s, expected F32, I64 or BOOL",
                 kiln_dtype_name(a->dtype) ? kiln_dtype_name(a->dtype) : "?");
        return fail(nd, KILN_ERR_ARG, msg);
    }
    nd->dtype = a->dtype;
    nd->batched = false;
    if (a->dtype == KILN_DT_F32) {   /* a non-trainable tensor in the buffers: saved, loaded, copied */
        const float *v = a->values;
        a->values = NULL;
        kiln_status st = kiln_node_add_param(g, nd, "value", false, a->rank, a->shape);
        if (st != KILN_OK)
            return st;
        kiln_node_set_shape(nd, a->rank, a->shape);
        for (size_t i = 0; v && i < nd->numel; i++)
            if (!isfinite(v[i])) {
                snprintf(msg, sizeof msg, "value %zu is %g, expected a finite number", i, v[i]);
                return fail(nd, KILN_ERR_ARG, msg);
            }
        if (v)
            memcpy(kiln_node_tensor(g, nd, 0), v, nd->numel * sizeof(float));
        return KILN_OK;
    }
    if (count > CONST_MAX_VALUES) {
        snprintf(msg, sizeof msg, "%.0f values, an i64/bool constant holds at most %d", count, CONST_MAX_VALUES);
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    kiln_node_set_shape(nd, a->rank, a->shape);
    const int64_t *v = a->values;
    if (!v)
        return fail(nd, KILN_ERR_ARG, "an i64/bool constant needs its values");
    for (size_t i = 0; a->dtype == KILN_DT_BOOL && i < nd->numel; i++)
        if (v[i] != 0 && v[i] != 1) {
            snprintf(msg, sizeof msg, "value %zu is %lld, expected 0 or 1 (BOOL)", i, (long long)v[i]);
            return fail(nd, KILN_ERR_ARG, msg);
        }
    if (!(a->values = store_values(g, nd, v, nd->numel)))
        return KILN_ERR_NOMEM;
    return KILN_OK;
}

kiln_status kiln_infer_shape(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (x->rank == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "input %s is a scalar: its shape would be empty (Kiln has no empty tensors)",
                 x->name);
        return fail(nd, KILN_ERR_SHAPE, msg);
    }
    int d[1] = {x->rank};
    kiln_node_set_shape(nd, 1, d);
    nd->dtype = KILN_DT_I64;
    nd->batched = false;
    return KILN_OK;
}

kiln_status kiln_infer_cast(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (nd->a.dtype != KILN_DT_F32 && !kiln_dtype_const_only(nd->a.dtype)) {
        char msg[160];
        snprintf(msg, sizeof msg, "target dtype %s, expected F32, I64 or BOOL",
                 kiln_dtype_name(nd->a.dtype) ? kiln_dtype_name(nd->a.dtype) : "?");
        return fail(nd, KILN_ERR_ARG, msg);
    }
    kiln_node_set_shape(nd, x->rank, x->dims);
    nd->batched = x->batched;
    return KILN_OK;
}
