/* Load-time graph optimisation for inference. */
#ifndef KILN_INFER_OPTIMIZE_H
#define KILN_INFER_OPTIMIZE_H

#include "core/graph.h"

/* What kiln_graph_optimize changed. */
typedef struct {
    int batchnorms_folded, dropouts_removed, activations_fused;
} kiln_optimize_stats;

/* Where an optimised node's tensors come from: the source node, and the batchnorm folded into
 * it (0 = none; node 0 is the input, never a batchnorm). */
typedef struct {
    int node, batchnorm;
} kiln_weight_origin;

/* A new graph computing src's eval-mode output: batchnorm folded into a preceding conv/dense,
 * dropout removed, activations fused into conv/dense/batchnorm/add. stats may be NULL; origin (may be NULL) receives a malloc'd array, one entry per new node,
 * for refreshing the weights later. */
kiln_graph_t *kiln_graph_optimize(const kiln_graph_t *src, kiln_optimize_stats *stats, kiln_weight_origin **origin);
/* Recomputes g's weights (g from kiln_graph_optimize of a graph with src's structure) from src's
 * current tensors: copied, batchnorm folded. Allocates nothing. */
void kiln_graph_optimize_weights(kiln_graph_t *g, const kiln_graph_t *src, const kiln_weight_origin *origin);

#endif
