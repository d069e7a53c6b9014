/* Datasets: .npy pairs (uint8 / float32 inputs, int64 / int32 / float32 targets), image folders
 * (PNG and JPEG written here with libpng and libjpeg), byte-level text, gathered element by
 * element; JPEG decoding; hostile inputs each refused with a message naming the file and the
 * problem; the trainer and evaluation refusing data they cannot use; the CLI end to end. */
#define _GNU_SOURCE   /* nftw's FTW_DEPTH and FTW_PHYS */
#include <ftw.h>
#include <stdio.h>
#include <jpeglib.h>   /* after stdio.h: it uses FILE */
#include <limits.h>
#include <png.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "kiln/dataset.h"
#include "kiln/kiln_train.h"
#include "kiln/tensor_io.h"

static char root[64];   /* this run's scratch folder, removed at the end */

/* root/name in a static rotating buffer. */
static const char *at(const char *name)
{
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

/* Creates root/name as a folder (and its parents). */
static void make_dir(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, name);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    mkdir(path, 0755);
}

/* nftw callback removing one entry. */
static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Writes bytes to root/name. */
static void write_file(const char *name, const void *buf, size_t len)
{
    FILE *fp = fopen(at(name), "wb");
    CHECK(fp && fwrite(buf, 1, len, fp) == len && fclose(fp) == 0, "cannot write %s", name);
}

/* Whether the last error mentions every one of up to three strings (NULL ends the list). */
static int error_has(const char *a, const char *b, const char *c)
{
    const char *e = kiln_last_error();
    return strstr(e, a) && (!b || strstr(e, b)) && (!c || strstr(e, c));
}

/* Whether a failed load left out zeroed. */
static int zeroed(const kiln_dataset *d)
{
    return d->n == 0 && !d->inputs && !d->targets && !d->images && !d->labels && !d->text;
}

/* --- .npy files ------------------------------------------------------------------------- */

/* Builds a .npy file (version 1.0, header padded to 64 bytes) in a new buffer. */
static uint8_t *npy_bytes(const char *descr, const char *shape, const void *data, size_t n,
                          size_t *len)
{
    char dict[256];
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape);
    size_t total = (10 + (size_t)k + 1 + 63) / 64 * 64;
    uint8_t *b = malloc(total + n);
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (uint8_t)((total - 10) & 0xff);
    b[9] = (uint8_t)((total - 10) >> 8);
    memcpy(b + 10, dict, (size_t)k);
    memset(b + 10 + k, ' ', total - 10 - (size_t)k);
    b[total - 1] = '\n';
    if (n)
        memcpy(b + total, data, n);
    *len = total + n;
    return b;
}

/* Writes root/name as a .npy; cut bytes are left off the end. */
static void write_npy(const char *name, const char *descr, const char *shape, const void *data,
                      size_t n, size_t cut)
{
    size_t len;
    uint8_t *b = npy_bytes(descr, shape, data, n, &len);
    write_file(name, b, len - cut);
    free(b);
}

/* uint8 images (N, 2, 3) with int64 labels (N,): stored as uint8, gathered scaled by 1/255. */
static void test_npy_u8_int64(void)
{
    enum { N = 5, PER = 6 };
    uint8_t x[N * PER];
    int64_t y[N] = { 2, 0, 7, 2, 1 };
    for (int i = 0; i < N * PER; i++)
        x[i] = (uint8_t)(i * 37 + 5);
    write_npy("u8_x.npy", "|u1", "(5, 2, 3)", x, sizeof x, 0);
    write_npy("u8_y.npy", "<i8", "(5,)", y, sizeof y, 0);
    kiln_dataset d;
    CHECK(kiln_dataset_load_npy(at("u8_x.npy"), at("u8_y.npy"), &d) == KILN_OK, "u8: %s",
          kiln_last_error());
    CHECK(d.kind == KILN_DATA_ARRAYS && d.n == N && d.n_classes == 8, "u8: kind %d n %d classes %d",
          d.kind, d.n, d.n_classes);
    CHECK(d.c == 1 && d.h == 2 && d.w == 3, "u8: model shape %d %d %d", d.c, d.h, d.w);
    CHECK(d.input.rank == 2 && d.input.dims[0] == 2 && d.input.dims[1] == 3 && d.input.numel == 6 &&
          d.input.storage == KILN_DT_U8 && d.input.gathered == KILN_DT_F32, "u8: input layout");
    CHECK(d.target.rank == 0 && d.target.numel == 1 && d.target.storage == KILN_DT_I32 &&
          d.target.gathered == KILN_DT_I32, "u8: target layout");
    CHECK(d.images && d.images == d.inputs && memcmp(d.images, x, sizeof x) == 0, "u8: kept as u8");
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += !d.labels || d.labels[i] != y[i] || ((int32_t *)d.targets)[i] != y[i];
    CHECK(bad == 0, "u8: labels");
    int idx[3] = { 4, 0, 2 }, yl[3];
    float xl[3 * PER], xt[3 * PER];
    int32_t yt[3];
    kiln_dataset_gather(&d, idx, 3, xl, yl);
    CHECK(kiln_dataset_gather_typed(&d, idx, 3, xt, yt) == KILN_OK, "u8: typed %s",
          kiln_last_error());
    bad = 0;
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < PER; j++) {
            float want = (float)x[idx[i] * PER + j] * (1.0f / 255.0f);
            bad += xl[i * PER + j] != want || xt[i * PER + j] != want;
        }
        bad += yl[i] != y[idx[i]] || yt[i] != y[idx[i]];
    }
    CHECK(bad == 0, "u8: %d gathered values differ", bad);
    CHECK(kiln_dataset_check_classification(&d) == KILN_OK, "u8: %s", kiln_last_error());
    kiln_dataset_free(&d);
    CHECK(zeroed(&d), "free zeroes");
}

