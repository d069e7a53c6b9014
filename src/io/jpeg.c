/* JPEG images through libjpeg-turbo, decoded from memory into (c, h, w) float tensors scaled to
 * [0, 1], with the limits of the PNG reader: sides and area checked before anything is
 * allocated, and a declared size the compressed bytes cannot plausibly hold refused. libjpeg's
 * warnings (corrupt or truncated data, which it would fill in with grey) are errors here. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "core/error.h"
#include "io/image_util.h"

#define JPEG_MAX_RATIO 1024  /* pixels per compressed byte: Huffman codes spend at least 1 bit on
                              * each 8x8 block (64 pixels), so real files stay below 512 */
#define JPEG_MAX_SCANS 500   /* progressive scans accepted (many tiny scans make decoding slow) */

/* A JPEG being decoded; everything the error path must release lives here, not on the stack of
 * the function that calls setjmp. */
typedef struct {
    struct jpeg_decompress_struct cinfo;  /* libjpeg state (client_data points back here) */
    struct jpeg_error_mgr jerr;           /* libjpeg error handler, with our exits */
    struct jpeg_progress_mgr progress;    /* scan counter */
    jmp_buf jump;                         /* where errors land */
    const char *name;                     /* file name for messages */
    char msg[JMSG_LENGTH_MAX + 32];       /* the error message */
    uint8_t *row;                         /* one decoded scanline */
} jpeg_ctx;

/* libjpeg error exit: keeps the message and jumps back to jpeg_decode. */
static void on_error(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    char text[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, text);
    snprintf(c->msg, sizeof c->msg, "%s", text);
    longjmp(c->jump, 1);
}

/* libjpeg message hook: a warning (msg_level < 0) is corrupt data, so it ends decoding too;
 * trace messages are ignored. */
static void on_message(j_common_ptr cinfo, int msg_level)
{
    jpeg_ctx *c = cinfo->client_data;
    char text[JMSG_LENGTH_MAX];
    if (msg_level >= 0)
        return;
    cinfo->err->format_message(cinfo, text);
    snprintf(c->msg, sizeof c->msg, "%s", text);
    longjmp(c->jump, 1);
}

/* libjpeg progress hook: refuses files with more than JPEG_MAX_SCANS scans. */
static void on_progress(j_common_ptr cinfo)
{
    jpeg_ctx *c = cinfo->client_data;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number <= JPEG_MAX_SCANS)
        return;
    snprintf(c->msg, sizeof c->msg, "scans: expected at most %d, found more",
             JPEG_MAX_SCANS);
    longjmp(c->jump, 1);
}

/* Samples per pixel decoded for a colour space (1 grey, 3 RGB), or 0 if unsupported. */
static int output_samples(J_COLOR_SPACE space, J_COLOR_SPACE *out_space)
{
    switch (space) {
    case JCS_GRAYSCALE:
        *out_space = JCS_GRAYSCALE;
        return 1;
    case JCS_YCbCr: case JCS_RGB:
        *out_space = JCS_RGB;
        return 3;
    default:
        return 0;
    }
}

/* Checks the header's size and colour space before decoding allocates anything. */
static kiln_status check_header(jpeg_ctx *c, size_t len, int *sc)
{
    struct jpeg_decompress_struct *ci = &c->cinfo;
    uint64_t w = ci->image_width, h = ci->image_height;
    kiln_status st = kiln_image_check_size(c->name, (int64_t)w, (int64_t)h);
    if (st)
        return st;
    if (w * h > (uint64_t)len * JPEG_MAX_RATIO)
        return kiln_error(KILN_ERR_FORMAT, "%s: image data: expected at least %llu bytes for "
                          "%llu x %llu pixels, found %zu (truncated or corrupt)", c->name,
                          (unsigned long long)(w * h / JPEG_MAX_RATIO), (unsigned long long)w,
                          (unsigned long long)h, len);
    *sc = output_samples(ci->jpeg_color_space, &ci->out_color_space);
    if (*sc == 0)
        return kiln_error(KILN_ERR_FORMAT, "%s: JPEG colour space: expected greyscale, YCbCr or "
                          "RGB, found %s (%d components)", c->name,
                          ci->jpeg_color_space == JCS_CMYK ? "CMYK"
                          : ci->jpeg_color_space == JCS_YCCK ? "YCCK" : "another",
                          ci->num_components);
    return KILN_OK;
}

