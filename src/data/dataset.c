/* Datasets in memory: freeing, gathering examples into batches (classic float/int batches and
 * batches in each layout's gathered type), and the check that a dataset suits a classifier. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "kiln/dataset.h"

void kiln_dataset_free(kiln_dataset *d)
{
    if (!d)
        return;
    if (d->images != d->inputs)
        free(d->images);
    if ((void *)d->labels != d->targets)
        free(d->labels);
    free(d->inputs);
    free(d->targets);
    free(d->text);
    memset(d, 0, sizeof *d);
}

/* Elements of one example's input (hand-built image datasets describe it by c, h, w only). */
static size_t input_numel(const kiln_dataset *d)
{
    return d->kind == KILN_DATA_IMAGES ? (size_t)d->c * (size_t)d->h * (size_t)d->w
                                       : d->input.numel;
}

/* Writes example i's input as floats: uint8 scaled by 1/255, float32 copied, text bytes as their
 * values. */
static void input_f32(const kiln_dataset *d, int i, size_t per, float *restrict dst)
{
    const float scale = 1.0f / 255.0f;
    if (d->kind == KILN_DATA_TEXT) {
        const uint8_t *src = d->text + (size_t)i * per;
        for (size_t j = 0; j < per; j++)
            dst[j] = (float)src[j];
    } else if (d->kind == KILN_DATA_IMAGES || d->input.storage == KILN_DT_U8) {
        const uint8_t *restrict src = (d->kind == KILN_DATA_IMAGES ? d->images
                                       : (const uint8_t *)d->inputs) + (size_t)i * per;
        for (size_t j = 0; j < per; j++)
            dst[j] = (float)src[j] * scale;
    } else {
        memcpy(dst, (const float *)d->inputs + (size_t)i * per, per * sizeof *dst);
    }
}

/* Example i's class index, or -1 if its target is not one class index. */
static int class_of(const kiln_dataset *d, int i)
{
    if (d->kind == KILN_DATA_IMAGES)
        return d->labels ? d->labels[i] : -1;
    if (d->kind != KILN_DATA_ARRAYS || d->target.rank != 0 || d->target.gathered != KILN_DT_I32)
        return -1;
    if (d->target.storage == KILN_DT_U8)
        return ((const uint8_t *)d->targets)[i];
    return ((const int32_t *)d->targets)[i];
}

void kiln_dataset_gather(const kiln_dataset *d, const int *idx, int count, float *x, int *y)
{
    const size_t per = input_numel(d);
    for (int i = 0; i < count; i++) {
        input_f32(d, idx[i], per, x + (size_t)i * per);
        if (y)
            y[i] = class_of(d, idx[i]);
    }
}

/* Writes example i's target (target.numel elements of target.gathered) at dst. */
static void target_typed(const kiln_dataset *d, int i, void *dst)
{
    size_t per = d->target.numel;
    if (d->kind == KILN_DATA_IMAGES) {
        *(int32_t *)dst = class_of(d, i);
    } else if (d->kind == KILN_DATA_TEXT) {
        const uint8_t *src = d->text + (size_t)i * d->input.numel + 1;
        for (size_t j = 0; j < per; j++)
            ((int32_t *)dst)[j] = src[j];
    } else if (d->target.storage == KILN_DT_U8) {
        const uint8_t *src = (const uint8_t *)d->targets + (size_t)i * per;
        for (size_t j = 0; j < per; j++)
            ((int32_t *)dst)[j] = src[j];
    } else {
        memcpy(dst, (const uint8_t *)d->targets + (size_t)i * per * 4, per * 4);
    }
}

/* Checks the arguments of kiln_dataset_gather_typed. */
static kiln_status check_gather(const kiln_dataset *d, const int *idx, int count, const void *x)
{
    if (!d || count < 0 || (count > 0 && (!idx || !x)))
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_gather_typed: expected a dataset, a "
                          "count >= 0, indices and an output, found %s",
                          !d ? "no dataset" : count < 0 ? "a negative count" : "NULL");
    bool stored = d->kind == KILN_DATA_IMAGES ? d->images != NULL
                : d->kind == KILN_DATA_TEXT ? d->text != NULL
                : d->inputs != NULL && d->targets != NULL;
    if (count > 0 && !stored)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_gather_typed: the dataset holds no data");
    for (int i = 0; i < count; i++)
        if (idx[i] < 0 || idx[i] >= d->n)
            return kiln_error(KILN_ERR_ARG, "kiln_dataset_gather_typed: index %d: expected 0..%d, "
                              "found %d", i, d->n - 1, idx[i]);
    return KILN_OK;
}