/* float32 inputs (N, 4) with float32 targets (N, 2): copied; not for the classifier. */
static void test_npy_f32_f32(void)
{
    enum { N = 3 };
    float x[N * 4], y[N * 2];
    for (int i = 0; i < N * 4; i++)
        x[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < N * 2; i++)
        y[i] = (float)i * -1.5f;
    write_npy("f_x.npy", "<f4", "(3, 4)", x, sizeof x, 0);
    write_npy("f_y.npy", "<f4", "(3, 2)", y, sizeof y, 0);
    kiln_dataset d;
    CHECK(kiln_dataset_load_npy(at("f_x.npy"), at("f_y.npy"), &d) == KILN_OK, "f32: %s",
          kiln_last_error());
    CHECK(d.n == N && d.c == 4 && d.h == 1 && d.w == 1 && d.n_classes == 0 && !d.images &&
          !d.labels, "f32: n %d shape %d %d %d classes %d", d.n, d.c, d.h, d.w, d.n_classes);
    CHECK(d.input.storage == KILN_DT_F32 && d.target.rank == 1 && d.target.dims[0] == 2 &&
          d.target.storage == KILN_DT_F32 && d.target.gathered == KILN_DT_F32, "f32: layouts");
    int idx[2] = { 2, 1 }, yl[2];
    float xt[8], yt[4], xl[8];
    CHECK(kiln_dataset_gather_typed(&d, idx, 2, xt, yt) == KILN_OK, "f32: %s", kiln_last_error());
    kiln_dataset_gather(&d, idx, 2, xl, yl);
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++)
            bad += xt[i * 4 + j] != x[idx[i] * 4 + j] || xl[i * 4 + j] != x[idx[i] * 4 + j];
        for (int j = 0; j < 2; j++)
            bad += yt[i * 2 + j] != y[idx[i] * 2 + j];
        bad += yl[i] != -1;
    }
    CHECK(bad == 0, "f32: %d gathered values differ", bad);
    CHECK(kiln_dataset_check_classification(&d) == KILN_ERR_ARG &&
          error_has("float32 targets", "regression loss", NULL), "f32 check: %s",
          kiln_last_error());
    kiln_dataset_free(&d);
}

/* uint8 tokens (N, 5) with int64 labels per position (N, 5), and int32 labels of a rank-6
 * example; rank 7 is refused. */
static void test_npy_ranks(void)
{
    uint8_t x[2 * 5] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    int64_t y[2 * 5] = { 0, 1, 2, 3, 4, 9, 8, 7, 6, 5 };
    write_npy("t_x.npy", "|u1", "(2, 5)", x, sizeof x, 0);
    write_npy("t_y.npy", "<i8", "(2, 5)", y, sizeof y, 0);
    kiln_dataset d;
    CHECK(kiln_dataset_load_npy(at("t_x.npy"), at("t_y.npy"), &d) == KILN_OK, "tokens: %s",
          kiln_last_error());
    CHECK(d.target.rank == 1 && d.target.dims[0] == 5 && d.n_classes == 10 && !d.labels,
          "tokens: target rank %d classes %d", d.target.rank, d.n_classes);
    int idx[2] = { 1, 0 };
    float xt[10];
    int32_t yt[10];
    CHECK(kiln_dataset_gather_typed(&d, idx, 2, xt, yt) == KILN_OK, "tokens: %s",
          kiln_last_error());
    int bad = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++)
            bad += yt[i * 5 + j] != y[idx[i] * 5 + j] ||
                   xt[i * 5 + j] != (float)x[idx[i] * 5 + j] * (1.0f / 255.0f);
    CHECK(bad == 0, "tokens: %d gathered values differ", bad);
    CHECK(kiln_dataset_check_classification(&d) == KILN_ERR_ARG &&
          error_has("1 dims per example", "not one class per example", NULL), "tokens check: %s",
          kiln_last_error());
    kiln_dataset_free(&d);

    float x6[2 * 64] = { 0 };
    int32_t y6[2] = { 3, 1 };
    write_npy("r6_x.npy", "<f4", "(2, 2, 2, 2, 2, 2, 2)", x6, sizeof x6, 0);
    write_npy("r6_y.npy", "<i4", "(2,)", y6, sizeof y6, 0);
    CHECK(kiln_dataset_load_npy(at("r6_x.npy"), at("r6_y.npy"), &d) == KILN_OK, "rank 6: %s",
          kiln_last_error());
    CHECK(d.input.rank == 6 && d.c == 16 && d.h == 2 && d.w == 2 && d.n_classes == 4 &&
          d.labels && d.labels[0] == 3, "rank 6: rank %d shape %d %d %d", d.input.rank, d.c, d.h,
          d.w);
    kiln_dataset_free(&d);
    write_npy("r7_x.npy", "<f4", "(2, 2, 2, 2, 2, 2, 2, 1)", x6, sizeof x6, 0);
    CHECK(kiln_dataset_load_npy(at("r7_x.npy"), at("r6_y.npy"), &d) == KILN_ERR_SHAPE &&
          error_has("r7_x.npy", "at most 6 dims per example", "found 7") && zeroed(&d),
          "rank 7: %s", kiln_last_error());
}

/* One hostile .npy pair: x and y files (in root) must be refused naming file and problem. */
static void expect_npy_error(const char *x, const char *y, const char *file, const char *what,
                             const char *found)
{
    kiln_dataset d;
    kiln_status st = kiln_dataset_load_npy(at(x), at(y), &d);
    CHECK(st != KILN_OK && error_has(file, what, found) && zeroed(&d), "%s + %s: status %d: %s",
          x, y, st, kiln_last_error());
    kiln_dataset_free(&d);
}

