/* Invariants of a loaded dataset shared by the dataset fuzz targets: its description agrees
 * with itself, every class index is below n_classes, and gathering every example (both ways)
 * stays in bounds with inputs in range. */
#ifndef KILN_TESTS_FUZZ_DATA_CHECK_H
#define KILN_TESTS_FUZZ_DATA_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "kiln/dataset.h"

/* Aborts (a crash libFuzzer reports) when an invariant fails. */
static void require(int ok)
{
    if (!ok)
        abort();
}

/* Checks a layout: rank and dims in range, numel their product. */
static void check_layout(const kiln_example_layout *l)
{
    size_t numel = 1;
    require(l->rank >= 0 && l->rank <= KILN_MAX_RANK);
    for (int i = 0; i < l->rank; i++) {
        require(l->dims[i] >= 1);
        numel *= (size_t)l->dims[i];
    }
    for (int i = l->rank; i < KILN_MAX_RANK; i++)
        require(l->dims[i] == 0);
    require(numel == l->numel && numel <= INT32_MAX);
    require(l->gathered == KILN_DT_F32 || l->gathered == KILN_DT_I32);
}

/* Checks a loaded dataset and gathers every example with both gather functions. */
static void check_dataset(const kiln_dataset *d)
{
    require(d->n >= 0);
    check_layout(&d->input);
    check_layout(&d->target);
    require((size_t)d->c * (size_t)d->h * (size_t)d->w == d->input.numel);
    size_t in = d->input.numel, out = d->target.numel;
    float *xf = malloc(in * sizeof *xf), *yf = malloc(out * 4);
    int32_t *xi = (int32_t *)xf;
    int y = 0;
    require(xf && yf);
    for (int i = 0; i < d->n; i++) {
        kiln_dataset_gather(d, &i, 1, xf, &y);
        require(y >= -1 && y < (d->n_classes > 0 ? d->n_classes : 1));
        require(kiln_dataset_gather_typed(d, &i, 1, xf, yf) == KILN_OK);
        for (size_t j = 0; j < in; j++)
            require(d->input.gathered == KILN_DT_I32 ? xi[j] >= 0 && xi[j] < 256
                    : d->input.storage == KILN_DT_U8 ? xf[j] >= 0.0f && xf[j] <= 1.0f
                    : isfinite(xf[j]));
        for (size_t j = 0; d->target.gathered == KILN_DT_I32 && j < out; j++)
            require(((int32_t *)yf)[j] >= 0 && ((int32_t *)yf)[j] < d->n_classes);
    }
    int outside = d->n;
    require(kiln_dataset_gather_typed(d, &outside, 1, xf, yf) == KILN_ERR_ARG);
    free(xf);
    free(yf);
}

/* Checks a failed load left the dataset empty and said why. */
static void check_failed(const kiln_dataset *d)
{
    require(d->n == 0 && !d->inputs && !d->targets && !d->images && !d->labels && !d->text);
    require(kiln_last_error()[0] != '\0');
}

#endif