kiln_status kiln_dataset_gather_typed(const kiln_dataset *d, const int *idx, int count, void *x,
                                      void *y)
{
    kiln_status st = check_gather(d, idx, count, x);
    if (st)
        return st;
    const size_t per = input_numel(d);
    const size_t y_bytes = d->kind == KILN_DATA_IMAGES ? 4 : d->target.numel * 4;
    for (int i = 0; i < count; i++) {
        if (d->kind == KILN_DATA_TEXT) {
            const uint8_t *src = d->text + (size_t)idx[i] * per;
            int32_t *dst = (int32_t *)x + (size_t)i * per;
            for (size_t j = 0; j < per; j++)
                dst[j] = src[j];
        } else {
            input_f32(d, idx[i], per, (float *)x + (size_t)i * per);
        }
        if (y)
            target_typed(d, idx[i], (uint8_t *)y + (size_t)i * y_bytes);
    }
    return KILN_OK;
}

kiln_status kiln_dataset_check_classification(const kiln_dataset *d)
{
    if (!d)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_check_classification: dataset is NULL");
    if (d->n < 1)
        return kiln_error(KILN_ERR_ARG, "the dataset is empty (a source without a test split "
                          "gives an empty test set)");
    if (d->kind == KILN_DATA_TEXT)
        return kiln_error(KILN_ERR_ARG, "text data is not one class per example: train and evaluate "
                          "it with a token model (kiln train, kiln eval), run it with kiln run --input");
    if (d->kind == KILN_DATA_IMAGES)
        return KILN_OK;
    if (d->target.gathered == KILN_DT_F32)
        return kiln_error(KILN_ERR_ARG, "float32 targets (regression) are not one class per example "
                          "(kiln train and kiln eval take them with a regression loss)");
    if (d->target.rank != 0)
        return kiln_error(KILN_ERR_ARG, "targets of %d dims per example (a class per position) are "
                          "not one class per example (kiln train and kiln eval take them)",
                          d->target.rank);
    return KILN_OK;
}

kiln_status kiln_dataset_check_model(const kiln_dataset *d, const kiln_graph_t *g)
{
    int in, out;
    if (!d || d->n < 1)
        return kiln_error(KILN_ERR_ARG, "the dataset is empty (a source without a test split gives an empty test set)");
    if (kiln_graph_inputs(g, NULL) != 1 || kiln_graph_outputs(g, NULL) != 1)
        return kiln_error(KILN_ERR_ARG, "training and evaluation on a dataset need a model with one input and one "
                          "output, found %d and %d", kiln_graph_inputs(g, NULL), kiln_graph_outputs(g, NULL));
    kiln_graph_inputs(g, &in);
    kiln_graph_outputs(g, &out);
    int id[KILN_MAX_RANK], od[KILN_MAX_RANK];
    int ir = kiln_graph_shape(g, in, id), orank = kiln_graph_shape(g, out, od);
    size_t in_numel = kiln_graph_numel(g, in), out_numel = kiln_graph_numel(g, out);
    kiln_dtype in_dt = d->kind == KILN_DATA_IMAGES && d->input.numel == 0 ? KILN_DT_F32 : d->input.gathered;
    size_t d_in = d->kind == KILN_DATA_IMAGES && d->input.numel == 0 ? (size_t)d->c * d->h * d->w : d->input.numel;
    char a[64] = "", b[64] = "";
    for (int i = 0, n = 0; i < ir; i++)
        n += snprintf(a + n, sizeof a - (size_t)n, "%s%d", i ? "x" : "", id[i]);
    if (d_in != in_numel) {
        if (d->kind == KILN_DATA_TEXT)
            return kiln_error(KILN_ERR_SHAPE, "model input %s does not match the text windows of %zu bytes (--context)",
                              a, d_in);
        return kiln_error(KILN_ERR_SHAPE, "model input %s (%zu values) does not match the dataset's examples of %zu "
                          "values", a, in_numel, d_in);
    }
    const kiln_node *inn = &g->nodes[in];
    if (inn->dtype != in_dt)
        return kiln_error(KILN_ERR_SHAPE, "model input %s is %s, the dataset gives %s", inn->name,
                          kiln_dtype_name(inn->dtype), kiln_dtype_name(in_dt));
    for (int i = 0, n = 0; i < orank; i++)
        n += snprintf(b + n, sizeof b - (size_t)n, "%s%d", i ? "x" : "", od[i]);
    bool classes = d->kind == KILN_DATA_IMAGES && d->target.numel == 0 ? true : d->target.gathered == KILN_DT_I32;
    size_t t_numel = d->kind == KILN_DATA_IMAGES && d->target.numel == 0 ? 1 : d->target.numel;
    if (classes) {
        int c = orank ? od[orank - 1] : 1;
        if (out_numel / (size_t)c != t_numel)
            return kiln_error(KILN_ERR_SHAPE, "model output %s gives %zu class rows (its last axis holds the classes), "
                              "the dataset %zu class targets per example", b, out_numel / (size_t)c, t_numel);
        if (c < d->n_classes)
            return kiln_error(KILN_ERR_SHAPE, "model output %s has %d classes on its last axis, the dataset %d", b, c,
                              d->n_classes);
    } else if (out_numel != t_numel) {
        return kiln_error(KILN_ERR_SHAPE, "model output %s (%zu values) does not match the dataset's %zu float "
                          "targets per example", b, out_numel, t_numel);
    }
    return KILN_OK;
}