/* Truncated files, wrong dtypes, labels out of range, mismatched N, empty and non-finite data. */
static void test_npy_hostile(void)
{
    uint8_t x[3 * 4] = { 0 };
    int64_t y[3] = { 0, 1, 2 }, neg[3] = { 0, -1, 2 }, big[3] = { 0, 1, (int64_t)1 << 31 };
    double f8[3 * 4] = { 0 };
    float nan4[3 * 4] = { 0 };
    nan4[5] = NAN;
    write_npy("h_x.npy", "|u1", "(3, 4)", x, sizeof x, 0);
    write_npy("h_y.npy", "<i8", "(3,)", y, sizeof y, 0);
    write_npy("h_xcut.npy", "|u1", "(3, 4)", x, sizeof x, 5);
    write_npy("h_ycut.npy", "<i8", "(3,)", y, sizeof y, 3);
    write_npy("h_xf8.npy", "<f8", "(3, 4)", f8, sizeof f8, 0);
    write_npy("h_yu1.npy", "|u1", "(3,)", x, 3, 0);
    write_npy("h_yneg.npy", "<i8", "(3,)", neg, sizeof neg, 0);
    write_npy("h_ybig.npy", "<i8", "(3,)", big, sizeof big, 0);
    write_npy("h_y2.npy", "<i8", "(2,)", y, 2 * sizeof *y, 0);
    write_npy("h_xscalar.npy", "|u1", "()", x, 1, 0);
    write_npy("h_xempty.npy", "|u1", "(0, 4)", x, 0, 0);
    write_npy("h_xnan.npy", "<f4", "(3, 4)", nan4, sizeof nan4, 0);
    write_file("h_junk.npy", "not an npy file at all", 22);
    expect_npy_error("h_xcut.npy", "h_y.npy", "h_xcut.npy", "data", "truncated");
    expect_npy_error("h_x.npy", "h_ycut.npy", "h_ycut.npy", "data", "truncated");
    expect_npy_error("h_xf8.npy", "h_y.npy", "h_xf8.npy", "'|u1' (uint8) or '<f4' (float32)",
                     "found '<f8'");
    expect_npy_error("h_x.npy", "h_yu1.npy", "h_yu1.npy", "'<i4' (int32), '<i8' (int64) or "
                     "'<f4' (float32)", "found '|u1'");
    expect_npy_error("h_x.npy", "h_yneg.npy", "h_yneg.npy", "label 1 (example 1)", "found -1");
    expect_npy_error("h_x.npy", "h_ybig.npy", "h_ybig.npy", "expected a class index in "
                     "0..2147483646", "found 2147483648");
    expect_npy_error("h_x.npy", "h_y2.npy", "h_y2.npy", "expected 3 examples", "found 2");
    expect_npy_error("h_xscalar.npy", "h_y.npy", "h_xscalar.npy", "(N, ...)", "scalar");
    expect_npy_error("h_xempty.npy", "h_y.npy", "h_xempty.npy", "dim 0", "no examples");
    expect_npy_error("h_xnan.npy", "h_y.npy", "h_xnan.npy", "element 5 (example 1)",
                     "finite number, found nan");
    expect_npy_error("h_junk.npy", "h_y.npy", "h_junk.npy", "magic", NULL);
    expect_npy_error("h_missing.npy", "h_y.npy", "h_missing.npy", "cannot open", NULL);

    size_t xl, yl;
    uint8_t *xb = npy_bytes("|u1", "(3, 4)", x, sizeof x, &xl);
    uint8_t *yb = npy_bytes("<i8", "(3,)", neg, sizeof neg, &yl);
    kiln_dataset d;
    CHECK(kiln_dataset_load_npy_memory(xb, xl, NULL, yb, yl, NULL, &d) != KILN_OK &&
          error_has("targets: label 1", "found -1", NULL) && zeroed(&d), "memory: %s",
          kiln_last_error());
    CHECK(kiln_dataset_load_npy_memory(xb, xl - 1, "a.npy", yb, yl, "b.npy", &d) != KILN_OK &&
          error_has("a.npy: data", "truncated", NULL), "memory cut: %s", kiln_last_error());
    free(xb);
    free(yb);
}

/* kiln_dataset_open with npy: specs: both splits, a missing test split, malformed lists. */
static void test_open_npy(void)
{
    char spec[1200];
    kiln_dataset d;
    snprintf(spec, sizeof spec, "npy:%s,%s,%s,%s", at("u8_x.npy"), at("u8_y.npy"),
             at("t_x.npy"), at("h_y.npy"));
    CHECK(kiln_dataset_open(spec, NULL, true, &d) == KILN_OK && d.n == 5, "open train: %s",
          kiln_last_error());
    kiln_dataset_free(&d);
    CHECK(kiln_dataset_open(spec, NULL, false, &d) != KILN_OK && error_has("h_y.npy",
          "expected 2 examples", NULL), "open test: %s", kiln_last_error());
    snprintf(spec, sizeof spec, "npy:%s,%s", at("u8_x.npy"), at("u8_y.npy"));
    CHECK(kiln_dataset_open(spec, NULL, false, &d) == KILN_OK && d.n == 0, "no test split: %s",
          kiln_last_error());
    CHECK(kiln_dataset_check_classification(&d) != KILN_OK && error_has("empty", NULL, NULL),
          "empty split check: %s", kiln_last_error());
    kiln_dataset_free(&d);
    CHECK(kiln_dataset_open("npy:only.npy", NULL, true, &d) == KILN_ERR_ARG &&
          error_has("npy:only.npy", "2 or 4", "found 1 paths"), "one path: %s",
          kiln_last_error());
    CHECK(kiln_dataset_open("npy:a.npy,,c.npy,d.npy", NULL, true, &d) == KILN_ERR_ARG &&
          error_has("an empty one", NULL, NULL), "empty path: %s", kiln_last_error());
    CHECK(kiln_dataset_open("/nonexistent/kiln-data", NULL, true, &d) == KILN_ERR_IO &&
          error_has("/nonexistent/kiln-data", "npy:", "no such directory"), "bad spec: %s",
          kiln_last_error());
}

