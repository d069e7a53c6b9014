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
/* Checks the file's format tag and parses its spec (parameters left zero). */
kiln_graph_t *kiln_graph_spec_from_file(const kiln_st_file *f);
/* Copies tensor name into dst after checking its dtype and dims (F16 is accepted, and converted,
 * where F32 is expected; F32 values must be finite); errors name file, tensor, expected, found. */
kiln_status kiln_file_tensor(const kiln_st_file *f, const char *name, kiln_dtype dtype, int ndim,
                             const int64_t *dims, void *dst);
/* Loads every fp32 tensor of node id ("<layer>.<tensor>"). */
kiln_status kiln_file_node_tensors(const kiln_st_file *f, kiln_graph_t *g, int id);
/* Rebuilds the graph from an open file's spec and copies in its validated tensors. */
kiln_graph_t *kiln_graph_from_file(const kiln_st_file *f);

/* Whether path names an ONNX file (ends in ".onnx"): kiln_graph_load and kiln_model_load import
 * those. */
bool kiln_path_is_onnx(const char *path);

#endif
