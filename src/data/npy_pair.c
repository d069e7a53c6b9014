/* Datasets from a pair of .npy arrays: inputs (N, ...) of uint8 (kept as uint8) or float32, and
 * targets (N, ...) of int64 / int32 class indices (stored as int32) or float32 values. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "data/layout.h"
#include "io/npy_header.h"
#include "kiln/tensor_io.h"

#define ACCEPT_INPUTS  (1u << KILN_DT_U8 | 1u << KILN_DT_F32)
#define ACCEPT_TARGETS (1u << KILN_DT_I64 | 1u << KILN_DT_I32 | 1u << KILN_DT_F32)
#define LABEL_LIMIT    INT_MAX   /* class indices lie in [0, LABEL_LIMIT): n_classes fits an int */

/* Checks an array's shape: (N, ...) with N and every per-example dim positive, at most
 * KILN_MAX_RANK per-example dims and at most INT_MAX elements per example. what names its role. */
static kiln_status check_shape(const char *name, const char *what, const kiln_npy_array *a)
{
    char shape[256];
    kiln_npy_shape_text(shape, sizeof shape, a->ndim, a->dims);
    if (a->ndim < 1)
        return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: expected (N, ...) %s with one row per "
                          "example, found a scalar", name, shape, what);
    if (a->ndim - 1 > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: expected at most %d dims per example "
                          "after N, found %d", name, shape, KILN_MAX_RANK, a->ndim - 1);
    for (int i = 0; i < a->ndim; i++)
        if (a->dims[i] < 1)
            return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: dim %d: expected a positive size, "
                              "found 0 (no %s)", name, shape, i, i ? "elements per example"
                              : "examples");
    if (a->dims[0] > INT_MAX)
        return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: expected at most %d examples, found "
                          "%lld", name, shape, INT_MAX, (long long)a->dims[0]);
    if (a->numel / (size_t)a->dims[0] > INT_MAX)
        return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: expected at most %d elements per "
                          "example, found %zu", name, shape, INT_MAX,
                          a->numel / (size_t)a->dims[0]);
    return KILN_OK;
}

/* Checks every float is finite. */
static kiln_status check_finite(const char *name, const float *v, size_t numel, size_t per)
{
    for (size_t i = 0; i < numel; i++)
        if (!isfinite(v[i]))
            return kiln_error(KILN_ERR_FORMAT, "%s: element %zu (example %zu): expected a finite "
                              "number, found %s", name, i, i / per,
                              isnan(v[i]) ? "nan" : v[i] > 0 ? "inf" : "-inf");
    return KILN_OK;
}

/* Reports a class index outside [0, LABEL_LIMIT). */
static kiln_status label_error(const char *name, size_t i, size_t per, long long v)
{
    return kiln_error(KILN_ERR_FORMAT, "%s: label %zu (example %zu): expected a class index in "
                      "0..%d, found %lld", name, i, i / per, LABEL_LIMIT - 1, v);
}

/* Validates int64 or int32 class indices and turns y's data into int32 (in place for int32);
 * sets *n_classes to the largest + 1. */
static kiln_status to_labels(const char *name, kiln_npy_array *y, size_t per, int *n_classes)
{
    int32_t max = -1;
    int32_t *out = y->dtype == KILN_DT_I32 ? y->data : malloc(y->numel * sizeof *out);
    if (!out)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu labels", name, y->numel);
    for (size_t i = 0; i < y->numel; i++) {
        int64_t v = y->dtype == KILN_DT_I64 ? ((const int64_t *)y->data)[i]
                                            : ((const int32_t *)y->data)[i];
        if (v < 0 || v >= LABEL_LIMIT) {
            if (out != y->data)
                free(out);
            return label_error(name, i, per, (long long)v);
        }
        out[i] = (int32_t)v;
        max = out[i] > max ? out[i] : max;
    }
    if (out != y->data) {
        free(y->data);
        y->data = out;
        y->dtype = KILN_DT_I32;
    }
    *n_classes = max + 1;
    return KILN_OK;
}

/* Reports differing example counts. */
static kiln_status count_error(const char *xname, const kiln_npy_array *x, const char *yname,
                               const kiln_npy_array *y)
{
    char xs[256], ys[256];
    return kiln_error(KILN_ERR_SHAPE, "%s: shape %s: expected %lld examples (the first dim of %s, "
                      "shape %s), found %lld", yname,
                      kiln_npy_shape_text(ys, sizeof ys, y->ndim, y->dims),
                      (long long)x->dims[0], xname,
                      kiln_npy_shape_text(xs, sizeof xs, x->ndim, x->dims),
                      (long long)y->dims[0]);
}

