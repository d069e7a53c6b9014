/* libFuzzer target for the JPEG decoder. Input: a mode byte, then one in-memory JPEG for
 * kiln_jpeg_decode (the magic is not required, so every input reaches libjpeg). The mode picks
 * the channels asked for (0, 1 or 3) and the size of a bilinear resize run on a success. Every
 * sample must lie in [0, 1]; on failure the tensor must be empty and the message name the file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "io/image_util.h"

/* Aborts (a crash libFuzzer reports) when an invariant fails. */
static void require(int ok)
{
    if (!ok)
        abort();
}

/* Checks a (c, h, w) image: shape within limits, channels as asked, samples in [0, 1]. */
static void check_image(const kiln_tensor_f32 *t, int channels)
{
    require(t->ndim == 3 && t->data != NULL);
    require(channels ? t->dims[0] == channels : (t->dims[0] == 1 || t->dims[0] == 3));
    require(t->dims[1] >= 1 && t->dims[1] <= KILN_IMAGE_MAX_SIDE);
    require(t->dims[2] >= 1 && t->dims[2] <= KILN_IMAGE_MAX_SIDE);
    require(t->dims[1] * t->dims[2] <= KILN_IMAGE_MAX_PIXELS);
    require(t->numel == (size_t)(t->dims[0] * t->dims[1] * t->dims[2]));
    for (size_t i = 0; i < t->numel; i++)
        require(t->data[i] >= 0.0f && t->data[i] <= 1.0f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int channel_modes[4] = { 0, 1, 3, 0 };
    if (size < 1)
        return 0;
    int mode = data[0], channels = channel_modes[mode & 3];
    kiln_tensor_f32 t = { 0 }, r;
    if (kiln_jpeg_decode("fuzz.jpg", data + 1, size - 1, channels, &t) == KILN_OK) {
        check_image(&t, channels);
        require(kiln_tensor_resize(&t, 1 + (mode >> 2 & 7), 1 + (mode >> 5 & 7), &r) == KILN_OK);
        check_image(&r, (int)t.dims[0]);
        kiln_tensor_f32_free(&r);
    } else {
        require(strncmp(kiln_last_error(), "fuzz.jpg: ", 10) == 0);
    }
    kiln_tensor_f32_free(&t);
    return 0;
}
