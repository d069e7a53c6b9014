/* Images: PNG (through libpng), JPEG (jpeg.c, through libjpeg-turbo) and PGM / PPM (P2, P3, P5,
 * P6) read from files or memory into (c, h, w) float tensors scaled to [0, 1], and bilinear
 * resize. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* fileno */
#endif
#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/error.h"
#include "io/image_util.h"
#include "kiln/tensor_io.h"

#define IMG_MAX_FILE      ((uint64_t)1 << 32)  /* largest image file read */
#define IMG_FIRST_ALLOC   ((size_t)1 << 16)    /* buffers for files of unknown size start here */
#define DEFLATE_MAX_RATIO 1032                 /* deflate expands at most this much */
#define PNM_MAX_NUMBER    1000000000LL         /* header numbers are cut off here */

static const uint8_t png_signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
static const uint8_t jpeg_signature[3] = { 0xff, 0xd8, 0xff };  /* SOI, then a marker */

/* A PNM file being parsed. */
typedef struct {
    const char *name;    /* file name for messages */
    const uint8_t *p;    /* bytes */
    size_t len, pos;     /* their count and the read position */
} pnm_reader;

/* A PNG being decoded; everything the error path must release lives here, not on the stack of
 * the function that calls setjmp. */
typedef struct {
    const char *name;    /* file name for messages */
    const uint8_t *buf;  /* the file's bytes */
    size_t len, pos;     /* their count and the read position */
    char msg[256];       /* libpng's error message */
    png_structp png;     /* libpng read state */
    png_infop info;      /* libpng image info */
    uint8_t *rows;       /* decoded row buffer: one row, or every row if interlaced */
} png_ctx;

/* Big-endian uint32 at p. */
static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Shows up to n bytes at p for a message: printable ASCII kept, others as '.'. */
static const char *show_bytes(char *buf, size_t cap, const uint8_t *p, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++)
        buf[o++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    buf[o] = '\0';
    return buf;
}

/* Skips whitespace and '#' comments; returns how many bytes were skipped. */
static size_t pnm_skip(pnm_reader *r)
{
    size_t start = r->pos;
    while (r->pos < r->len) {
        uint8_t c = r->p[r->pos];
        if (c == '#') {
            while (r->pos < r->len && r->p[r->pos] != '\n' && r->p[r->pos] != '\r')
                r->pos++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            r->pos++;
        } else {
            break;
        }
    }
    return r->pos - start;
}

/* Reads whitespace then a decimal number (values beyond PNM_MAX_NUMBER saturate). */
static kiln_status pnm_number(pnm_reader *r, const char *field, int64_t *out)
{
    char shown[16];
    bool sep = pnm_skip(r) > 0;
    size_t start = r->pos;
    int64_t v = 0;
    while (r->pos < r->len && r->p[r->pos] >= '0' && r->p[r->pos] <= '9') {
        v = v * 10 + (r->p[r->pos++] - '0');
        v = v > PNM_MAX_NUMBER ? PNM_MAX_NUMBER + 1 : v;
    }
    if (r->pos == start || !sep) {
        size_t n = r->len - start < 8 ? r->len - start : 8;
        if (start >= r->len)
            return kiln_error(KILN_ERR_FORMAT, "%s: %s: expected a number after whitespace, "
                              "found the end of the file (truncated)", r->name, field);
        return kiln_error(KILN_ERR_FORMAT, "%s: %s: expected a number after whitespace, found "
                          "'%s'", r->name, field, show_bytes(shown, sizeof shown, r->p + start, n));
    }
    *out = v;
    return KILN_OK;
}

/* Reads a PNM header: magic, width, height, maxval (comments allowed between them). */
static kiln_status pnm_header(pnm_reader *r, int64_t *w, int64_t *h, int64_t *maxval)
{
    r->pos = 2;
    kiln_status st = pnm_number(r, "width", w);
    if (!st)
        st = pnm_number(r, "height", h);
    if (!st)
        st = kiln_image_check_size(r->name, *w, *h);
    if (!st)
        st = pnm_number(r, "maxval", maxval);
    if (!st && (*maxval < 1 || *maxval > 65535))
        st = kiln_error(KILN_ERR_FORMAT, "%s: maxval %lld: expected 1..65535", r->name,
                        (long long)*maxval);
    return st;
}