/* --- images ------------------------------------------------------------------------------ */

/* Writes an 8-bit PNG of c channels (1 grey, 3 RGB) from interleaved pixels. */
static void write_png(const char *name, int w, int h, int c, const uint8_t *px)
{
    FILE *fp = fopen(at(name), "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!fp || !png || !info || setjmp(png_jmpbuf(png))) {
        CHECK(0, "cannot write %s", name);
        png_destroy_write_struct(&png, &info);
        if (fp)
            fclose(fp);
        return;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, px + (size_t)y * w * c);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
}

/* Encodes a JPEG of c channels (1 grey, 3 RGB) from interleaved pixels into a new buffer. */
static uint8_t *jpeg_bytes(int w, int h, int c, const uint8_t *px, int quality, bool progressive,
                           size_t *len)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    unsigned char *out = NULL;
    unsigned long size = 0;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &out, &size);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = c;
    ci.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = size;
    return out;
}

/* Writes root/name as a JPEG. */
static void write_jpeg(const char *name, int w, int h, int c, const uint8_t *px, int quality)
{
    size_t len;
    uint8_t *b = jpeg_bytes(w, h, c, px, quality, false, &len);
    write_file(name, b, len);
    free(b);
}

/* A smooth test pattern of c interleaved channels (sides up to 20: no value wraps). */
static void pattern(uint8_t *px, int w, int h, int c, int seed)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                px[((size_t)y * w + x) * c + k] = (uint8_t)(20 + 5 * x + 4 * y + 20 * k + seed);
}

/* JPEG decoding: grey and RGB, baseline and progressive, near the encoded pixels; luminance;
 * corrupt, truncated and implausibly large files refused. */
static void test_jpeg(void)
{
    enum { W = 16, H = 12 };
    uint8_t grey[W * H], rgb[W * H * 3];
    pattern(grey, W, H, 1, 0);
    pattern(rgb, W, H, 3, 7);
    for (int prog = 0; prog < 2; prog++) {
        size_t len;
        uint8_t *b = jpeg_bytes(W, H, 1, grey, 100, prog, &len);
        kiln_tensor_f32 t;
        CHECK(kiln_image_read_memory(b, len, "g.jpg", 0, &t) == KILN_OK && t.ndim == 3 &&
              t.dims[0] == 1 && t.dims[1] == H && t.dims[2] == W, "grey jpeg: %s",
              kiln_last_error());
        double err = 0;
        for (int i = 0; t.data && i < W * H; i++)
            err = fmax(err, fabs(t.data[i] * 255.0 - grey[i]));
        CHECK(t.data && err <= 3.0, "grey jpeg (progressive %d): max error %.1f", prog, err);
        kiln_tensor_f32_free(&t);
        free(b);
        b = jpeg_bytes(W, H, 3, rgb, 100, prog, &len);
        CHECK(kiln_image_read_memory(b, len, "c.jpg", 0, &t) == KILN_OK && t.dims[0] == 3,
              "rgb jpeg: %s", kiln_last_error());
        err = 0;
        for (int i = 0; t.data && i < W * H; i++)
            for (int k = 0; k < 3; k++)
                err = fmax(err, fabs(t.data[k * W * H + i] * 255.0 - rgb[i * 3 + k]));
        CHECK(t.data && err <= 6.0, "rgb jpeg (progressive %d): max error %.1f", prog, err);
        kiln_tensor_f32_free(&t);
        CHECK(kiln_image_read_memory(b, len, "c.jpg", 1, &t) == KILN_OK && t.dims[0] == 1,
              "rgb jpeg as grey: %s", kiln_last_error());
        err = 0;
        for (int i = 0; t.data && i < W * H; i++) {
            double yv = 0.299 * rgb[i * 3] + 0.587 * rgb[i * 3 + 1] + 0.114 * rgb[i * 3 + 2];
            err = fmax(err, fabs(t.data[i] * 255.0 - yv));
        }
        CHECK(t.data && err <= 6.0, "luminance: max error %.1f", err);
        kiln_tensor_f32_free(&t);

        for (size_t cut = 4; cut < len; cut += len / 7) {   /* truncations */
            CHECK(kiln_image_read_memory(b, cut, "cut.jpg", 0, &t) == KILN_ERR_FORMAT &&
                  error_has("cut.jpg: ", NULL, NULL) && !t.data, "cut at %zu of %zu: %s", cut,
                  len, kiln_last_error());
        }
        uint8_t *bad = malloc(len);
        memcpy(bad, b, len);
        bad[len - 40] = 0xff;   /* an end-of-image marker inside the last scan's data */
        bad[len - 39] = 0xd9;
        CHECK(kiln_image_read_memory(bad, len, "bad.jpg", 0, &t) == KILN_ERR_FORMAT &&
              error_has("bad.jpg: JPEG: ", NULL, NULL), "corrupt: %s", kiln_last_error());
        memcpy(bad, b, len);
        for (size_t i = 2; i + 4 < len; i++)   /* SOF: 12-bit samples, which this build lacks */
            if (bad[i] == 0xff && (bad[i + 1] == 0xc0 || bad[i + 1] == 0xc2)) {
                bad[i + 4] = 12;
                break;
            }
        CHECK(kiln_image_read_memory(bad, len, "p12.jpg", 0, &t) == KILN_ERR_FORMAT &&
              error_has("p12.jpg: JPEG: ", "precision", NULL), "precision: %s",
              kiln_last_error());
        free(bad);
        free(b);
    }
    size_t len;
    uint8_t *b = jpeg_bytes(W, H, 1, grey, 90, false, &len);
    for (size_t i = 2; i + 8 < len; i++)   /* SOF0: height and width to 8000 x 8000 */
        if (b[i] == 0xff && b[i + 1] == 0xc0) {
            b[i + 5] = 8000 >> 8;
            b[i + 6] = 8000 & 0xff;
            b[i + 7] = 8000 >> 8;
            b[i + 8] = 8000 & 0xff;
            break;
        }
    kiln_tensor_f32 t;
    CHECK(kiln_image_read_memory(b, len, "huge.jpg", 0, &t) == KILN_ERR_FORMAT &&
          error_has("huge.jpg: image data", "8000 x 8000", NULL), "bomb: %s", kiln_last_error());
    free(b);
}