/* Decodes the scanlines into out (sc samples per pixel). */
static kiln_status read_rows(jpeg_ctx *c, int sc, int channels, kiln_tensor_f32 *out)
{
    struct jpeg_decompress_struct *ci = &c->cinfo;
    size_t w = ci->output_width, h = ci->output_height;
    if (ci->output_components != sc || w != ci->image_width || h != ci->image_height)
        return kiln_error(KILN_ERR_FORMAT, "%s: JPEG: expected %d samples per pixel at %u x %u, "
                          "found %d at %zu x %zu", c->name, sc, ci->image_width,
                          ci->image_height, ci->output_components, w, h);
    kiln_status st = kiln_image_alloc(c->name, out, channels ? channels : sc, (int64_t)h,
                                      (int64_t)w);
    if (st)
        return st;
    c->row = malloc(w * (size_t)sc);
    if (!c->row)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for a JPEG row", c->name);
    float px[3];
    while (ci->output_scanline < ci->output_height) {
        size_t y = ci->output_scanline;
        JSAMPROW rows[1] = { c->row };
        if (jpeg_read_scanlines(ci, rows, 1) != 1)
            return kiln_error(KILN_ERR_FORMAT, "%s: JPEG: row %zu: expected pixel data, found "
                              "none (truncated)", c->name, y);
        for (size_t x = 0; x < w; x++) {
            for (int k = 0; k < sc; k++)
                px[k] = (float)c->row[x * (size_t)sc + (size_t)k] / 255.0f;
            kiln_image_put_pixel(out, y * w + x, px, sc);
        }
    }
    return KILN_OK;
}

/* The body of jpeg_decode: runs under its setjmp. */
static kiln_status decode_body(jpeg_ctx *c, const uint8_t *buf, size_t len, int channels,
                               kiln_tensor_f32 *out)
{
    struct jpeg_decompress_struct *ci = &c->cinfo;
    int sc = 0;
    jpeg_create_decompress(ci);
    ci->progress = &c->progress;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    kiln_status st = check_header(c, len, &sc);
    if (st)
        return st;
    jpeg_start_decompress(ci);
    if ((st = read_rows(c, sc, channels, out)) != KILN_OK)
        return st;
    jpeg_finish_decompress(ci);
    return KILN_OK;
}

/* Decodes under setjmp: a libjpeg error or warning lands here through longjmp and becomes a kiln
 * error. Nothing this function owns changes after setjmp: state lives in c. */
static kiln_status jpeg_decode(jpeg_ctx *c, const uint8_t *buf, size_t len, int channels,
                               kiln_tensor_f32 *out)
{
    if (setjmp(c->jump))
        return kiln_error(KILN_ERR_FORMAT, "%s: JPEG: %s", c->name, c->msg);
    return decode_body(c, buf, len, channels, out);
}

kiln_status kiln_jpeg_decode(const char *name, const uint8_t *buf, size_t len, int channels,
                             kiln_tensor_f32 *out)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for the JPEG decoder", name);
    c->name = name;
    c->cinfo.client_data = c;   /* kept by jpeg_create_decompress, as err is */
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = on_error;
    c->jerr.emit_message = on_message;
    c->progress.progress_monitor = on_progress;
    kiln_status st = jpeg_decode(c, buf, len, channels, out);
    jpeg_destroy_decompress(&c->cinfo);   /* also after a failed create: it frees what exists */
    free(c->row);
    free(c);
    return st;
}