/* Reports a sample above maxval. */
static kiln_status sample_error(const pnm_reader *r, size_t sample, int sc, int64_t w,
                                int64_t v, int64_t maxval)
{
    size_t px = sample / (size_t)sc;
    return kiln_error(KILN_ERR_FORMAT, "%s: pixel (row %zu, column %zu): expected samples "
                      "0..%lld (maxval), found %lld", r->name, px / (size_t)w, px % (size_t)w,
                      (long long)maxval, (long long)v);
}

/* Reads the binary raster of a P5 / P6 file into out. */
static kiln_status pnm_binary(pnm_reader *r, int sc, int64_t w, int64_t maxval,
                              kiln_tensor_f32 *out)
{
    size_t n = (size_t)out->dims[1] * (size_t)w * (size_t)sc, bps = maxval < 256 ? 1 : 2;
    float px[3];
    for (size_t s = 0; s < n; s++) {
        const uint8_t *p = r->p + r->pos + s * bps;
        int64_t v = bps == 1 ? p[0] : (int64_t)p[0] << 8 | p[1];
        if (v > maxval)
            return sample_error(r, s, sc, w, v, maxval);
        px[s % (size_t)sc] = (float)v / (float)maxval;
        if (s % (size_t)sc == (size_t)sc - 1)
            kiln_image_put_pixel(out, s / (size_t)sc, px, sc);
    }
    return KILN_OK;
}

/* Reads the ASCII raster of a P2 / P3 file into out. */
static kiln_status pnm_ascii(pnm_reader *r, int sc, int64_t w, int64_t maxval,
                              kiln_tensor_f32 *out)
{
    size_t n = (size_t)out->dims[1] * (size_t)w * (size_t)sc;
    float px[3];
    for (size_t s = 0; s < n; s++) {
        int64_t v;
        kiln_status st = pnm_number(r, "pixel data", &v);
        if (st)
            return st;
        if (v > maxval)
            return sample_error(r, s, sc, w, v, maxval);
        px[s % (size_t)sc] = (float)v / (float)maxval;
        if (s % (size_t)sc == (size_t)sc - 1)
            kiln_image_put_pixel(out, s / (size_t)sc, px, sc);
    }
    return KILN_OK;
}

/* Checks that the raster can fit in the bytes left, before anything is allocated. */
static kiln_status pnm_check_len(pnm_reader *r, bool binary, size_t samples, int64_t maxval)
{
    size_t left = r->len - r->pos;
    if (binary) {
        size_t need = samples * (maxval < 256 ? 1 : 2);
        if (left < need)
            return kiln_error(KILN_ERR_FORMAT, "%s: pixel data: expected %zu bytes, found %zu "
                              "(truncated)", r->name, need, left);
    } else if (left < 2 * samples) {
        return kiln_error(KILN_ERR_FORMAT, "%s: pixel data: expected at least %zu bytes for %zu "
                          "samples, found %zu (truncated)", r->name, 2 * samples, samples, left);
    }
    return KILN_OK;
}

/* Reads a PGM / PPM (P2, P3, P5, P6) image. */
static kiln_status read_pnm(pnm_reader *r, int channels, kiln_tensor_f32 *out)
{
    int64_t w, h, maxval;
    char kind = (char)r->p[1];
    bool binary = kind == '5' || kind == '6';
    int sc = kind == '3' || kind == '6' ? 3 : 1;
    kiln_status st = pnm_header(r, &w, &h, &maxval);
    if (st)
        return st;
    if (binary) {
        char shown[8];
        uint8_t c = r->pos < r->len ? r->p[r->pos] : 0;
        if (r->pos >= r->len)
            return kiln_error(KILN_ERR_FORMAT, "%s: pixel data: expected one whitespace byte "
                              "after maxval, found the end of the file (truncated)", r->name);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f')
            return kiln_error(KILN_ERR_FORMAT, "%s: pixel data: expected one whitespace byte "
                              "after maxval, found '%s'", r->name,
                              show_bytes(shown, sizeof shown, &c, 1));
        r->pos++;
    }
    st = pnm_check_len(r, binary, (size_t)w * (size_t)h * (size_t)sc, maxval);
    if (!st)
        st = kiln_image_alloc(r->name, out, channels ? channels : sc, h, w);
    if (!st)
        st = binary ? pnm_binary(r, sc, w, maxval, out) : pnm_ascii(r, sc, w, maxval, out);
    return st;
}

