/* Internal: filling in a dataset's description (layouts, model shape, the uint8 label copy),
 * shared by the loaders. */
#ifndef KILN_DATA_LAYOUT_H
#define KILN_DATA_LAYOUT_H

#include "kiln/dataset.h"

/* Sets l to rank dims (each in [1, INT_MAX], product at most INT_MAX: the caller checked) held
 * as storage and gathered as gathered. */
void kiln_layout_set(kiln_example_layout *l, int rank, const int64_t *dims, kiln_dtype storage,
                     kiln_dtype gathered);
/* Sets d->c, h, w from d->input: rank 0 or 1 a vector (h = w = 1), rank 2 (1, h, w), rank 3
 * (c, h, w), higher ranks c = the product of all but the last two dims. */
void kiln_layout_model_shape(kiln_dataset *d);
/* Describes a KILN_DATA_IMAGES dataset (c, h, w uint8 images, uint8 labels) in d->input and
 * d->target. */
void kiln_layout_describe_images(kiln_dataset *d);
/* Sets d->labels to a uint8 copy of the int32 class indices in d->targets when there is one per
 * example and n_classes <= 256 (else leaves it NULL). name names the data in messages. */
kiln_status kiln_layout_copy_labels(kiln_dataset *d, const char *name);

#endif
