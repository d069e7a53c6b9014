/* libFuzzer target for text datasets. Input: a mode byte (low 6 bits: context - 1; the top bit:
 * the test split), then the text for kiln_dataset_load_text_memory. On success the window count
 * must follow from the split's length and every window must gather the split's bytes. */
#include <stdint.h>
#include <string.h>
#include "fuzz_data_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int context = (data[0] & 63) + 1;
    bool train = !(data[0] & 128);
    const uint8_t *text = data + 1;
    size_t len = size - 1, test = len / 20, off = train ? 0 : len - test;
    size_t split = train ? len - test : test;
    kiln_dataset d;
    if (kiln_dataset_load_text_memory(text, len, "fuzz.txt", context, train, &d) != KILN_OK) {
        check_failed(&d);
        require(split < (size_t)context + 1 && strncmp(kiln_last_error(), "fuzz.txt: ", 10) == 0);
        return 0;
    }
    require(d.kind == KILN_DATA_TEXT && d.text_len == split);
    require((size_t)d.n == (split - 1) / (size_t)context && d.n >= 1);
    check_dataset(&d);
    int32_t x[64], y[64];
    for (int i = 0; i < d.n; i++) {
        require(kiln_dataset_gather_typed(&d, &i, 1, x, y) == KILN_OK);
        for (int j = 0; j < context; j++)
            require(x[j] == text[off + (size_t)i * context + j] &&
                    y[j] == text[off + (size_t)i * context + j + 1]);
    }
    kiln_dataset_free(&d);
    return 0;
}
