/* Datasets: IDX (MNIST-format) files, pairs of .npy arrays, image folders and text files,
 * opened from one data spec string, held in their storage types (uint8 pixels stay uint8) and
 * gathered into batches. Every malformed field is reported with file, field, expected and found. */
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

/* Where a dataset's examples live, which decides how they are gathered. */
typedef enum {
    KILN_DATA_IMAGES = 0,  /* uint8 images in images, uint8 labels in labels: IDX files, or a
                            * dataset built by hand (the zero value; only n, c, h, w, n_classes,
                            * images and labels need be set) */
    KILN_DATA_ARRAYS,      /* one input and one target array, n examples each, in inputs and
                            * targets: .npy pairs, image folders */
    KILN_DATA_TEXT         /* bytes in text; example i is the window of input.dims[0] bytes at
                            * i * input.dims[0], its targets the bytes one further on */
} kiln_data_kind;

/* The layout of one example's input or target: shape, the element type the dataset stores and
 * the element type gathering writes. */
typedef struct {
    int rank;                  /* dims used, 0..KILN_MAX_RANK (0: one value per example) */
    int dims[KILN_MAX_RANK];   /* sizes, outermost first; unused ones are 0 */
    size_t numel;              /* product of dims (1 for rank 0) */
    kiln_dtype storage;        /* held as: KILN_DT_U8, KILN_DT_F32 or KILN_DT_I32 */
    kiln_dtype gathered;       /* written as: KILN_DT_F32 (uint8 scaled by 1/255, float32
                                * copied) or KILN_DT_I32 (class indices, token ids) */
} kiln_example_layout;

/* A dataset of n examples. Owns every array. For image classification (IDX files, image
 * folders, .npy inputs with one class index per example) n, c, h, w, n_classes, images and
 * labels keep their classic meaning. */
typedef struct {
    int n;            /* examples */
    int c, h, w;      /* per-example input shape as a model input: (c, h, w) for images (IDX
                       * 3-D files give c = 1); a vector of c (h = w = 1); for higher ranks c
                       * is the product of all but the last two dims; c * h * w = input.numel */
    int n_classes;    /* max class index + 1; image folders: the class folders (of train/);
                       * text: 256; float targets: 0 */
    uint8_t *images;  /* n * c * h * w, row-major NCHW, when the inputs are stored as uint8
                       * (text: NULL) */
    uint8_t *labels;  /* n class indices, when each example has one and all are below 256;
                       * else NULL */
    kiln_data_kind kind;         /* where the examples live */
    kiln_example_layout input;   /* one example's input (IDX: (c, h, w) uint8, gathered f32) */
    kiln_example_layout target;  /* one example's target (IDX: a uint8 class, gathered i32) */
    void *inputs;     /* KILN_DATA_ARRAYS: n * input.numel elements of input.storage (images
                       * points here when they are uint8) */
    void *targets;    /* KILN_DATA_ARRAYS: n * target.numel elements of target.storage */
    uint8_t *text;    /* KILN_DATA_TEXT: the split's bytes */
    size_t text_len;  /* KILN_DATA_TEXT: their count */
} kiln_dataset;

/* What opening a data spec needs besides the spec; zeroes where a source does not need them. */
typedef struct {
    int c, h, w;      /* the model's input shape: image folders are decoded to c channels (1:
                       * luminance, 3: RGB) and resized to h x w */
    int context;      /* text: bytes per example window */
} kiln_data_options;

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
/* Opens one split (train, or test when train is false) of a data spec:
 *   "fashion-mnist"                 Debian's dataset-fashion-mnist (kiln_dataset_load)
 *   DIR                             the IDX files of kiln_dataset_load if DIR holds them, else
 *                                   an image folder (as "images:DIR")
 *   "npy:X.npy,Y.npy[,TX.npy,TY.npy]"  inputs and targets (kiln_dataset_load_npy); the second
 *                                   pair is the test split
 *   "images:DIR"                    an image folder (kiln_dataset_load_image_folder)
 *   "text:FILE"                     bytes for language modelling (kiln_dataset_load_text)
 * A source without a test split gives an empty dataset (n = 0) for it. opt may be NULL for
 * sources that need no options. out is zeroed on error. */