/* The expected stored bytes of an image file: decoded to c channels, resized, rounded. */
static void expected_u8(const char *path, int c, int h, int w, uint8_t *out)
{
    kiln_tensor_f32 img, r;
    CHECK(kiln_image_read(path, c, &img) == KILN_OK, "%s", kiln_last_error());
    if (img.dims[1] != h || img.dims[2] != w) {
        CHECK(kiln_tensor_resize(&img, h, w, &r) == KILN_OK, "%s", kiln_last_error());
        kiln_tensor_f32_free(&img);
        img = r;
    }
    for (size_t i = 0; i < img.numel; i++)
        out[i] = (uint8_t)fmin(255.0, fmax(0.0, rintf(img.data[i] * 255.0f)));
    kiln_tensor_f32_free(&img);
}

/* An image folder with train/ and test/: classes sorted, files sorted, dot files and nested
 * folders skipped, every image resized and stored as uint8, test classes mapped by name. */
static void test_image_folder(void)
{
    enum { C = 1, H = 8, W = 8, PER = C * H * W };
    uint8_t g8[8 * 8], rgb[16 * 12 * 3], g20[20 * 20];
    pattern(g8, 8, 8, 1, 3);
    pattern(rgb, 16, 12, 3, 9);
    for (int i = 0; i < 400; i++)
        g20[i] = 100;
    make_dir("f/train/cat/nested");
    make_dir("f/train/dog");
    make_dir("f/train/eel");
    make_dir("f/test/dog");
    make_dir("f/test/cat");
    write_png("f/train/cat/b.png", 8, 8, 1, g8);
    write_jpeg("f/train/cat/a.jpg", 16, 12, 3, rgb, 95);
    write_file("f/train/cat/.DS_Store", "junk", 4);
    write_png("f/train/cat/nested/skip.png", 8, 8, 1, g8);
    write_png("f/train/dog/x.png", 16, 12, 3, rgb);
    write_jpeg("f/train/eel/grey.jpeg", 20, 20, 1, g20, 90);
    write_file("f/train/README", "not a class", 11);
    write_jpeg("f/test/dog/t1.jpg", 8, 8, 1, g8, 95);
    write_png("f/test/cat/t2.png", 8, 8, 1, g8);
    kiln_data_options opt = { .c = C, .h = H, .w = W };
    kiln_dataset d;
    CHECK(kiln_dataset_load_image_folder(at("f"), &opt, true, &d) == KILN_OK, "folder: %s",
          kiln_last_error());
    static const char *const order[4] = { "f/train/cat/a.jpg", "f/train/cat/b.png",
                                          "f/train/dog/x.png", "f/train/eel/grey.jpeg" };
    static const int labels[4] = { 0, 0, 1, 2 };
    CHECK(d.n == 4 && d.n_classes == 3 && d.c == C && d.h == H && d.w == W &&
          d.kind == KILN_DATA_ARRAYS && d.input.storage == KILN_DT_U8 && d.images == d.inputs,
          "folder: n %d classes %d", d.n, d.n_classes);
    int bad = 0;
    for (int i = 0; i < 4 && d.n == 4; i++) {
        uint8_t want[PER];
        expected_u8(at(order[i]), C, H, W, want);
        bad += memcmp(d.images + i * PER, want, PER) != 0;
        bad += d.labels[i] != labels[i] || ((int32_t *)d.targets)[i] != labels[i];
    }
    CHECK(bad == 0, "folder: %d images or labels differ", bad);
    CHECK(d.n == 4 && memcmp(d.images + PER, g8, PER) == 0, "same-size 8-bit PNG stored exactly");
    for (int i = 0; d.n == 4 && i < PER; i++)
        bad += abs(d.images[3 * PER + i] - 100) > 2;
    CHECK(bad == 0, "uniform JPEG resized stays uniform");
    int idx[2] = { 3, 1 }, yl[2];
    float x[2 * PER];
    kiln_dataset_gather(&d, idx, 2, x, yl);
    bad = 0;
    for (int i = 0; d.n == 4 && i < 2; i++)
        for (int j = 0; j < PER; j++)
            bad += x[i * PER + j] != (float)d.images[idx[i] * PER + j] * (1.0f / 255.0f);
    CHECK(bad == 0 && yl[0] == 2 && yl[1] == 0, "folder gather");
    kiln_dataset_free(&d);

    CHECK(kiln_dataset_load_image_folder(at("f"), &opt, false, &d) == KILN_OK && d.n == 2 &&
          d.n_classes == 3 && d.labels && d.labels[0] == 0 && d.labels[1] == 1, "test split: %s",
          kiln_last_error());
    kiln_dataset_free(&d);
    opt.c = 3;
    CHECK(kiln_dataset_open(at("f"), &opt, true, &d) == KILN_OK && d.c == 3 &&
          d.input.numel == 3 * H * W, "open DIR, 3 channels: %s", kiln_last_error());
    kiln_dataset_free(&d);

    char spec[600];   /* a flat folder: all training data, an empty test split */
    snprintf(spec, sizeof spec, "images:%s", at("f/train"));
    CHECK(kiln_dataset_open(spec, &opt, true, &d) == KILN_OK && d.n == 4 && d.n_classes == 3,
          "flat: %s", kiln_last_error());
    kiln_dataset_free(&d);
    CHECK(kiln_dataset_open(spec, &opt, false, &d) == KILN_OK && d.n == 0 && d.c == 3,
          "flat test split: %s", kiln_last_error());
    kiln_dataset_free(&d);
}

