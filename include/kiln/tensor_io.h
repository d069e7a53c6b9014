/* Tensor files: NumPy .npy arrays and PNG / JPEG / PGM / PPM images read into float tensors
 * (or .npy arrays in their own element type), .npy written atomically, bilinear resize. Every
 * malformed field is reported with file, field, expected and found. */
#ifndef KILN_TENSOR_IO_H
#define KILN_TENSOR_IO_H

#include <stddef.h>
#include <stdint.h>
#include "kiln/kiln.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_TENSOR_MAX_DIMS  8                      /* most dims a tensor may have */
#define KILN_TENSOR_MAX_NUMEL ((int64_t)1 << 31)     /* most elements a file may declare */
#define KILN_IMAGE_MAX_SIDE   32768                  /* longest image side in pixels */
#define KILN_IMAGE_MAX_PIXELS ((int64_t)1 << 28)     /* most pixels (h * w) of an image */

/* A dense float tensor read from a file. Owns data. */
typedef struct {
    int ndim;                           /* dims used, 0..KILN_TENSOR_MAX_DIMS (0: a scalar) */
    int64_t dims[KILN_TENSOR_MAX_DIMS]; /* sizes, outermost first; unused ones are 0 */
    size_t numel;                       /* product of dims (1 for a scalar, 0 if empty) */
    float *data;                        /* numel floats, C order; never NULL after success */
} kiln_tensor_f32;

/* Frees data and zeroes t. */
void kiln_tensor_f32_free(kiln_tensor_f32 *t);

/* Reads a NumPy .npy file (format versions 1.0, 2.0, 3.0; C order; dtypes <f4, |u1, also <f8
 * and <i4/<i8 converted) into floats; uint8 data is scaled by 1/255 (images). Fortran order and
 * big-endian types are rejected with a clear error. out is zeroed on error. */
kiln_status kiln_npy_read(const char *path, kiln_tensor_f32 *out);
/* As kiln_npy_read from memory (name used in messages). */
kiln_status kiln_npy_read_memory(const void *buf, size_t len, const char *name,
                                 kiln_tensor_f32 *out);
/* Writes a float32 .npy (version 1.0, '<f4', C order) atomically: temp file in the same
 * directory, fsync, rename. ndim 0 writes a scalar. */
kiln_status kiln_npy_write(const char *path, const float *data, int ndim, const int64_t *dims);

/* A .npy array in the element type it is stored in. Owns data. */
typedef struct {
    kiln_dtype dtype;                   /* KILN_DT_U8, KILN_DT_I32, KILN_DT_I64 or KILN_DT_F32 */
    int ndim;                           /* dims used, 0..KILN_TENSOR_MAX_DIMS (0: a scalar) */
    int64_t dims[KILN_TENSOR_MAX_DIMS]; /* sizes, outermost first; unused ones are 0 */
    size_t numel;                       /* product of dims (1 for a scalar, 0 if empty) */
    void *data;                         /* numel elements of dtype in host byte order; never
                                         * NULL after success */
} kiln_npy_array;

/* Frees data and zeroes a. */
void kiln_npy_array_free(kiln_npy_array *a);
/* Reads a .npy file as kiln_npy_read does but keeps its element type ('|u1', '<i4', '<i8',
 * '<f4'). accept is a mask of (1u << kiln_dtype) bits: other types are rejected from the header,
 * before any data is read, with a message listing the accepted ones. out is zeroed on error. */
kiln_status kiln_npy_read_array(const char *path, unsigned accept, kiln_npy_array *out);
/* As kiln_npy_read_array from memory (name used in messages). */
kiln_status kiln_npy_read_array_memory(const void *buf, size_t len, const char *name,
                                       unsigned accept, kiln_npy_array *out);

/* Reads a PNG (libpng: any bit depth/colour type, palette, 16-bit, alpha dropped), a JPEG
 * (libjpeg-turbo: baseline or progressive, greyscale, YCbCr or RGB; its warnings about corrupt
 * or truncated data are errors) or a PGM/PPM (P5/P2/P6/P3, maxval up to 65535) image, told
 * apart by content, as a (c, h, w) tensor scaled to [0, 1]. channels: 1
 * converts colour to luminance (0.299 R + 0.587 G + 0.114 B), 3 expands grey to RGB, 0 keeps
 * the file's channel count. Sides are limited to KILN_IMAGE_MAX_SIDE, area to
 * KILN_IMAGE_MAX_PIXELS. out is zeroed on error. */
kiln_status kiln_image_read(const char *path, int channels, kiln_tensor_f32 *out);
/* As kiln_image_read from memory (name used in messages). */
kiln_status kiln_image_read_memory(const void *buf, size_t len, const char *name, int channels,
                                   kiln_tensor_f32 *out);

/* Resizes a (c, h, w) tensor to (c, oh, ow) by bilinear interpolation into a new tensor (pixel
 * centres at half-integers, as align_corners=False; samples beyond an edge clamp to it). out
 * must not be in. */
kiln_status kiln_tensor_resize(const kiln_tensor_f32 *in, int oh, int ow, kiln_tensor_f32 *out);

#ifdef __cplusplus
}
#endif
#endif