/* libpng error callback: keeps the message and jumps back to png_decode. */
static void on_png_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}

/* libpng warning callback: warnings are ignored. */
static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* libpng read callback over the memory buffer. */
static void on_png_read(png_structp png, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos)
        png_error(png, "unexpected end of data (the file is truncated)");
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

/* Samples per pixel of a PNG colour type, or 0 if unknown. */
static int png_type_samples(int color_type)
{
    switch (color_type) {
    case 0: case 3: return 1;
    case 4: return 2;
    case 2: return 3;
    case 6: return 4;
    default: return 0;
    }
}

/* Sum of the IDAT chunk lengths present in a PNG buffer. */
static uint64_t png_idat_bytes(const uint8_t *b, size_t len)
{
    uint64_t total = 0;
    for (size_t pos = 8; pos + 8 <= len;) {
        uint32_t clen = load_be32(b + pos);
        size_t avail = len - pos - 8;
        if (memcmp(b + pos + 4, "IDAT", 4) == 0)
            total += clen < avail ? clen : avail;
        if (memcmp(b + pos + 4, "IEND", 4) == 0 || clen >= avail)
            break;
        pos += 12 + (size_t)clen;
    }
    return total;
}

/* Checks the IHDR fields before libpng allocates anything: size limits, and enough compressed
 * data for the declared size (deflate expands at most DEFLATE_MAX_RATIO times). */
static kiln_status png_precheck(const char *name, const uint8_t *b, size_t len)
{
    if (len < 26 || memcmp(b + 12, "IHDR", 4) != 0)
        return KILN_OK;  /* libpng reports it */
    uint32_t w = load_be32(b + 16), h = load_be32(b + 20);
    kiln_status st = kiln_image_check_size(name, w, h);
    int samples = png_type_samples(b[25]);
    if (st || samples == 0)
        return st;
    uint64_t raw = (uint64_t)h * ((uint64_t)w * (uint64_t)samples * b[24] / 8);
    uint64_t idat = png_idat_bytes(b, len);
    if (raw > idat * DEFLATE_MAX_RATIO)
        return kiln_error(KILN_ERR_FORMAT, "%s: image data: expected at least %llu compressed "
                          "bytes for %u x %u pixels, found %llu (truncated)", name,
                          (unsigned long long)(raw / DEFLATE_MAX_RATIO), w, h,
                          (unsigned long long)idat);
    return KILN_OK;
}

/* Stores decoded row y (stride samples per pixel of 8 or 16 bits; colour in the first one or
 * three, alpha after) into out. */
static void store_png_row(kiln_tensor_f32 *out, size_t y, const uint8_t *row, int stride,
                          int bits)
{
    int sc = stride >= 3 ? 3 : 1;
    size_t w = (size_t)out->dims[2];
    float px[3];
    for (size_t x = 0; x < w; x++) {
        for (int k = 0; k < sc; k++) {
            size_t s = x * (size_t)stride + (size_t)k;
            px[k] = bits == 16 ? (float)(row[2 * s] << 8 | row[2 * s + 1]) / 65535.0f
                               : (float)row[s] / 255.0f;
        }
        kiln_image_put_pixel(out, y * w + x, px, sc);
    }
}