/* An image folder refused: root/dir with opt must fail naming file and problem. */
static void expect_folder_error(const char *dir, const kiln_data_options *opt, bool train,
                                const char *file, const char *what)
{
    kiln_dataset d;
    kiln_status st = kiln_dataset_load_image_folder(at(dir), opt, train, &d);
    CHECK(st != KILN_OK && error_has(file, what, NULL) && zeroed(&d), "%s: status %d: %s", dir, st,
          kiln_last_error());
}

/* Empty folders, a non-image file, a corrupt JPEG, a test class unknown to training, a missing
 * input shape. */
static void test_image_folder_hostile(void)
{
    kiln_data_options opt = { .c = 1, .h = 4, .w = 4 };
    uint8_t g8[64];
    pattern(g8, 8, 8, 1, 0);
    size_t len;
    uint8_t *jpg = jpeg_bytes(8, 8, 1, g8, 90, false, &len);
    make_dir("e/empty");
    make_dir("e/emptyclass/a");
    make_dir("e/text/a");
    make_dir("e/corrupt/a");
    make_dir("e/split/train/a");
    make_dir("e/split/test/zebra");
    write_png("e/text/a/1.png", 8, 8, 1, g8);
    write_file("e/text/a/notes.txt", "hello world", 11);
    write_file("e/corrupt/a/1.jpg", jpg, len / 2);
    write_png("e/split/train/a/1.png", 8, 8, 1, g8);
    write_png("e/split/test/zebra/1.png", 8, 8, 1, g8);
    expect_folder_error("e/empty", &opt, true, "e/empty", "one subfolder per class, found none");
    expect_folder_error("e/emptyclass", &opt, true, "e/emptyclass/a", "at least one image");
    expect_folder_error("e/text", &opt, true, "e/text/a/notes.txt", "magic");
    expect_folder_error("e/corrupt", &opt, true, "e/corrupt/a/1.jpg", "JPEG");
    expect_folder_error("e/split", &opt, false, "e/split/test/zebra", "training classes");
    expect_folder_error("e/missing", &opt, true, "e/missing", "expected a directory");
    expect_folder_error("e/text", NULL, true, "e/text", "input shape");
    kiln_data_options two = { .c = 2, .h = 4, .w = 4 };
    expect_folder_error("e/text", &two, true, "e/text", "c 1 or 3");
    free(jpg);
}

/* --- text -------------------------------------------------------------------------------- */

/* Byte windows: non-overlapping, targets one byte further; the last 5% the test split; from a
 * file and from memory; too-short texts and bad contexts refused. */