kiln_status kiln_dataset_open(const char *spec, const kiln_data_options *opt, bool train,
                              kiln_dataset *out);
/* Loads inputs from x_path (.npy, shape (N, ...) of uint8, kept as uint8 and scaled by 1/255 when
 * gathered, or float32) and targets from y_path (shape (N, ...) of int64 or int32 class indices
 * in [0, 2^31 - 1), stored as int32, or float32 values); per-example ranks up to KILN_MAX_RANK. */
kiln_status kiln_dataset_load_npy(const char *x_path, const char *y_path, kiln_dataset *out);
/* As kiln_dataset_load_npy from two in-memory files; x_name and y_name (NULL: "inputs",
 * "targets") name them in messages. */
kiln_status kiln_dataset_load_npy_memory(const void *x, size_t x_len, const char *x_name,
                                         const void *y, size_t y_len, const char *y_name,
                                         kiln_dataset *out);
/* Loads an image folder: one subfolder per class (classes are the subfolder names, sorted),
 * PNG, JPEG, PGM or PPM files in each (sorted by name; names starting with '.' and nested
 * folders are skipped), each decoded to opt->c channels, resized bilinearly to opt->h x opt->w
 * and stored as uint8. If dir has train/ and test/ subfolders they are the splits (test's class
 * folders must be among train's); otherwise the whole folder is the training split and the test
 * split is empty. */
kiln_status kiln_dataset_load_image_folder(const char *dir, const kiln_data_options *opt,
                                           bool train, kiln_dataset *out);
/* Loads a text file for byte-level language modelling: tokens are bytes (0..255, 256 classes);
 * the last 5% of the bytes (len / 20) are the test split, the rest the training split. Example i
 * of a split is the non-overlapping window starting at s = i * context: inputs bytes [s, s +
 * context), targets bytes [s + 1, s + context + 1); a split of L bytes has (L - 1) / context
 * examples and must hold at least context + 1 bytes. The windows are gathered, not stored. */
kiln_status kiln_dataset_load_text(const char *path, int context, bool train, kiln_dataset *out);
/* As kiln_dataset_load_text from memory; name (NULL: "text") names it in messages. */
kiln_status kiln_dataset_load_text_memory(const void *bytes, size_t len, const char *name,
                                          int context, bool train, kiln_dataset *out);
/* Frees every array and zeroes the struct. */
void kiln_dataset_free(kiln_dataset *d);
/* Copies examples idx[0..count) (each in [0, n)) into x (count * c * h * w floats: uint8 scaled
 * to [0,1] by /255, float32 copied, text bytes as their values) and their class indices into y
 * (may be NULL; -1 for examples without one class index, as text or float targets). */
void kiln_dataset_gather(const kiln_dataset *d, const int *idx, int count, float *x, int *y);
/* Copies examples idx[0..count) into x (count * input.numel elements of input.gathered) and y
 * (count * target.numel elements of target.gathered; may be NULL), for every kind of dataset.
 * KILN_ERR_ARG if an index is outside [0, n). */
kiln_status kiln_dataset_gather_typed(const kiln_dataset *d, const int *idx, int count, void *x,
                                      void *y);
/* KILN_OK if d feeds a classifier as the trainer and kiln_evaluate use it (at least one example,
 * float inputs, one class index per example); otherwise an error saying what the data needs
 * (text: a model with token input). */
kiln_status kiln_dataset_check_classification(const kiln_dataset *d);
/* KILN_OK if d fits model graph g (one input, one output): the input's dtype and elements match
 * what gathering gives, and the targets are class indices over the output's last axis (one per
 * position before it; the dataset's classes at most the output's) or float targets of the
 * output's shape. Else an error naming both shapes. */
kiln_status kiln_dataset_check_model(const kiln_dataset *d, const kiln_graph_t *g);

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

/* Runs model m over every example of d in batches (kiln_dataset_check_model must hold): for
 * class targets the mean softmax cross-entropy over the output's last axis and the accuracy, per
 * target (per token for sequence models); for float targets the mean squared error and NaN
 * accuracy. Either output may be NULL. */
kiln_status kiln_evaluate(const kiln_model_t *m, const kiln_dataset *d, int batch, float *loss, float *accuracy);

#ifdef __cplusplus
}
#endif
#endif