/* Sets the transforms giving 8- or 16-bit grey or RGB samples (alpha stripped). */
static void png_set_transforms(png_ctx *c)
{
    int color_type = png_get_color_type(c->png, c->info);
    int depth = png_get_bit_depth(c->png, c->info);
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(c->png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(c->png);
    png_set_strip_alpha(c->png);
}

/* The body of png_decode: runs under its setjmp. */
static kiln_status png_decode_body(png_ctx *c, int channels, kiln_tensor_f32 *out)
{
    png_set_read_fn(c->png, c, on_png_read);
    png_read_info(c->png, c->info);
    uint32_t w = png_get_image_width(c->png, c->info), h = png_get_image_height(c->png, c->info);
    kiln_status st = kiln_image_check_size(c->name, w, h);
    if (st)
        return st;
    png_set_transforms(c);
    int passes = png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    int stride = png_get_channels(c->png, c->info), bits = png_get_bit_depth(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (stride < 1 || stride > 4 || (bits != 8 && bits != 16) ||
        rowbytes != (size_t)w * (size_t)stride * (size_t)bits / 8)
        return kiln_error(KILN_ERR_FORMAT, "%s: PNG: expected 8- or 16-bit samples after "
                          "conversion, found %d channels of %d bits", c->name, stride, bits);
    st = kiln_image_alloc(c->name, out, channels ? channels : (stride >= 3 ? 3 : 1), h, w);
    if (st)
        return st;
    c->rows = malloc((passes > 1 ? h : 1) * rowbytes);
    if (!c->rows)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for PNG rows", c->name);
    for (int p = 0; p < passes; p++)
        for (size_t y = 0; y < h; y++) {
            uint8_t *row = c->rows + (passes > 1 ? y * rowbytes : 0);
            png_read_row(c->png, row, NULL);
            if (p == passes - 1)
                store_png_row(out, y, row, stride, bits);
        }
    png_read_end(c->png, NULL);
    return KILN_OK;
}

/* Decodes a PNG; a libpng error lands here through longjmp and becomes a kiln error. Nothing
 * this function owns changes after setjmp: state lives in c, freed by the caller. */
static kiln_status png_decode(png_ctx *c, int channels, kiln_tensor_f32 *out)
{
    if (setjmp(png_jmpbuf(c->png)))
        return kiln_error(KILN_ERR_FORMAT, "%s: PNG: %s", c->name, c->msg);
    return png_decode_body(c, channels, out);
}

/* Reads a PNG image. */
static kiln_status read_png(const char *name, const uint8_t *buf, size_t len, int channels,
                            kiln_tensor_f32 *out)
{
    kiln_status st = png_precheck(name, buf, len);
    if (st)
        return st;
    png_ctx c = { .name = name, .buf = buf, .len = len };
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, on_png_error, on_png_warning);
    c.info = c.png ? png_create_info_struct(c.png) : NULL;
    if (!c.png || !c.info)
        st = kiln_error(KILN_ERR_NOMEM, "%s: cannot create the libpng decoder", name);
    else
        st = png_decode(&c, channels, out);
    png_destroy_read_struct(&c.png, &c.info, NULL);
    free(c.rows);
    return st;
}

kiln_status kiln_image_check_size(const char *name, int64_t w, int64_t h)
{
    if (w < 1 || w > KILN_IMAGE_MAX_SIDE)
        return kiln_error(KILN_ERR_FORMAT, "%s: width %lld: expected 1..%d", name, (long long)w,
                          KILN_IMAGE_MAX_SIDE);
    if (h < 1 || h > KILN_IMAGE_MAX_SIDE)
        return kiln_error(KILN_ERR_FORMAT, "%s: height %lld: expected 1..%d", name,
                          (long long)h, KILN_IMAGE_MAX_SIDE);
    if (w * h > KILN_IMAGE_MAX_PIXELS)
        return kiln_error(KILN_ERR_FORMAT, "%s: size %lld x %lld: expected at most %lld pixels, "
                          "found %lld", name, (long long)w, (long long)h,
                          (long long)KILN_IMAGE_MAX_PIXELS, (long long)(w * h));
    return KILN_OK;
}

kiln_status kiln_image_alloc(const char *name, kiln_tensor_f32 *out, int64_t c, int64_t h,
                             int64_t w)
{
    size_t numel = (size_t)c * (size_t)h * (size_t)w;
    out->data = malloc(numel * sizeof *out->data);
    if (!out->data)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for a %lld x %lld x %lld image",
                          name, (long long)c, (long long)h, (long long)w);
    out->ndim = 3;
    out->dims[0] = c;
    out->dims[1] = h;
    out->dims[2] = w;
    out->numel = numel;
    return KILN_OK;
}

