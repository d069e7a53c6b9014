/* A dataset's description: per-example layouts, the model input shape they give, and the uint8
 * label copy image-classification datasets keep in their classic fields. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "data/layout.h"

void kiln_layout_set(kiln_example_layout *l, int rank, const int64_t *dims, kiln_dtype storage,
                     kiln_dtype gathered)
{
    memset(l, 0, sizeof *l);
    l->rank = rank;
    l->numel = 1;
    for (int i = 0; i < rank; i++) {
        l->dims[i] = (int)dims[i];
        l->numel *= (size_t)dims[i];
    }
    l->storage = storage;
    l->gathered = gathered;
}

void kiln_layout_model_shape(kiln_dataset *d)
{
    const kiln_example_layout *l = &d->input;
    d->c = d->h = d->w = 1;
    if (l->rank == 1) {
        d->c = l->dims[0];
    } else if (l->rank >= 2) {
        d->h = l->dims[l->rank - 2];
        d->w = l->dims[l->rank - 1];
        for (int i = 0; i < l->rank - 2; i++)
            d->c *= l->dims[i];
    }
}

void kiln_layout_describe_images(kiln_dataset *d)
{
    const int64_t dims[3] = { d->c, d->h, d->w };
    d->kind = KILN_DATA_IMAGES;
    kiln_layout_set(&d->input, 3, dims, KILN_DT_U8, KILN_DT_F32);
    kiln_layout_set(&d->target, 0, NULL, KILN_DT_U8, KILN_DT_I32);
}

kiln_status kiln_layout_copy_labels(kiln_dataset *d, const char *name)
{
    const kiln_example_layout *t = &d->target;
    if (t->rank != 0 || t->storage != KILN_DT_I32 || d->n_classes > 256 || !d->targets)
        return KILN_OK;
    d->labels = malloc(d->n ? (size_t)d->n : 1);
    if (!d->labels)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %d labels", name, d->n);
    const int32_t *y = d->targets;
    for (int i = 0; i < d->n; i++)
        d->labels[i] = (uint8_t)y[i];
    return KILN_OK;
}
