/* libFuzzer target for the IDX loaders. Input: a mode byte, a 2-byte little-endian split point,
 * then bytes. Even modes split the bytes into an image file and a label file for
 * kiln_idx_load_memory; odd modes feed them all to kiln_idx_read_memory. Either may be raw or
 * gzip. On success the result's invariants are checked and every byte is touched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kiln/dataset.h"

/* Aborts (a crash libFuzzer reports) when an invariant fails. */
static void require(int ok)
{
    if (!ok)
        abort();
}

/* Checks a loaded dataset and gathers its first and last examples. */
static void check_dataset(const kiln_dataset *d)
{
    size_t per = (size_t)d->c * (size_t)d->h * (size_t)d->w;
    require(d->n > 0 && d->c > 0 && d->h > 0 && d->w > 0 && d->images && d->labels);
    require(d->n_classes >= 1 && d->n_classes <= 256);
    for (int i = 0; i < d->n; i++)
        require(d->labels[i] < d->n_classes);
    int idx[2] = { 0, d->n - 1 }, y[2];
    float *x = malloc(2 * per * sizeof *x);
    require(x != NULL);
    kiln_dataset_gather(d, idx, 2, x, y);
    for (size_t j = 0; j < 2 * per; j++)
        require(x[j] >= 0.0f && x[j] <= 1.0f);
    free(x);
}

/* Checks a loaded tensor and touches its bytes. */
static void check_tensor(const kiln_idx_tensor *t)
{
    size_t numel = 1;
    unsigned sum = 0;
    require(t->ndim >= 1 && t->ndim <= KILN_IDX_MAX_DIMS && t->data);
    for (int i = 0; i < t->ndim; i++)
        numel *= (size_t)t->dims[i];
    require(numel == t->numel);
    for (size_t j = 0; j < numel * (size_t)t->elem_size; j++)
        sum += ((const uint8_t *)t->data)[j];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    int mode = data[0];
    size_t rest = size - 3, split = ((size_t)data[1] | (size_t)data[2] << 8) % (rest + 1);
    const uint8_t *bytes = data + 3;
    if (mode & 1) {
        kiln_idx_tensor t;
        if (kiln_idx_read_memory(bytes, rest, &t) == KILN_OK)
            check_tensor(&t);
        else
            require(t.data == NULL && kiln_last_error()[0] != '\0');
        kiln_idx_tensor_free(&t);
        return 0;
    }
    kiln_dataset d;
    if (kiln_idx_load_memory(bytes, split, bytes + split, rest - split, &d) == KILN_OK)
        check_dataset(&d);
    else
        require(d.images == NULL && d.labels == NULL && kiln_last_error()[0] != '\0');
    kiln_dataset_free(&d);
    return 0;
}
