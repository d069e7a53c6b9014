/* libFuzzer target for the image reader. Input: a mode byte, then one in-memory PNG / PGM / PPM
 * file for kiln_image_read_memory. The mode picks the channels asked for (0, 1 or 3) and the
 * size of a bilinear resize run on a success. Every sample must lie in [0, 1]; on failure the
 * tensor must be empty and a message set. */
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

/* Resizes to a small size; the result must stay in [0, 1]. */
static void check_resize(const kiln_tensor_f32 *t, int mode)
{
    kiln_tensor_f32 r;
    int oh = 1 + (mode >> 2 & 7), ow = 1 + (mode >> 5 & 7);
    require(kiln_tensor_resize(t, oh, ow, &r) == KILN_OK);
    require(r.ndim == 3 && r.dims[0] == t->dims[0] && r.dims[1] == oh && r.dims[2] == ow);
    for (size_t i = 0; i < r.numel; i++)
        require(r.data[i] >= 0.0f && r.data[i] <= 1.0f);
    kiln_tensor_f32_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int channel_modes[4] = { 0, 1, 3, 0 };
    if (size < 1)
        return 0;
    int mode = data[0], channels = channel_modes[mode & 3];
    kiln_tensor_f32 t;
    if (kiln_image_read_memory(data + 1, size - 1, "fuzz.img", channels, &t) == KILN_OK) {
        check_image(&t, channels);
        check_resize(&t, mode);
    } else {
        require(t.data == NULL && t.numel == 0 &&
                strncmp(kiln_last_error(), "fuzz.img: ", 10) == 0);
    }
    kiln_tensor_f32_free(&t);
    return 0;
}
