/* libFuzzer target for the .npy reader: the input is one in-memory file for
 * kiln_npy_read_memory. On success the result's invariants are checked and every element is
 * touched; on failure the tensor must be empty and a message set. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "kiln/tensor_io.h"

/* Aborts (a crash libFuzzer reports) when an invariant fails. */
static void require(int ok)
{
    if (!ok)
        abort();
}

/* Checks a read tensor: dims within limits, numel their product, data present. */
static void check_tensor(const kiln_tensor_f32 *t)
{
    uint64_t numel = 1;
    require(t->ndim >= 0 && t->ndim <= KILN_TENSOR_MAX_DIMS && t->data != NULL);
    for (int i = 0; i < t->ndim; i++) {
        require(t->dims[i] >= 0 && t->dims[i] <= KILN_TENSOR_MAX_NUMEL);
        numel *= (uint64_t)t->dims[i];
    }
    for (int i = t->ndim; i < KILN_TENSOR_MAX_DIMS; i++)
        require(t->dims[i] == 0);
    require(numel == t->numel && numel <= (uint64_t)KILN_TENSOR_MAX_NUMEL);
    uint32_t mix = 0;
    for (size_t i = 0; i < t->numel; i++) {
        uint32_t u;
        memcpy(&u, &t->data[i], sizeof u);
        mix ^= u;
    }
    (void)mix;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_tensor_f32 t;
    if (kiln_npy_read_memory(data, size, "fuzz.npy", &t) == KILN_OK)
        check_tensor(&t);
    else
        require(t.data == NULL && t.numel == 0 &&
                strncmp(kiln_last_error(), "fuzz.npy: ", 10) == 0);
    kiln_tensor_f32_free(&t);
    return 0;
}