static void test_text(void)
{
    enum { LEN = 1000, CTX = 16 };
    uint8_t text[LEN];
    for (int i = 0; i < LEN; i++)
        text[i] = (uint8_t)(i * 37 + 11);   /* every byte value, zero included */
    write_file("t.txt", text, LEN);
    kiln_dataset d, m;
    CHECK(kiln_dataset_load_text(at("t.txt"), CTX, true, &d) == KILN_OK, "text: %s",
          kiln_last_error());
    CHECK(d.kind == KILN_DATA_TEXT && d.n == (950 - 1) / CTX && d.text_len == 950 &&
          d.n_classes == 256 && d.c == CTX && d.h == 1 && d.w == 1, "text: n %d len %zu", d.n,
          d.text_len);
    CHECK(d.input.rank == 1 && d.input.dims[0] == CTX && d.input.storage == KILN_DT_U8 &&
          d.input.gathered == KILN_DT_I32 && d.target.rank == 1 && d.target.dims[0] == CTX &&
          d.target.gathered == KILN_DT_I32 && !d.images && !d.labels, "text: layouts");
    int idx[3] = { 0, d.n - 1, 7 }, yl[3];
    int32_t x[3 * CTX], y[3 * CTX];
    float xf[3 * CTX];
    CHECK(kiln_dataset_gather_typed(&d, idx, 3, x, y) == KILN_OK, "text: %s", kiln_last_error());
    kiln_dataset_gather(&d, idx, 3, xf, yl);
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < CTX; j++) {
            int s = idx[i] * CTX + j;
            bad += x[i * CTX + j] != text[s] || y[i * CTX + j] != text[s + 1] ||
                   xf[i * CTX + j] != (float)text[s];
        }
        bad += yl[i] != -1;
    }
    CHECK(bad == 0, "text: %d gathered values differ", bad);
    CHECK(kiln_dataset_check_classification(&d) == KILN_ERR_ARG &&
          error_has("text data is not one class per example", "kiln run --input", NULL),
          "text check: %s", kiln_last_error());
    CHECK(kiln_dataset_load_text_memory(text, LEN, NULL, CTX, true, &m) == KILN_OK &&
          m.n == d.n && m.text_len == d.text_len && memcmp(m.text, d.text, d.text_len) == 0,
          "memory: %s", kiln_last_error());
    kiln_dataset_free(&m);
    int outside = d.n;
    CHECK(kiln_dataset_gather_typed(&d, &outside, 1, x, y) == KILN_ERR_ARG &&
          error_has("index 0", "found", NULL), "index out of range: %s", kiln_last_error());
    kiln_dataset_free(&d);

    CHECK(kiln_dataset_load_text(at("t.txt"), CTX, false, &d) == KILN_OK &&
          d.n == (50 - 1) / CTX && d.text_len == 50, "test split: %s", kiln_last_error());
    idx[0] = d.n - 1;
    CHECK(kiln_dataset_gather_typed(&d, idx, 1, x, y) == KILN_OK, "test split gather");
    bad = 0;
    for (int j = 0; j < CTX; j++)
        bad += x[j] != text[950 + idx[0] * CTX + j] || y[j] != text[950 + idx[0] * CTX + j + 1];
    CHECK(bad == 0, "test split: %d values differ", bad);
    kiln_dataset_free(&d);

    char spec[600];
    kiln_data_options opt = { .context = CTX };
    snprintf(spec, sizeof spec, "text:%s", at("t.txt"));
    CHECK(kiln_dataset_open(spec, &opt, true, &d) == KILN_OK && d.n == 59, "open: %s",
          kiln_last_error());
    kiln_dataset_free(&d);
    CHECK(kiln_dataset_open(spec, NULL, true, &d) == KILN_ERR_ARG &&
          error_has("t.txt: context", "--context", NULL), "no context: %s", kiln_last_error());

    write_file("short.txt", text, 10);
    CHECK(kiln_dataset_load_text(at("short.txt"), CTX, true, &d) == KILN_ERR_FORMAT &&
          error_has("short.txt: training split", "at least 17 bytes", "found 10") && zeroed(&d),
          "short: %s", kiln_last_error());
    write_file("short2.txt", text, 300);
    CHECK(kiln_dataset_load_text(at("short2.txt"), CTX, false, &d) == KILN_ERR_FORMAT &&
          error_has("short2.txt: test split", "found 15", NULL), "short test: %s",
          kiln_last_error());
    write_file("empty.txt", text, 0);
    CHECK(kiln_dataset_load_text(at("empty.txt"), 1, true, &d) == KILN_ERR_FORMAT &&
          error_has("empty.txt", "found 0", NULL), "empty: %s", kiln_last_error());
    CHECK(kiln_dataset_load_text(at("t.txt"), 0, true, &d) == KILN_ERR_ARG &&
          error_has("t.txt: context", "found 0", NULL), "context 0: %s", kiln_last_error());
    CHECK(kiln_dataset_load_text(at("nothing.txt"), 4, true, &d) == KILN_ERR_IO &&
          error_has("nothing.txt", "cannot open", NULL), "missing: %s", kiln_last_error());
}

/* The trainer and evaluation take text with a token model and float targets with a regression
 * loss, and refuse data that does not fit the model with both shapes named, before training. */
static void test_trainer_fit(void)
{
    kiln_graph_t *g = kiln_spec_parse("input 16\ndense 256\n", "test");
    kiln_graph_t *lm = kiln_spec_parse("input 16 dtype=i32\nembedding 256 8\nlinear 256\n", "lm");
    kiln_graph_t *reg = kiln_spec_parse("input 4\nlinear 2\n", "reg");
    kiln_dataset text, f32;
    CHECK(g && lm && reg && kiln_dataset_load_text(at("t.txt"), 16, true, &text) == KILN_OK &&
          kiln_dataset_load_npy(at("f_x.npy"), at("f_y.npy"), &f32) == KILN_OK, "setup: %s",
          kiln_last_error());
    if (!g || !lm || !reg)
        return;
    kiln_train_config cfg = { .epochs = 1, .batch = 4, .opt = { .kind = KILN_OPT_ADAM, .lr = 1e-3f } };
    CHECK(kiln_train(g, &text, NULL, &cfg, NULL) == KILN_ERR_SHAPE &&
          error_has("model input input is F32, the dataset gives I32", NULL, NULL), "train text: %s",
          kiln_last_error());
    kiln_train_result res;
    kiln_graph_init_params(lm, 1);
    CHECK(kiln_train(lm, &text, NULL, &cfg, &res) == KILN_OK && isfinite(res.train_loss) &&
          res.train_loss < 6.0f, "train text on a token model: %s (loss %g)", kiln_last_error(), res.train_loss);
    CHECK(kiln_train(g, &f32, NULL, &cfg, NULL) == KILN_ERR_SHAPE &&
          error_has("model input 16 (16 values)", "examples of 4 values", NULL), "train f32: %s", kiln_last_error());
    kiln_graph_init_params(reg, 1);
    cfg.loss = KILN_LOSS_HUBER;
    CHECK(kiln_train(reg, &f32, NULL, &cfg, &res) == KILN_OK && isfinite(res.train_loss) && isnan(res.train_accuracy),
          "train f32 with huber: %s", kiln_last_error());
    kiln_model_t *m = kiln_model_create(g, true);
    float loss, acc;
    CHECK(m && kiln_evaluate(m, &text, 8, &loss, &acc) == KILN_ERR_SHAPE &&
          error_has("is F32, the dataset gives I32", NULL, NULL), "evaluate text: %s", kiln_last_error());
    kiln_model_free(m);
    m = kiln_model_create(lm, true);
    CHECK(m && kiln_evaluate(m, &text, 8, &loss, &acc) == KILN_OK && isfinite(loss) && acc >= 0 && acc <= 1,
          "evaluate text on a token model: %s", kiln_last_error());
    kiln_model_free(m);
    kiln_graph_free(g);
    kiln_graph_free(lm);
    kiln_graph_free(reg);
    kiln_dataset_free(&text);
    kiln_dataset_free(&f32);
}

