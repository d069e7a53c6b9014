/* libFuzzer target for .npy pair datasets. Input: a 2-byte little-endian split point, then
 * bytes split there into an inputs file and a targets file for kiln_dataset_load_npy_memory. On
 * success the dataset's invariants are checked and every example gathered; on failure it must
 * be empty and the message must name one of the two files. */
#include <stdint.h>
#include <string.h>
#include "fuzz_data_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t rest = size - 2, split = ((size_t)data[0] | (size_t)data[1] << 8) % (rest + 1);
    const uint8_t *bytes = data + 2;
    kiln_dataset d;
    if (kiln_dataset_load_npy_memory(bytes, split, "x.npy", bytes + split, rest - split, "y.npy",
                                     &d) == KILN_OK) {
        require(d.kind == KILN_DATA_ARRAYS && d.n >= 1);
        require(d.input.storage == KILN_DT_U8 ? d.images == d.inputs : d.images == NULL);
        check_dataset(&d);
    } else {
        check_failed(&d);
        require(strncmp(kiln_last_error(), "x.npy: ", 7) == 0 ||
                strncmp(kiln_last_error(), "y.npy: ", 7) == 0);
    }
    kiln_dataset_free(&d);
    return 0;
}
