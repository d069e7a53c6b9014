/* Internal layout of inference models and sessions. */
#ifndef KILN_INFER_RUNTIME_H
#define KILN_INFER_RUNTIME_H

#include <string.h>
#include "core/graph.h"
#include "infer/optimize.h"
#include "infer/planner.h"

struct kiln_model {
    kiln_graph_t *g;              /* optimised graph, owns the weights */
    kiln_optimize_stats stats;
};

struct kiln_session {
    const kiln_model_t *m;
    int max_batch, threads;
    kiln_plan plan;
    float *arena;                 /* plan.arena_floats */
    float *scratch;               /* per-thread im2col matrices */
    size_t scratch_floats;
};

#endif
