/* Datasets: IDX (MNIST-format) files, raw or gzip, loaded into uint8 arrays and gathered into
 * float batches. Every malformed field is reported with file, field, expected and found. */
#ifndef KILN_DATASET_H
#define KILN_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_IDX_MAX_DIMS 8   /* most dims a generic IDX tensor may have */

/* An image-classification dataset held as uint8 pixels. Owns images and labels. */
typedef struct {
    int n;            /* examples */
    int c, h, w;      /* per-example image shape (IDX 3-D files give c = 1) */
    int n_classes;    /* max label + 1 */
    uint8_t *images;  /* n * c * h * w, row-major NCHW */
    uint8_t *labels;  /* n */
} kiln_dataset;

/* Loads an IDX image file (magic 0x00000803, ubyte; 0x00000804 gives NCHW with c from the file)
 * and label file (0x00000801), raw or gzip (detected by the 1f 8b magic, not by name). */
kiln_status kiln_idx_load(const char *images_path, const char *labels_path, kiln_dataset *out);
/* As kiln_idx_load, from two in-memory files (raw or gzip); messages name them "images" and
 * "labels". */
kiln_status kiln_idx_load_memory(const void *images, size_t images_len, const void *labels,
                                 size_t labels_len, kiln_dataset *out);
/* Loads a named dataset: "fashion-mnist" (Debian package dataset-fashion-mnist,
 * /usr/share/datasets/fashion-mnist) or a directory holding {train,t10k}-{images-idx3,
 * labels-idx1}-ubyte, each with or without .gz. split_train selects train (true) or test. */
kiln_status kiln_dataset_load(const char *name_or_dir, bool split_train, kiln_dataset *out);
/* Frees the arrays and zeroes the struct. */
void kiln_dataset_free(kiln_dataset *d);
/* Copies examples idx[0..count) (each in [0, n)) into x (float, scaled to [0,1] by /255) and
 * y (int labels; may be NULL). */
void kiln_dataset_gather(const kiln_dataset *d, const int *idx, int count, float *x, int *y);

/* A generic IDX tensor: element type, shape and data in host byte order. Owns data. */
typedef struct {
    int dtype;                    /* IDX type byte: 0x08 u8, 0x09 i8, 0x0b i16, 0x0c i32,
                                     0x0d f32, 0x0e f64 */
    int elem_size;                /* bytes per element */
    int ndim;                     /* dims used, 1..KILN_IDX_MAX_DIMS */
    int dims[KILN_IDX_MAX_DIMS];  /* sizes, outermost first */
    size_t numel;                 /* product of dims */
    void *data;                   /* numel * elem_size bytes */
} kiln_idx_tensor;

/* Reads an IDX file of any element type (raw or gzip) into newly allocated memory. */
kiln_status kiln_idx_read(const char *path, kiln_idx_tensor *out);
/* As kiln_idx_read, from an in-memory file; messages name it "tensor". */
kiln_status kiln_idx_read_memory(const void *bytes, size_t len, kiln_idx_tensor *out);
/* Frees the data and zeroes the struct. */
void kiln_idx_tensor_free(kiln_idx_tensor *t);

/* Runs model m over every example of d in batches; mean softmax cross-entropy and
 * accuracy (either output may be NULL). */
kiln_status kiln_evaluate(const kiln_model_t *m, const kiln_dataset *d, int batch, float *loss, float *accuracy);

#ifdef __cplusplus
}
#endif
#endif