/* Validates the inputs read into x. */
static kiln_status check_inputs(const char *name, const kiln_npy_array *x)
{
    kiln_status st = check_shape(name, "inputs", x);
    if (!st && x->dtype == KILN_DT_F32)
        st = check_finite(name, x->data, x->numel, x->numel / (size_t)x->dims[0]);
    return st;
}

/* Validates the targets read into y against x and converts class indices; sets *n_classes. */
static kiln_status check_targets(const char *xname, const kiln_npy_array *x, const char *yname,
                                 kiln_npy_array *y, int *n_classes)
{
    kiln_status st = check_shape(yname, "targets", y);
    if (st)
        return st;
    if (y->dims[0] != x->dims[0])
        return count_error(xname, x, yname, y);
    size_t per = y->numel / (size_t)y->dims[0];
    *n_classes = 0;
    if (y->dtype == KILN_DT_F32)
        return check_finite(yname, y->data, y->numel, per);
    return to_labels(yname, y, per, n_classes);
}

/* Builds the dataset from validated arrays, taking their data. */
static kiln_status build(const char *yname, kiln_npy_array *x, kiln_npy_array *y, int n_classes,
                         kiln_dataset *out)
{
    kiln_dataset d = { 0 };
    d.kind = KILN_DATA_ARRAYS;
    d.n = (int)x->dims[0];
    d.n_classes = n_classes;
    kiln_layout_set(&d.input, x->ndim - 1, x->dims + 1, x->dtype, KILN_DT_F32);
    kiln_layout_set(&d.target, y->ndim - 1, y->dims + 1, y->dtype, y->dtype);
    kiln_layout_model_shape(&d);
    d.inputs = x->data;
    d.targets = y->data;
    x->data = y->data = NULL;
    if (d.input.storage == KILN_DT_U8)
        d.images = d.inputs;
    kiln_status st = kiln_layout_copy_labels(&d, yname);
    if (st) {
        kiln_dataset_free(&d);
        return st;
    }
    *out = d;
    return KILN_OK;
}

/* Validates both arrays and builds the dataset; frees what it does not take. */
static kiln_status finish(const char *xname, kiln_npy_array *x, const char *yname,
                          kiln_npy_array *y, kiln_dataset *out)
{
    int n_classes = 0;
    kiln_status st = check_targets(xname, x, yname, y, &n_classes);
    if (!st)
        st = build(yname, x, y, n_classes, out);
    kiln_npy_array_free(x);
    kiln_npy_array_free(y);
    return st;
}

kiln_status kiln_dataset_load_npy(const char *x_path, const char *y_path, kiln_dataset *out)
{
    kiln_npy_array x, y;
    if (!out || !x_path || !y_path)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load_npy: expected two paths and an "
                          "output, found NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = kiln_npy_read_array(x_path, ACCEPT_INPUTS, &x);
    if (!st && (st = check_inputs(x_path, &x)) != KILN_OK)
        kiln_npy_array_free(&x);
    if (st)
        return st;
    if ((st = kiln_npy_read_array(y_path, ACCEPT_TARGETS, &y)) != KILN_OK) {
        kiln_npy_array_free(&x);
        return st;
    }
    return finish(x_path, &x, y_path, &y, out);
}

kiln_status kiln_dataset_load_npy_memory(const void *x_buf, size_t x_len, const char *x_name,
                                         const void *y_buf, size_t y_len, const char *y_name,
                                         kiln_dataset *out)
{
    kiln_npy_array x, y;
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load_npy_memory: out is NULL");
    memset(out, 0, sizeof *out);
    x_name = x_name ? x_name : "inputs";
    y_name = y_name ? y_name : "targets";
    kiln_status st = kiln_npy_read_array_memory(x_buf, x_len, x_name, ACCEPT_INPUTS, &x);
    if (!st && (st = check_inputs(x_name, &x)) != KILN_OK)
        kiln_npy_array_free(&x);
    if (st)
        return st;
    if ((st = kiln_npy_read_array_memory(y_buf, y_len, y_name, ACCEPT_TARGETS, &y)) != KILN_OK) {
        kiln_npy_array_free(&x);
        return st;
    }
    return finish(x_name, &x, y_name, &y, out);
}