kiln_status kiln_image_read_memory(const void *buf, size_t len, const char *name, int channels,
                                   kiln_tensor_f32 *out)
{
    char shown[16];
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_image_read_memory: out is NULL");
    memset(out, 0, sizeof *out);
    name = name ? name : "image";
    if (!buf && len)
        return kiln_error(KILN_ERR_ARG, "%s: buffer is NULL", name);
    if (channels != 0 && channels != 1 && channels != 3)
        return kiln_error(KILN_ERR_ARG, "%s: channels: expected 0, 1 or 3, found %d", name,
                          channels);
    const uint8_t *b = buf;
    kiln_status st;
    if (len >= 8 && memcmp(b, png_signature, 8) == 0) {
        st = read_png(name, b, len, channels, out);
    } else if (len >= 3 && memcmp(b, jpeg_signature, 3) == 0) {
        st = kiln_jpeg_decode(name, b, len, channels, out);
    } else if (len >= 2 && b[0] == 'P' && b[1] && strchr("2356", b[1])) {
        pnm_reader r = { .name = name, .p = b, .len = len };
        st = read_pnm(&r, channels, out);
    } else {
        return kiln_error(KILN_ERR_FORMAT, "%s: magic: expected a PNG or JPEG signature or P2, "
                          "P3, P5, P6 (PGM / PPM), found '%s'%s", name,
                          show_bytes(shown, sizeof shown, b, len < 8 ? len : 8),
                          len < 8 && (len == 0 || memcmp(b, png_signature, len) == 0)
                              ? " (the file is too short)" : "");
    }
    if (st)
        kiln_tensor_f32_free(out);
    return st;
}

/* Reads a file of unknown size (a pipe) to its end. */
static kiln_status read_stream(FILE *fp, const char *path, uint8_t **buf, size_t *len)
{
    size_t cap = IMG_FIRST_ALLOC, n = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (!b)
            return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
        n += fread(b + n, 1, cap - n, fp);
        if (n < cap)
            break;
        if ((uint64_t)cap * 2 > IMG_MAX_FILE) {
            free(b);
            return kiln_error(KILN_ERR_FORMAT, "%s: file size: expected at most %llu bytes",
                              path, (unsigned long long)IMG_MAX_FILE);
        }
        uint8_t *grown = realloc(b, cap * 2);
        if (!grown)
            free(b);
        b = grown;
        cap *= 2;
    }
    *buf = b;
    *len = n;
    return KILN_OK;
}

/* Reads a whole file into a new buffer. */
static kiln_status read_file(const char *path, uint8_t **buf, size_t *len)
{
    struct stat sb;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    kiln_status st = KILN_OK;
    *buf = NULL;
    if (fstat(fileno(fp), &sb) != 0)
        st = kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = kiln_error(KILN_ERR_IO, "%s: cannot read: it is a directory", path);
    else if (!S_ISREG(sb.st_mode))
        st = read_stream(fp, path, buf, len);
    else if ((uint64_t)sb.st_size > IMG_MAX_FILE)
        st = kiln_error(KILN_ERR_FORMAT, "%s: file size: expected at most %llu bytes, found %llu",
                        path, (unsigned long long)IMG_MAX_FILE, (unsigned long long)sb.st_size);
    else if (!(*buf = malloc(sb.st_size ? (size_t)sb.st_size : 1)))
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %llu bytes", path,
                        (unsigned long long)sb.st_size);
    else
        *len = fread(*buf, 1, (size_t)sb.st_size, fp);
    if (st == KILN_OK && ferror(fp))
        st = kiln_error(KILN_ERR_IO, "%s: read error: %s", path, strerror(errno));
    fclose(fp);
    if (st) {
        free(*buf);
        *buf = NULL;
    }
    return st;
}

kiln_status kiln_image_read(const char *path, int channels, kiln_tensor_f32 *out)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_image_read: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    kiln_status st = read_file(path, &buf, &len);
    if (st)
        return st;
    st = kiln_image_read_memory(buf, len, path, channels, out);
    free(buf);
    return st;
}

/* Source taps of a bilinear resize along one axis: for output i, input indices i0[i], i1[i]
 * and the weight f[i] of i1 (half-pixel centres, clamped at the edges). */
static void resize_taps(int64_t in, int n, int64_t *i0, int64_t *i1, float *f)
{
    double scale = (double)in / n;
    for (int i = 0; i < n; i++) {
        double s = (i + 0.5) * scale - 0.5;
        s = s < 0 ? 0 : s;
        int64_t a = (int64_t)floor(s);
        a = a < in - 1 ? a : in - 1;
        i0[i] = a;
        i1[i] = a + 1 < in ? a + 1 : a;
        f[i] = i1[i] == a ? 0.0f : (float)(s - (double)a);
    }
}

