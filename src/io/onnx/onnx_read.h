/* Reading ONNX model files (untrusted): protobuf-c parses the bytes, then every field the importer
 * will use is checked before anything is sized by it (docs/ONNX.md, "Reading"). */
#ifndef KILN_IO_ONNX_READ_H
#define KILN_IO_ONNX_READ_H

#include <stddef.h>
#include <stdint.h>
#include "io/onnx/onnx.pb-c.h"
#include "kiln/kiln.h"

/* Limits past which a file is refused (each check names the field). */
enum {
    KILN_ONNX_MIN_OPSET = 1,             /* default-domain opsets accepted (converters refuse the legacy
                                          * attributes of opsets before 7 by name) */
    KILN_ONNX_MAX_OPSET = 17,
    KILN_ONNX_MAX_NODES = 1 << 20,       /* nodes, initializers, inputs or outputs of a graph */
    KILN_ONNX_MAX_RANK = 8,              /* dims of one tensor (Kiln keeps 6 per example + batch) */
    KILN_ONNX_MAX_NAME = 4096            /* bytes of one value or node name */
};
#define KILN_ONNX_MAX_ELEMENTS ((int64_t)1 << 28)   /* elements of one tensor */
#define KILN_ONNX_MAX_FILE ((size_t)1 << 31)        /* bytes of a file (protobuf's own limit) */

/* A parsed model whose graph passed every check: owns the protobuf-c message. */
typedef struct kiln_onnx_model kiln_onnx_model;

/* Reads and checks path; NULL with an error naming the file, the field, what was expected and
 * what was found. */
kiln_onnx_model *kiln_onnx_read(const char *path);
/* A whole file (at most KILN_ONNX_MAX_FILE bytes) in a malloc'd buffer, its size in len; NULL with
 * an error naming the file. */
uint8_t *kiln_onnx_file_bytes(const char *path, size_t *len);
/* kiln_onnx_read for len bytes in memory; origin names them in errors. */
kiln_onnx_model *kiln_onnx_read_buffer(const uint8_t *data, size_t len, const char *origin);
/* Frees a model (NULL is fine). */
void kiln_onnx_free(kiln_onnx_model *m);
/* The checked graph; valid while m lives. */
const Onnx__GraphProto *kiln_onnx_graph(const kiln_onnx_model *m);
/* The default domain's opset version the model declares (KILN_ONNX_MIN_OPSET..MAX). */
int kiln_onnx_opset(const kiln_onnx_model *m);
/* The name errors use for m (its path or origin). */
const char *kiln_onnx_origin(const kiln_onnx_model *m);

/* The Kiln graph of a checked model (kiln_graph_import_onnx without the file): NULL with an error
 * naming the origin, the node, the op and the attribute. */
kiln_graph_t *kiln_onnx_import(const kiln_onnx_model *m);
/* kiln_onnx_import, or with whole set, every graph input taken whole: its first dim is an axis
 * like any other, not the batch (run it at batch 1); ops along that axis become possible, Kiln's
 * image ops (Conv, pools, BatchNormalization, Resize) are refused. */
kiln_graph_t *kiln_onnx_import_whole(const kiln_onnx_model *m, bool whole);
/* Evaluates a model whose every input is an initializer at load time (constant folding): the
 * first n graph outputs as floats into out[k] (malloc'd; count[k] values). */
kiln_status kiln_onnx_const_outputs(const kiln_onnx_model *m, float **out, size_t *count, size_t n);

/* Bytes of one element of ONNX data type dt that Kiln reads (FLOAT, INT64, INT32, INT8, UINT8,
 * BOOL, FLOAT16, DOUBLE); 0 for the others. */
int kiln_onnx_elem_size(int32_t dt);
/* The element count of a checked tensor. */
int64_t kiln_onnx_numel(const Onnx__TensorProto *t);
/* A checked tensor's values as floats (n = its element count): any numeric type, converted. */
void kiln_onnx_tensor_f32(const Onnx__TensorProto *t, float *out);
/* A checked tensor's values as int64 (n = its element count): integer and bool types; floats
 * truncated toward zero. */
void kiln_onnx_tensor_i64(const Onnx__TensorProto *t, int64_t *out);
/* Checks one tensor (an initializer, a Constant's value, a test's input): a known data type, dims
 * in range, and data of the size they say, not external. what names it in errors. */
kiln_status kiln_onnx_check_tensor(const Onnx__TensorProto *t, const char *origin, const char *what);

#endif
