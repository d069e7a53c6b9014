/* Sessions: a planned arena and scratch space, and the run loop over the model's nodes. */
#include <omp.h>
#include <stdlib.h>
#include "core/error.h"
#include "infer/runtime.h"
#include "ops/gemm.h"
#include "ops/ops.h"

kiln_session_t *kiln_session_create(const kiln_model_t *m, const kiln_session_options *opt)
{
    kiln_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->max_batch = opt && opt->max_batch > 0 ? opt->max_batch : 1;
    s->threads = opt && opt->threads > 0 ? opt->threads : 1;
    kiln_gemm_init();
    const kiln_graph_t *g = m->g;
    if (kiln_plan_create(g, s->max_batch, &s->plan) != KILN_OK) {
        free(s);
        return NULL;
    }
    for (int i = 1; i < g->n; i++) {
        size_t w = kiln_node_work_floats(g, i, s->threads);
        s->scratch_floats = w > s->scratch_floats ? w : s->scratch_floats;
    }
    s->arena = aligned_alloc(64, (s->plan.arena_floats ? s->plan.arena_floats : 16) * sizeof(float));
    s->scratch = aligned_alloc(64, ((s->scratch_floats + 15) / 16 * 16 + 16) * sizeof(float));
    if (!s->arena || !s->scratch) {
        size_t bytes = s->plan.arena_floats * sizeof(float);
        kiln_session_free(s);
        kiln_error(KILN_ERR_NOMEM, "out of memory for a %zu-byte arena", bytes);
        return NULL;
    }
    return s;
}

void kiln_session_free(kiln_session_t *s)
{
    if (!s)
        return;
    kiln_plan_free(&s->plan);
    free(s->arena);
    free(s->scratch);
    free(s);
}

kiln_status kiln_session_run(kiln_session_t *s, const float *input, int batch, float *output)
{
    const kiln_graph_t *g = s->m->g;
    if (batch < 1 || batch > s->max_batch)
        return kiln_error(KILN_ERR_ARG, "batch %d outside this session's 1..%d", batch, s->max_batch);
    if (!input || !output)
        return kiln_error(KILN_ERR_ARG, "input and output must not be NULL");
    omp_set_num_threads(s->threads);   /* this thread's setting only */
    float *arena = s->arena;
    memcpy(arena + s->plan.offset[0], input, g->nodes[0].numel * (size_t)batch * sizeof(float));
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_FLATTEN)
            continue;   /* a view of its input's buffer */
        kiln_fwd_args a = {.batch = batch, .out = arena + s->plan.offset[i], .work = s->scratch,
                           .threads = s->threads};
        for (int j = 0; j < nd->n_inputs; j++)
            a.in[j] = arena + s->plan.offset[nd->inputs[j]];
        kiln_node_forward(g, i, &a);
    }
    memcpy(output, arena + s->plan.offset[g->n - 1], g->nodes[g->n - 1].numel * (size_t)batch * sizeof(float));
    return KILN_OK;
}

size_t kiln_session_arena_bytes(const kiln_session_t *s) { return s->plan.arena_floats * sizeof(float); }
size_t kiln_session_scratch_bytes(const kiln_session_t *s) { return s->scratch_floats * sizeof(float); }
size_t kiln_session_peak_live_bytes(const kiln_session_t *s) { return s->plan.peak_live_floats * sizeof(float); }