/* IDX data through kiln_dataset_open: a folder holding IDX files is read as IDX, and
 * fashion-mnist (when installed) keeps its classic fields with the new layouts filled in. */
static void test_open_idx(void)
{
    static const uint8_t images[16 + 8] = { 0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2,
                                            1, 2, 3, 4, 5, 6, 7, 8 };
    static const uint8_t labels[8 + 2] = { 0, 0, 8, 1, 0, 0, 0, 2, 1, 0 };
    make_dir("idx");
    write_file("idx/train-images-idx3-ubyte", images, sizeof images);
    write_file("idx/train-labels-idx1-ubyte", labels, sizeof labels);
    kiln_dataset d;
    CHECK(kiln_dataset_open(at("idx"), NULL, true, &d) == KILN_OK && d.kind == KILN_DATA_IMAGES &&
          d.n == 2 && d.c == 1 && d.h == 2 && d.w == 2 && d.n_classes == 2 &&
          d.input.rank == 3 && d.input.numel == 4 && d.target.gathered == KILN_DT_I32,
          "IDX folder: %s", kiln_last_error());
    int idx[1] = { 1 };
    float x[4];
    int32_t y[1];
    CHECK(kiln_dataset_gather_typed(&d, idx, 1, x, y) == KILN_OK && y[0] == 0 &&
          x[3] == 8.0f * (1.0f / 255.0f), "IDX typed gather");
    kiln_dataset_free(&d);
    if (access("/usr/share/datasets/fashion-mnist", R_OK) != 0) {
        printf("fashion-mnist not installed: skipped\n");
        return;
    }
    CHECK(kiln_dataset_open("fashion-mnist", NULL, false, &d) == KILN_OK && d.n == 10000 &&
          d.c == 1 && d.h == 28 && d.w == 28 && d.n_classes == 10 && d.images && d.labels,
          "fashion-mnist: %s", kiln_last_error());
    kiln_dataset_free(&d);
}

/* --- the CLI ----------------------------------------------------------------------------- */

/* Runs a shell command; its exit status. Output goes to root/out.txt. */
static int run(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof full, "%s >%s 2>&1", cmd, at("out.txt"));
    int rc = system(full);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Whether root/out.txt contains s. */
static int output_has(const char *s)
{
    static char buf[65536];
    FILE *fp = fopen(at("out.txt"), "rb");
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp)
        fclose(fp);
    buf[n] = '\0';
    return strstr(buf, s) != NULL;
}

/* kiln train and eval on a .npy pair and an image folder; text refused with a clear message. */
static void test_cli(void)
{
    const char *cli = getenv("KILN_CLI");
    if (!cli) {
        printf("KILN_CLI not set: CLI checks skipped\n");
        return;
    }
    enum { N = 200 };
    static uint8_t x[N * 64];
    static int64_t y[N];
    for (int i = 0; i < N; i++) {   /* class k is bright in quadrant k */
        y[i] = i % 4;
        for (int p = 0; p < 64; p++) {
            int q = (p / 8 >= 4) * 2 + (p % 8 >= 4);
            x[i * 64 + p] = (uint8_t)((i * 7 + p * 13) % 60 + (q == y[i] ? 150 : 0));
        }
    }
    write_npy("c_x.npy", "|u1", "(200, 1, 8, 8)", x, sizeof x, 0);
    write_npy("c_y.npy", "<i8", "(200,)", y, sizeof y, 0);
    write_file("c.kiln", "input 1 8 8\nflatten\nfc: dense 4\n", 32);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train %s --data npy:%s,%s,%s,%s --epochs 3 --batch 20 --lr 0.1 "
             "--quiet --json --out %s", cli, at("c.kiln"), at("c_x.npy"), at("c_y.npy"),
             at("c_x.npy"), at("c_y.npy"), at("c.safetensors"));
    CHECK(run(cmd) == 0 && output_has("\"test_accuracy\":1.000000"), "train npy: see %s",
          at("out.txt"));
    snprintf(cmd, sizeof cmd, "%s eval %s --data npy:%s,%s,%s,%s --json", cli,
             at("c.safetensors"), at("c_x.npy"), at("c_y.npy"), at("c_x.npy"), at("c_y.npy"));
    CHECK(run(cmd) == 0 && output_has("\"examples\":200,\"accuracy\":1.000000"), "eval npy");
    snprintf(cmd, sizeof cmd, "%s train %s --data %s --epochs 1 --batch 2 --quiet --out %s", cli,
             at("c.kiln"), at("f"), at("f.safetensors"));
    CHECK(run(cmd) == 0 && output_has("test accuracy"), "train image folder");
    snprintf(cmd, sizeof cmd, "%s train %s --data text:%s --context 16 --quiet --out %s", cli,
             at("c.kiln"), at("t.txt"), at("t.safetensors"));
    CHECK(run(cmd) == 1 && output_has("does not match the text windows of 16 bytes"), "train text on an image model");
    snprintf(cmd, sizeof cmd, "%s eval %s --data npy:%s,%s", cli, at("c.safetensors"),
             at("c_x.npy"), at("c_y.npy"));
    CHECK(run(cmd) == 1 && output_has("empty"), "eval without a test split");
}

int main(void)
{
    snprintf(root, sizeof root, "data_test_%ld", (long)getpid());
    mkdir(root, 0755);
    test_npy_u8_int64();
    test_npy_f32_f32();
    test_npy_ranks();
    test_npy_hostile();
    test_open_npy();
    test_jpeg();
    test_image_folder();
    test_image_folder_hostile();
    test_text();
    test_trainer_fit();
    test_open_idx();
    test_cli();
    if (!check_failed)
        nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_report();
}
