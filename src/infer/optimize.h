/* Load-time graph optimisation for inference. */
#ifndef KILN_INFER_OPTIMIZE_H
#define KILN_INFER_OPTIMIZE_H

#include "core/graph.h"

/* What kiln_graph_optimize changed. */
typedef struct {
    int batchnorms_folded, dropouts_removed, activations_fused;
} kiln_optimize_stats;

/* A new graph computing src's eval-mode output: batchnorm folded into a preceding conv/dense,
 * dropout removed, activations fused into conv/dense/batchnorm/add. stats may be NULL. */
kiln_graph_t *kiln_graph_optimize(const kiln_graph_t *src, kiln_optimize_stats *stats);

#endif
