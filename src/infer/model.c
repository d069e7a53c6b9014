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
        m->g = kiln_graph_optimize(g, &m->stats);
    } else {
        char *spec = kiln_graph_to_spec(g);
        m->g = spec ? kiln_spec_parse(spec, "model") : NULL;
        free(spec);
        if (m->g && g->n_params)
            memcpy(m->g->params, g->params, g->n_params * sizeof(float));
        if (m->g && g->n_buffers)
            memcpy(m->g->buffers, g->buffers, g->n_buffers * sizeof(float));
    }
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
    free(m);
}

const kiln_graph_t *kiln_model_graph(const kiln_model_t *m)
{
    return m->g;
}
