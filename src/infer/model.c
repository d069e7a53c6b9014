/* Inference models: a trained graph optimised once at load, then shared read-only. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "infer/optimize.h"
#include "infer/runtime.h"
#include "ops/gemm.h"
#include "ops/winograd.h"

static kiln_status prepare_winograd(kiln_model_t *m);
static kiln_status prepare_packed(kiln_model_t *m);

kiln_model_t *kiln_model_create(const kiln_graph_t *g, bool optimize)
{
    kiln_model_t *m = kiln_model_create_bare(g, optimize);
    if (m && (prepare_winograd(m) != KILN_OK || prepare_packed(m) != KILN_OK)) {
        kiln_model_free(m);
        return NULL;
    }
    return m;
}

kiln_model_t *kiln_model_create_bare(const kiln_graph_t *g, bool optimize)
{
    kiln_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (optimize) {
        m->g = kiln_graph_optimize(g, &m->stats, &m->origin);
    } else {
        char *spec = kiln_graph_to_spec(g);
        m->g = spec ? kiln_spec_parse(spec, "model") : NULL;
        free(spec);
        if (m->g && g->n_params)
            memcpy(m->g->params, g->params, g->n_params * sizeof(float));
        if (m->g && g->n_buffers)
            memcpy(m->g->buffers, g->buffers, g->n_buffers * sizeof(float));
    }
    m->src_params = g->n_params;
    if (!m->g) {
        kiln_model_free(m);
        return NULL;
    }
    return m;
}

/* Transforms every Winograd conv's kernel into m->wino (allocated already). */
static void transform_winograd(kiln_model_t *m)
{
    const kiln_graph_t *g = m->g;
    for (int i = 1; i < g->n; i++)
        if (m->wino[i])
            kiln_winograd_weights(&g->nodes[i], &g->nodes[g->nodes[i].inputs[0]], kiln_node_tensor(g, &g->nodes[i], 0),
                                  m->wino[i]);
}

/* Allocates and fills m->wino: the transformed kernel of every conv Winograd applies to. */
static kiln_status prepare_winograd(kiln_model_t *m)
{
    const kiln_graph_t *g = m->g;
    if (!(m->wino = calloc((size_t)g->n, sizeof *m->wino)))
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i], *in = &g->nodes[nd->inputs[0]];
        if (nd->op == KILN_OP_CONV2D && kiln_winograd_applies(nd, in) &&
            !(m->wino[i] = aligned_alloc(64, (kiln_winograd_weight_floats(nd, in) + 15) / 16 * 16 * sizeof(float))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    transform_winograd(m);
    return KILN_OK;
}

/* Packs every pre-packed weight again from the graph's (after kiln_model_update). */
static void pack_weights(kiln_model_t *m)
{
    const kiln_graph_t *g = m->g;
    for (int i = 1; i < g->n; i++)
        if (m->packed[i]) {
            const kiln_node *nd = &g->nodes[i];
            int in_f = nd->params[0].dims[1], out_f = nd->params[0].dims[0];
            kiln_sgemm_pack_b(true, out_f, in_f, kiln_node_tensor(g, nd, 0), in_f, m->packed[i]);
        }
}

/* Allocates and fills m->packed: the weight of every linear and dense layer that runs more than
 * one row at a time (a linear over tokens) in the GEMM kernel's panel layout. A batch-1 dense
 * layer runs the one-row kernel, which reads the weight as it is. */
static kiln_status prepare_packed(kiln_model_t *m)
{
    const kiln_graph_t *g = m->g;
    if (!(m->packed = calloc((size_t)g->n, sizeof *m->packed)))
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op != KILN_OP_LINEAR || nd->numel == (size_t)nd->params[0].dims[0])
            continue;
        size_t n = kiln_sgemm_packed_floats(nd->params[0].dims[0], nd->params[0].dims[1]);
        if (n && !(m->packed[i] = aligned_alloc(64, (n + 15) / 16 * 16 * sizeof(float))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
    }
    pack_weights(m);
    return KILN_OK;
}

void kiln_model_free(kiln_model_t *m)
{
    if (!m)
        return;
    for (int i = 0; m->packed && i < m->g->n; i++)
        free(m->packed[i]);
    free(m->packed);
    kiln_qmodel_free(m->q, m->g ? m->g->n : 0);
    for (int i = 0; m->wino && i < m->g->n; i++)
        free(m->wino[i]);
    free(m->wino);
    kiln_graph_free(m->g);
    free(m->origin);
    free(m);
}

kiln_status kiln_model_check_source(const kiln_model_t *m, const kiln_graph_t *g, const char *who)
{
    if (m->q || !m->origin)
        return kiln_error(KILN_ERR_ARG, "%s needs an fp32 model made by kiln_model_create(g, true)", who);
    const kiln_graph_t *d = m->g;
    for (int id = 1; id < d->n; id++) {   /* each origin node has the same tensors */
        const kiln_weight_origin *o = &m->origin[id];
        kiln_op want = o->transposed ? KILN_OP_PARAM : d->nodes[id].op;   /* a linear made of a matmul: its param */
        if (o->node >= g->n || o->batchnorm >= g->n ||
            (o->transposed ? g->nodes[o->node].op : kiln_optimized_op(g, &g->nodes[o->node])) != want ||
            (o->batchnorm && g->nodes[o->batchnorm].op != KILN_OP_BATCHNORM) || g->n_params != m->src_params)
            return kiln_error(KILN_ERR_ARG, "%s: the graph's structure differs from the model's", who);
    }
    return KILN_OK;
}

kiln_status kiln_model_update(kiln_model_t *m, const kiln_graph_t *g)
{
    kiln_status st = kiln_model_check_source(m, g, "kiln_model_update");
    if (st != KILN_OK)
        return st;
    kiln_graph_optimize_weights(m->g, g, m->origin);
    transform_winograd(m);
    if (m->packed)
        pack_weights(m);
    return KILN_OK;
}

const kiln_graph_t *kiln_model_graph(const kiln_model_t *m)
{
    return m->g;
}
