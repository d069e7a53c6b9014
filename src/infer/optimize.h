/* Load-time graph optimisation for inference. */
#ifndef KILN_INFER_OPTIMIZE_H
#define KILN_INFER_OPTIMIZE_H

#include "core/graph.h"

/* What kiln_graph_optimize changed. */
typedef struct {
    int batchnorms_folded, dropouts_removed, activations_fused, matmuls_to_linear;
    int dead_removed;   /* nodes no output reads (an importer leaves them behind) */
} kiln_optimize_stats;

/* Where an optimised node's tensors come from: the source node, and the batchnorm folded into
 * it (0 = none; node 0 is the input, never a batchnorm). transposed: the node is a linear made of
 * a matmul by a 2-D param, node is that param and the linear's weight is its transpose. */
typedef struct {
    int node, batchnorm;
    bool transposed;
} kiln_weight_origin;

/* A new graph computing src's eval-mode output: batchnorm folded into a preceding conv/dense,
 * dropout removed, a matmul by a 2-D param (its only reader) made a linear (which runs in int8),
 * activations fused into conv/dense/linear/batchnorm/add. stats may be NULL; origin (may be NULL) receives a malloc'd array, one entry per new node,
 * for refreshing the weights later. */
kiln_graph_t *kiln_graph_optimize(const kiln_graph_t *src, kiln_optimize_stats *stats, kiln_weight_origin **origin);
/* The op source node nd of src becomes in an optimised graph: a linear over vectors is a dense
 * layer and a reshape of an image to a vector a flatten (the forms the int8 kernels and fusions
 * know; the same values), else nd's own op. */
kiln_op kiln_optimized_op(const kiln_graph_t *src, const kiln_node *nd);
/* Recomputes g's weights (g from kiln_graph_optimize of a graph with src's structure) from src's
 * current tensors: copied, batchnorm folded. Allocates nothing. */
void kiln_graph_optimize_weights(kiln_graph_t *g, const kiln_graph_t *src, const kiln_weight_origin *origin);

#endif
