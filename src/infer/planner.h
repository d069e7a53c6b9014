/* Static memory plan: every activation of a run placed in one arena by liveness. */
#ifndef KILN_INFER_PLANNER_H
#define KILN_INFER_PLANNER_H

#include "core/graph.h"

/* Where each node's output lives for runs of up to batch examples. Owns offset. */
typedef struct {
    size_t *offset;          /* per node, floats from the arena start */
    size_t arena_floats;     /* the arena's size */
    size_t peak_live_floats; /* most floats live at once: a lower bound for any arena */
    int in_place;            /* nodes writing over their input's buffer */
} kiln_plan;

/* Plans g's activations for batch examples; bytes gives each node's output bytes per example
 * (NULL: numel fp32 values; 0: a view of its first input's buffer, as a flatten always is).
 * Buffers are 64-byte aligned; sizes are counted in floats. */
kiln_status kiln_plan_create(const kiln_graph_t *g, int batch, const size_t *bytes, kiln_plan *plan);
/* Frees the plan's arrays. */
void kiln_plan_free(kiln_plan *plan);
/* Whether a node can write its output over its first input's buffer. */
bool kiln_op_in_place(kiln_op op);

#endif
