/* Internal model-file helpers shared with checkpoints. */
#ifndef KILN_IO_GRAPH_FILE_H
#define KILN_IO_GRAPH_FILE_H

#include "io/safetensors.h"

/* Describes the graph's tensors (names "<layer>.<tensor>", F32, data pointing into the graph)
 * into out[0..max); returns how many there are. */
int kiln_graph_tensors(const kiln_graph_t *g, kiln_st_tensor *out, int max);
/* kiln_graph_save plus extra tensors (checkpoint state) written after the model's. */
kiln_status kiln_graph_save_with(const kiln_graph_t *g, const char *path, const char *const *extra_meta,
                                 const kiln_st_tensor *extra, int n_extra);
/* Rebuilds the graph from an open file's spec and copies in its validated tensors. */
kiln_graph_t *kiln_graph_from_file(const kiln_st_file *f);

#endif
