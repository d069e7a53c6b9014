/* Internal: what the image decoders share: size limits, allocation, pixel stores, and the JPEG
 * decoder (jpeg.c) beside the PNG and PNM ones in image.c. */
#ifndef KILN_IO_IMAGE_UTIL_H
#define KILN_IO_IMAGE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include "kiln/tensor_io.h"

/* Checks image sides and area against KILN_IMAGE_MAX_SIDE and KILN_IMAGE_MAX_PIXELS. */
kiln_status kiln_image_check_size(const char *name, int64_t w, int64_t h);
/* Allocates out as a (c, h, w) tensor. */
kiln_status kiln_image_alloc(const char *name, kiln_tensor_f32 *out, int64_t c, int64_t h,
                             int64_t w);
/* Decodes a JPEG (baseline or progressive, greyscale, YCbCr or RGB) from buf into a (c, h, w)
 * tensor scaled to [0, 1]; channels as kiln_image_read. name names it in messages. */
kiln_status kiln_jpeg_decode(const char *name, const uint8_t *buf, size_t len, int channels,
                             kiln_tensor_f32 *out);

/* Stores pixel i (row-major) of sc samples in [0, 1] into out's channel planes, converting to
 * out's channel count (grey to RGB by copying, RGB to grey by luminance). */
static inline void kiln_image_put_pixel(kiln_tensor_f32 *out, size_t i, const float *px, int sc)
{
    int dc = (int)out->dims[0];
    size_t plane = (size_t)out->dims[1] * (size_t)out->dims[2];
    if (dc == sc) {
        for (int k = 0; k < dc; k++)
            out->data[(size_t)k * plane + i] = px[k];
    } else if (dc == 3) {
        for (int k = 0; k < 3; k++)
            out->data[(size_t)k * plane + i] = px[0];
    } else {
        float y = 0.299f * px[0] + 0.587f * px[1] + 0.114f * px[2];
        out->data[i] = y < 1.0f ? y : 1.0f;
    }
}

#endif