/* Checks the arguments of kiln_tensor_resize. */
static kiln_status check_resize_args(const kiln_tensor_f32 *in, int oh, int ow,
                                     const kiln_tensor_f32 *out)
{
    if (!in || !out || (const void *)in == (const void *)out)
        return kiln_error(KILN_ERR_ARG, "resize: expected distinct non-NULL in and out");
    if (in->ndim != 3 || !in->data)
        return kiln_error(KILN_ERR_ARG, "resize: input: expected a (c, h, w) tensor with data, "
                          "found %d dims", in->ndim);
    for (int d = 0; d < 3; d++)
        if (in->dims[d] < 1 || in->dims[d] > KILN_TENSOR_MAX_NUMEL)
            return kiln_error(KILN_ERR_ARG, "resize: input dim %d: expected 1..%lld, found %lld",
                              d, (long long)KILN_TENSOR_MAX_NUMEL, (long long)in->dims[d]);
    if ((uint64_t)in->dims[0] * (uint64_t)in->dims[1] * (uint64_t)in->dims[2] != in->numel)
        return kiln_error(KILN_ERR_ARG, "resize: input: numel %zu does not match its dims",
                          in->numel);
    if (oh < 1 || oh > KILN_IMAGE_MAX_SIDE || ow < 1 || ow > KILN_IMAGE_MAX_SIDE)
        return kiln_error(KILN_ERR_ARG, "resize: output size %d x %d: expected sides 1..%d", oh,
                          ow, KILN_IMAGE_MAX_SIDE);
    if ((uint64_t)in->dims[0] * (uint64_t)oh * (uint64_t)ow > (uint64_t)KILN_TENSOR_MAX_NUMEL)
        return kiln_error(KILN_ERR_ARG, "resize: output: expected at most %lld elements",
                          (long long)KILN_TENSOR_MAX_NUMEL);
    return KILN_OK;
}

/* Interpolates every plane of in into out with the given taps. */
static void resize_planes(const kiln_tensor_f32 *in, kiln_tensor_f32 *out, const int64_t *y0,
                          const int64_t *y1, const float *fy, const int64_t *x0,
                          const int64_t *x1, const float *fx)
{
    size_t h = (size_t)in->dims[1], w = (size_t)in->dims[2];
    size_t oh = (size_t)out->dims[1], ow = (size_t)out->dims[2];
    for (size_t c = 0; c < (size_t)in->dims[0]; c++) {
        const float *src = in->data + c * h * w;
        float *dst = out->data + c * oh * ow;
        for (size_t y = 0; y < oh; y++) {
            const float *r0 = src + (size_t)y0[y] * w, *r1 = src + (size_t)y1[y] * w;
            for (size_t x = 0; x < ow; x++) {
                float top = r0[x0[x]] + fx[x] * (r0[x1[x]] - r0[x0[x]]);
                float bot = r1[x0[x]] + fx[x] * (r1[x1[x]] - r1[x0[x]]);
                dst[y * ow + x] = top + fy[y] * (bot - top);
            }
        }
    }
}

kiln_status kiln_tensor_resize(const kiln_tensor_f32 *in, int oh, int ow, kiln_tensor_f32 *out)
{
    kiln_status st = check_resize_args(in, oh, ow, out);
    if (st) {
        if (out && (const void *)in != (const void *)out)
            memset(out, 0, sizeof *out);
        return st;
    }
    memset(out, 0, sizeof *out);
    int64_t *idx = malloc(2 * ((size_t)oh + (size_t)ow) * sizeof *idx);
    float *f = malloc(((size_t)oh + (size_t)ow) * sizeof *f);
    if (idx && f)
        st = kiln_image_alloc("resize", out, in->dims[0], oh, ow);
    else
        st = kiln_error(KILN_ERR_NOMEM, "resize: out of memory");
    if (!st) {
        int64_t *y0 = idx, *y1 = y0 + oh, *x0 = y1 + oh, *x1 = x0 + ow;
        resize_taps(in->dims[1], oh, y0, y1, f);
        resize_taps(in->dims[2], ow, x0, x1, f + oh);
        resize_planes(in, out, y0, y1, f, x0, x1, f + oh);
    }
    free(idx);
    free(f);
    return st;
}
