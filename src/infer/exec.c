/* A plain forward executor: one buffer per node, eval mode. (The planned, arena-based runtime
 * session builds on the same kernels.) */
#include <omp.h>
#include <stdlib.h>
#include "core/error.h"
#include "ops/ops.h"

struct kiln_exec {
    const kiln_graph_t *g;
    int max_batch;
    int threads;     /* threads the work space is sized for */
    float **act;     /* per node output; input node points at the caller's data */
    float *save;     /* state ops would keep for training (unused in eval), shared */
    float *work;     /* shared temporary (im2col matrices, one per thread) */
};

void kiln_exec_free(kiln_exec_t *e)
{
    if (!e)
        return;
    if (e->act)
        for (int i = 1; i < e->g->n; i++)
            free(e->act[i]);
    free(e->act);
    free(e->save);
    free(e->work);
    free(e);
}

kiln_exec_t *kiln_exec_create(const kiln_graph_t *g, int max_batch)
{
    if (max_batch < 1) {
        kiln_error(KILN_ERR_ARG, "batch must be at least 1, found %d", max_batch);
        return NULL;
    }
    kiln_exec_t *e = calloc(1, sizeof *e);
    if (!e)
        goto nomem;
    e->g = g;
    e->max_batch = max_batch;
    e->threads = omp_get_max_threads();
    e->act = calloc((size_t)g->n, sizeof *e->act);
    if (!e->act)
        goto nomem;
    size_t save = 1, work = 1;
    for (int i = 1; i < g->n; i++) {
        if (!(e->act[i] = malloc(g->nodes[i].numel * (size_t)max_batch * sizeof(float))))
            goto nomem;
        size_t s = kiln_node_save_floats(g, i, max_batch), w = kiln_node_work_floats(g, i, e->threads);
        save = s > save ? s : save;
        work = w > work ? w : work;
    }
    if (!(e->save = malloc(save * sizeof(float))) || !(e->work = malloc(work * sizeof(float))))
        goto nomem;
    return e;
nomem:
    kiln_exec_free(e);
    kiln_error(KILN_ERR_NOMEM, "out of memory for a batch-%d executor", max_batch);
    return NULL;
}

const float *kiln_exec_run(kiln_exec_t *e, const float *x, int batch)
{
    const kiln_graph_t *g = e->g;
    if (batch < 1 || batch > e->max_batch) {
        kiln_error(KILN_ERR_ARG, "batch %d outside 1..%d", batch, e->max_batch);
        return NULL;
    }
    e->act[0] = (float *)x;
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        kiln_fwd_args a = {.batch = batch, .out = e->act[i], .work = e->work, .save = e->save,
                           .threads = e->threads};
        for (int j = 0; j < nd->n_inputs; j++)
            a.in[j] = e->act[nd->inputs[j]];
        kiln_node_forward(g, i, &a);
    }
    e->act[0] = NULL;
    return e->act[g->n - 1];
}
