/* Inference models: a trained graph optimised once at load, then shared read-only. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "infer/optimize.h"
#include "infer/runtime.h"

kiln_model_t *kiln_model_create(const kiln_graph_t *g, bool optimize)
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
        free(m);
        return NULL;
    }
    return m;
}

void kiln_model_free(kiln_model_t *m)
{
    if (!m)
        return;
    kiln_qmodel_free(m->q, m->g ? m->g->n : 0);
    kiln_graph_free(m->g);
    free(m->origin);
    free(m);
}

kiln_status kiln_model_update(kiln_model_t *m, const kiln_graph_t *g)
{
    if (m->q || !m->origin)
        return kiln_error(KILN_ERR_ARG, "kiln_model_update needs an fp32 model made by kiln_model_create(g, true)");
    const kiln_graph_t *d = m->g;
    for (int id = 1; id < d->n; id++) {   /* structure check: each origin node has the same tensors */
        const kiln_weight_origin *o = &m->origin[id];
        if (o->node >= g->n || o->batchnorm >= g->n || g->nodes[o->node].op != d->nodes[id].op ||
            (o->batchnorm && g->nodes[o->batchnorm].op != KILN_OP_BATCHNORM) || g->n_params != m->src_params)
            return kiln_error(KILN_ERR_ARG, "kiln_model_update: the graph's structure differs from the model's");
    }
    kiln_graph_optimize_weights(m->g, g, m->origin);
    return KILN_OK;
}

const kiln_graph_t *kiln_model_graph(const kiln_model_t *m)
{
    return m->g;
}
