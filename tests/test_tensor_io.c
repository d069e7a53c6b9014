/* Tensor I/O: .npy round trips and hand-built files of every dtype and version, every truncation
 * and many corrupt headers; PNG (written here with libpng) of every colour type, PGM / PPM
 * written by hand, grey conversion, broken images; bilinear resize. */
#include <dirent.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "kiln/tensor_io.h"

#define MAX_TEMPS 64

static char temp_names[MAX_TEMPS][64];
static int n_temps;

/* A unique file name in the working directory, removed at the end of the test. */
static const char *temp_name(const char *suffix)
{
    snprintf(temp_names[n_temps], sizeof temp_names[0], "tio_%ld_%d_%s", (long)getpid(), n_temps,
             suffix);
    return temp_names[n_temps++];
}

/* Removes every temp file. */
static void remove_temps(void)
{
    for (int i = 0; i < n_temps; i++)
        remove(temp_names[i]);
}

/* Writes bytes to a file. */
static int write_bytes(const char *path, const void *buf, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return 0;
    int ok = fwrite(buf, 1, len, fp) == len;
    return fclose(fp) == 0 && ok;
}

/* Reads a whole file into a new buffer (NULL on failure). */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = buf ? fread(buf, 1, (size_t)n, fp) : 0;
    fclose(fp);
    return buf;
}

/* Whether the last error mentions s. */
static int error_has(const char *s)
{
    return strstr(kiln_last_error(), s) != NULL;
}

/* Builds a .npy in buf: magic, version major.0, the header dict padded with spaces and '\n' to
 * 64 bytes (pad = 0: unpadded), then data. Returns its length. */
static size_t make_npy(uint8_t *buf, int major, const char *dict, int pad, const void *data,
                       size_t data_len)
{
    size_t pre = major == 1 ? 10 : 12, n = strlen(dict);
    size_t total = pad ? (pre + n + 1 + 63) / 64 * 64 : pre + n;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)major;
    buf[7] = 0;
    size_t hlen = total - pre;
    for (size_t i = 0; i < pre - 8; i++)
        buf[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + pre, dict, n);
    if (pad) {
        memset(buf + pre + n, ' ', total - pre - n);
        buf[total - 1] = '\n';
    }
    if (data_len)
        memcpy(buf + total, data, data_len);
    return total + data_len;
}

/* Round trip through kiln_npy_write / kiln_npy_read for one shape. */
static void roundtrip(int ndim, const int64_t *dims)
{
    const char *path = temp_name("rt.npy");
    size_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= (size_t)dims[i];
    float *data = malloc((numel ? numel : 1) * sizeof *data);
    for (size_t i = 0; i < numel; i++)
        data[i] = (float)i * 0.37f - 3.0f;
    CHECK(kiln_npy_write(path, data, ndim, dims) == KILN_OK, "write ndim %d: %s", ndim,
          kiln_last_error());
    size_t len;
    uint8_t *bytes = slurp(path, &len);
    size_t hlen = bytes && len >= 10 ? (size_t)bytes[8] | (size_t)bytes[9] << 8 : 0;
    CHECK(bytes && len == 10 + hlen + 4 * numel && (10 + hlen) % 64 == 0 && bytes[6] == 1 &&
          bytes[7] == 0 && bytes[10 + hlen - 1] == '\n', "written file: %zu bytes, header %zu, "
          "expected the header aligned to 64 and %zu data bytes", len, hlen, 4 * numel);
    free(bytes);
    kiln_tensor_f32 t;
    CHECK(kiln_npy_read(path, &t) == KILN_OK, "read ndim %d: %s", ndim, kiln_last_error());
    CHECK(t.ndim == ndim && t.numel == numel && t.data, "ndim %d numel %zu", t.ndim, t.numel);
    int same = t.ndim == ndim && t.numel == numel;
    for (int i = 0; same && i < ndim; i++)
        same = t.dims[i] == dims[i];
    for (size_t i = 0; same && i < numel; i++)
        same = memcmp(&t.data[i], &data[i], sizeof(float)) == 0;
    CHECK(same, "round trip of ndim %d changed dims or values", ndim);
    kiln_tensor_f32_free(&t);
    CHECK(t.data == NULL && t.ndim == 0, "free zeroes the tensor");
    free(data);
}

/* No temp file of an atomic write is left in the working directory. */
static void check_no_stray_temps(void)
{
    DIR *d = opendir(".");
    int stray = 0;
    struct dirent *e;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "tio_%ld_", (long)getpid());
    while (d && (e = readdir(d)))
        stray += strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".tmp-");
    if (d)
        closedir(d);
    CHECK(stray == 0, "%d temp files left by kiln_npy_write", stray);
}

static void test_npy_roundtrip(void)
{
    static const int64_t d0[1] = { 0 }, d1[1] = { 5 }, d2[2] = { 2, 3 }, d3[3] = { 2, 0, 3 },
                         d4[4] = { 1, 2, 3, 4 }, d8[8] = { 1, 1, 2, 1, 1, 2, 1, 3 },
                         big[2] = { 3, 10001 };
    roundtrip(0, NULL);
    roundtrip(1, d0);
    roundtrip(1, d1);
    roundtrip(2, d2);
    roundtrip(3, d3);
    roundtrip(4, d4);
    roundtrip(8, d8);
    roundtrip(2, big);  /* several read and write chunks */
    const char *path = temp_name("hdr.npy");
    float x[6] = { 0 };
    kiln_npy_write(path, x, 2, d2);
    size_t len;
    uint8_t *b = slurp(path, &len);
    const char *want = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    CHECK(b && len >= 64 && memcmp(b + 10, want, strlen(want)) == 0, "header text");
    free(b);
    CHECK(kiln_npy_write(path, x, 1, d1) == KILN_OK, "overwrite: %s", kiln_last_error());
    check_no_stray_temps();
    static const int64_t neg[1] = { -1 };
    CHECK(kiln_npy_write(path, x, 1, neg) == KILN_ERR_ARG, "negative dim rejected");
    CHECK(kiln_npy_write(path, x, 9, d8) == KILN_ERR_ARG, "9 dims rejected");
    CHECK(kiln_npy_write(path, NULL, 1, d1) == KILN_ERR_ARG, "NULL data rejected");
    CHECK(kiln_npy_write("no_such_dir_tio/x.npy", x, 1, d1) == KILN_ERR_IO &&
          error_has("no_such_dir_tio/x.npy"), "missing directory: %s", kiln_last_error());
}

/* Reads a built file from memory and from disk; checks shape and values. */
static void check_built(const char *what, const uint8_t *buf, size_t len, int ndim,
                        const int64_t *dims, const float *want, size_t n)
{
    kiln_tensor_f32 t;
    const char *path = temp_name("built.npy");
    for (int from_file = 0; from_file < 2; from_file++) {
        kiln_status st = from_file ? (write_bytes(path, buf, len), kiln_npy_read(path, &t))
                                   : kiln_npy_read_memory(buf, len, what, &t);
        CHECK(st == KILN_OK, "%s (%s): %s", what, from_file ? "file" : "memory",
              kiln_last_error());
        int ok = st == KILN_OK && t.ndim == ndim && t.numel == n;
        for (int i = 0; ok && i < ndim; i++)
            ok = t.dims[i] == dims[i];
        for (size_t i = 0; ok && i < n; i++)
            ok = check_close(t.data[i], want[i], 1e-7);
        CHECK(ok, "%s: shape or values differ", what);
        kiln_tensor_f32_free(&t);
    }
}

static void test_npy_dtypes(void)
{
    uint8_t buf[512];
    size_t len;
    float f4[4] = { 1.5f, -2.0f, 0.25f, 1e30f };
    static const int64_t s22[2] = { 2, 2 }, s3[1] = { 3 }, s2[1] = { 2 };
    len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", 1,
                   f4, sizeof f4);
    check_built("f4 v1", buf, len, 2, s22, f4, 4);

    uint8_t u1[3] = { 0, 128, 255 };
    float u1_want[3] = { 0.0f, 128.0f / 255.0f, 1.0f };
    len = make_npy(buf, 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", 1, u1, 3);
    check_built("u1 v2", buf, len, 1, s3, u1_want, 3);

    double f8[2] = { 1.5, -2.25 };
    float f8_want[2] = { 1.5f, -2.25f };
    len = make_npy(buf, 3, "{\"shape\": (2,), \"descr\": \"<f8\", \"fortran_order\": False}", 1,
                   f8, sizeof f8);
    check_built("f8 v3, keys reordered", buf, len, 1, s2, f8_want, 2);

    int32_t i4[3] = { -1, 0, 2147483647 };
    float i4_want[3] = { -1.0f, 0.0f, 2147483647.0f };
    len = make_npy(buf, 1, "  {  'descr' :'<i4',\t'fortran_order':False ,'shape':( 3 , ) }", 0,
                   i4, sizeof i4);
    check_built("i4 v1, odd spacing, unpadded", buf, len, 1, s3, i4_want, 3);

    int64_t i8[2] = { -5, (int64_t)1 << 40 };
    float i8_want[2] = { -5.0f, 1099511627776.0f };
    len = make_npy(buf, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2L,), }", 1, i8,
                   sizeof i8);
    check_built("i8 v1, Python 2 long", buf, len, 1, s2, i8_want, 2);

    float scalar = 7.5f;
    len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1,
                   &scalar, 4);
    check_built("0-d", buf, len, 0, NULL, &scalar, 1);

    enum { N_BIG = 40000 };
    uint8_t *big = malloc(128 + N_BIG);
    float *big_want = malloc(N_BIG * sizeof *big_want);
    uint8_t *u1_big = malloc(N_BIG);
    for (int i = 0; i < N_BIG; i++) {
        u1_big[i] = (uint8_t)(i * 7);
        big_want[i] = u1_big[i] / 255.0f;
    }
    static const int64_t s_big[2] = { 200, 200 };
    len = make_npy(big, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (200, 200), }", 1,
                   u1_big, N_BIG);
    check_built("u1 40000 bytes", big, len, 2, s_big, big_want, N_BIG);
    free(big);
    free(big_want);
    free(u1_big);

    static const int64_t s030[3] = { 0, 3, 0 };
    len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3, 0), }", 1,
                   NULL, 0);
    check_built("empty", buf, len, 3, s030, NULL, 0);
}

static void test_npy_truncation(void)
{
    uint8_t buf[256];
    float v[6] = { 1, 2, 3, 4, 5, 6 };
    size_t len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                          1, v, sizeof v);
    int failed_ok = 0, named = 0;
    kiln_tensor_f32 t;
    for (size_t n = 0; n < len; n++) {
        failed_ok += kiln_npy_read_memory(buf, n, "cut.npy", &t) == KILN_ERR_FORMAT &&
                     t.data == NULL;
        named += error_has("cut.npy");
    }
    CHECK(failed_ok == (int)len && named == (int)len, "%d of %zu truncations rejected, %d named",
          failed_ok, len, named);
    const char *path = temp_name("cut.npy");
    failed_ok = 0;
    for (size_t n = 0; n < len; n++) {
        write_bytes(path, buf, n);
        failed_ok += kiln_npy_read(path, &t) == KILN_ERR_FORMAT && error_has(path);
    }
    CHECK(failed_ok == (int)len, "%d of %zu truncated files rejected", failed_ok, len);
    buf[len] = 0;
    CHECK(kiln_npy_read_memory(buf, len + 1, "long.npy", &t) == KILN_ERR_FORMAT &&
          error_has("data: expected 24 bytes") && error_has("found 25"), "oversized: %s",
          kiln_last_error());
    write_bytes(path, buf, len + 1);
    CHECK(kiln_npy_read(path, &t) == KILN_ERR_FORMAT && error_has("extra"), "oversized file: %s",
          kiln_last_error());
    CHECK(kiln_npy_read_memory(buf, len - 1, "x.npy", &t) == KILN_ERR_FORMAT &&
          error_has("x.npy: data: expected 24 bytes (shape (2, 3) of '<f4'), found 23"),
          "data message: %s", kiln_last_error());
    CHECK(kiln_npy_read("tio_missing.npy", &t) == KILN_ERR_IO && error_has("tio_missing.npy"),
          "missing file: %s", kiln_last_error());
}

/* A header that must be rejected, and a piece of the message it must give. */
typedef struct {
    const char *dict;
    const char *message;
} bad_header;

static void test_npy_bad_headers(void)
{
    static const bad_header cases[] = {
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }",
          "x.npy: header 'shape': expected a tuple of non-negative integers, found '(3, -1)'" },
        { "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", "Fortran" },
        { "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", "big-endian" },
        { "{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", "big-endian" },
        { "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }",
          "expected one of '<f4', '<f8', '<i4', '<i8' or '|u1', found ''<c8''" },
        { "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", "'descr'" },
        { "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", "True or False" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", "trailing comma" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2 3), }", "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }", "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }", "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,), }", "tuple" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
          "at most 8" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
          "dimension 0" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }",
          "at most 2147483648 elements" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2147483648,), }",
          "data: expected 8589934592 bytes" },
        { "{'descr': '<f4', 'fortran_order': False, }", "found no 'shape'" },
        { "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", "twice" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", "found key 'x'" },
        { "['descr', '<f4']", "a dict" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", "padding" },
        { "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "',' or '}'" },
        { "{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", "':'" },
        { "{descr: '<f4', 'fortran_order': False, 'shape': (2,)}", "quoted key" },
        { "{'descr': , 'fortran_order': False, 'shape': (2,)}", "a value" },
        { "{'descr': '<f4", "header" },
        { "", "found the end of the header" },
    };
    uint8_t buf[512];
    float data[2] = { 0 };
    kiln_tensor_f32 t;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = make_npy(buf, 1, cases[i].dict, 1, data, sizeof data);
        kiln_status st = kiln_npy_read_memory(buf, len, "x.npy", &t);
        CHECK(st == KILN_ERR_FORMAT && t.data == NULL && error_has("x.npy: ") &&
              error_has(cases[i].message), "header %zu %s: got '%s', want '%s'", i,
              cases[i].dict, kiln_last_error(), cases[i].message);
    }
    size_t len = make_npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1,
                          data, sizeof data);
    buf[0] = 'N';
    CHECK(kiln_npy_read_memory(buf, len, "x.npy", &t) == KILN_ERR_FORMAT && error_has("magic"),
          "magic: %s", kiln_last_error());
    buf[0] = 0x93;
    buf[6] = 4;
    CHECK(kiln_npy_read_memory(buf, len, "x.npy", &t) == KILN_ERR_FORMAT &&
          error_has("version: expected 1.0, 2.0 or 3.0, found 4.0"), "version: %s",
          kiln_last_error());
    buf[6] = 1;
    buf[7] = 1;
    CHECK(kiln_npy_read_memory(buf, len, "x.npy", &t) == KILN_ERR_FORMAT &&
          error_has("found 1.1"), "minor version: %s", kiln_last_error());
    buf[7] = 0;
    buf[8] = 0xff;
    CHECK(kiln_npy_read_memory(buf, len, "x.npy", &t) == KILN_ERR_FORMAT &&
          error_has("header length"), "header length: %s", kiln_last_error());
    buf[8] = 54;
    buf[20] = 0;
    CHECK(kiln_npy_read_memory(buf, len, "x.npy", &t) == KILN_ERR_FORMAT &&
          error_has("\\x00"), "NUL in header shown escaped: %s", kiln_last_error());
    CHECK(kiln_npy_read_memory(NULL, 0, "x.npy", &t) == KILN_ERR_FORMAT, "empty buffer");
}

/* A PNG to write: size, libpng colour type and depth, interlacing, palette entries. */
typedef struct {
    int w, h, color_type, depth, interlace, n_palette, n_trans;
} png_spec;

/* Writes a PNG with libpng; rows are tightly packed w * samples * depth bits each. */
static int write_png(const char *path, const png_spec *s, const uint8_t *pixels)
{
    FILE *fp = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int samples = s->color_type == PNG_COLOR_TYPE_RGB ? 3 : s->color_type == 6 ? 4
                : s->color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t stride = ((size_t)s->w * (size_t)samples * (size_t)s->depth + 7) / 8;
    png_bytep rows[64];
    if (!fp || !info || s->h > 64) {
        png_destroy_write_struct(&png, &info);
        if (fp)
            fclose(fp);
        return 0;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(fp);
        return 0;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->color_type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_color palette[4] = { { 255, 0, 0 }, { 0, 255, 0 }, { 0, 0, 255 }, { 10, 20, 30 } };
    png_byte trans[4] = { 0, 128, 255, 255 };
    if (s->n_palette)
        png_set_PLTE(png, info, palette, s->n_palette);
    if (s->n_trans)
        png_set_tRNS(png, info, trans, s->n_trans, NULL);
    for (int y = 0; y < s->h; y++)
        rows[y] = (png_bytep)(uintptr_t)(pixels + (size_t)y * stride);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(fp) == 0;
}

/* Reads an image (file, then memory) with the given channels and compares with want (c,h,w). */
static void check_image(const char *what, const char *path, int channels, int c, int h, int w,
                        const float *want, double tol)
{
    kiln_tensor_f32 t;
    size_t len = 0;
    uint8_t *bytes = slurp(path, &len);
    for (int from_memory = 0; from_memory < 2; from_memory++) {
        kiln_status st = from_memory ? kiln_image_read_memory(bytes, len, what, channels, &t)
                                     : kiln_image_read(path, channels, &t);
        CHECK(st == KILN_OK, "%s: %s", what, kiln_last_error());
        int ok = st == KILN_OK && t.ndim == 3 && t.dims[0] == c && t.dims[1] == h &&
                 t.dims[2] == w && t.numel == (size_t)(c * h * w);
        size_t bad = 0;
        for (size_t i = 0; ok && i < t.numel; i++)
            if (!check_close(t.data[i], want[i], tol))
                bad = i + 1, ok = 0;
        CHECK(ok, "%s (channels %d): shape (%lld, %lld, %lld) or value %zu (%g, want %g) wrong",
              what, channels, (long long)t.dims[0], (long long)t.dims[1], (long long)t.dims[2],
              bad ? bad - 1 : 0, bad && t.data ? t.data[bad - 1] : 0.0,
              bad ? want[bad - 1] : 0.0);
        kiln_tensor_f32_free(&t);
    }
    free(bytes);
}

/* Luminance of an RGB triple in [0, 1]. */
static float luma(float r, float g, float b)
{
    return 0.299f * r + 0.587f * g + 0.114f * b;
}

static void test_png_grey(void)
{
    const char *path = temp_name("grey.png");
    uint8_t g8[6] = { 0, 51, 102, 153, 204, 255 };
    float want[18];
    for (int i = 0; i < 6; i++)
        want[i] = want[6 + i] = want[12 + i] = g8[i] / 255.0f;
    png_spec s = { 3, 2, PNG_COLOR_TYPE_GRAY, 8, 0, 0, 0 };
    CHECK(write_png(path, &s, g8), "write grey png");
    check_image("grey 8-bit", path, 0, 1, 2, 3, want, 1e-6);
    check_image("grey 8-bit as RGB", path, 3, 3, 2, 3, want, 1e-6);
    check_image("grey 8-bit as grey", path, 1, 1, 2, 3, want, 1e-6);

    uint8_t g16[12] = { 0, 0, 0x80, 0x00, 0xff, 0xff, 0x12, 0x34, 0, 1, 0xff, 0xfe };
    float w16[6] = { 0, 32768 / 65535.0f, 1, 0x1234 / 65535.0f, 1 / 65535.0f, 65534 / 65535.0f };
    s.depth = 16;
    CHECK(write_png(path, &s, g16), "write 16-bit grey png");
    check_image("grey 16-bit", path, 0, 1, 2, 3, w16, 1e-6);

    uint8_t g1[2] = { 0xa0, 0x60 };  /* rows 101, 011 */
    float w1[6] = { 1, 0, 1, 0, 1, 1 };
    s.depth = 1;
    CHECK(write_png(path, &s, g1), "write 1-bit grey png");
    check_image("grey 1-bit", path, 0, 1, 2, 3, w1, 1e-6);

    uint8_t ga[12] = { 10, 0, 20, 50, 30, 100, 40, 150, 50, 200, 60, 255 };
    float wga[6] = { 10 / 255.0f, 20 / 255.0f, 30 / 255.0f, 40 / 255.0f, 50 / 255.0f,
                     60 / 255.0f };
    s.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
    s.depth = 8;
    CHECK(write_png(path, &s, ga), "write grey+alpha png");
    check_image("grey+alpha (alpha dropped)", path, 0, 1, 2, 3, wga, 1e-6);
}

static void test_png_colour(void)
{
    const char *path = temp_name("rgb.png");
    uint8_t rgb[12] = { 255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30 };
    float want[12], grey[4];
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 3; k++)
            want[k * 4 + i] = rgb[3 * i + k] / 255.0f;
        grey[i] = luma(want[i], want[4 + i], want[8 + i]);
    }
    png_spec s = { 2, 2, PNG_COLOR_TYPE_RGB, 8, 0, 0, 0 };
    CHECK(write_png(path, &s, rgb), "write rgb png");
    check_image("rgb", path, 0, 3, 2, 2, want, 1e-6);
    check_image("rgb as grey", path, 1, 1, 2, 2, grey, 1e-6);
    CHECK(check_close(grey[0], 0.299, 1e-6) && check_close(grey[1], 0.587, 1e-6) &&
          check_close(grey[2], 0.114, 1e-6), "luminance weights");

    uint8_t rgba[16] = { 255, 0, 0, 0, 0, 255, 0, 77, 0, 0, 255, 128, 10, 20, 30, 255 };
    s.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
    CHECK(write_png(path, &s, rgba), "write rgba png");
    check_image("rgba (alpha dropped)", path, 0, 3, 2, 2, want, 1e-6);

    uint8_t rgb16[24];
    for (int i = 0; i < 12; i++)
        rgb16[2 * i] = rgb[i], rgb16[2 * i + 1] = rgb[i];  /* v * 257 */
    s.color_type = PNG_COLOR_TYPE_RGB;
    s.depth = 16;
    CHECK(write_png(path, &s, rgb16), "write 16-bit rgb png");
    check_image("rgb 16-bit", path, 0, 3, 2, 2, want, 1e-6);

    uint8_t idx[4] = { 0, 1, 2, 3 };
    s = (png_spec){ 2, 2, PNG_COLOR_TYPE_PALETTE, 8, 0, 4, 0 };
    CHECK(write_png(path, &s, idx), "write palette png");
    check_image("palette", path, 0, 3, 2, 2, want, 1e-6);
    s.n_trans = 3;
    CHECK(write_png(path, &s, idx), "write palette+tRNS png");
    check_image("palette with tRNS (alpha dropped)", path, 0, 3, 2, 2, want, 1e-6);
    uint8_t idx2[2] = { 0x10, 0xb0 };  /* 2-bit indices 0 1 / 2 3 */
    s = (png_spec){ 2, 2, PNG_COLOR_TYPE_PALETTE, 2, 0, 4, 0 };
    CHECK(write_png(path, &s, idx2), "write 2-bit palette png");
    check_image("palette 2-bit", path, 0, 3, 2, 2, want, 1e-6);
}

static void test_png_interlaced(void)
{
    enum { W = 7, H = 5 };
    const char *path = temp_name("adam7.png");
    uint8_t px[H * W * 3];
    float want[3 * H * W];
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int k = 0; k < 3; k++) {
                uint8_t v = (uint8_t)(y * 40 + x * 9 + k * 70);
                px[(y * W + x) * 3 + k] = v;
                want[k * H * W + y * W + x] = v / 255.0f;
            }
    png_spec s = { W, H, PNG_COLOR_TYPE_RGB, 8, 1, 0, 0 };
    CHECK(write_png(path, &s, px), "write interlaced png");
    check_image("interlaced rgb", path, 0, 3, H, W, want, 1e-6);
}

/* Writes a big-endian uint32. */
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Sets IHDR width and height of a PNG buffer and fixes the chunk's CRC. */
static void set_png_size(uint8_t *b, uint32_t w, uint32_t h)
{
    put_be32(b + 16, w);
    put_be32(b + 20, h);
    put_be32(b + 29, (uint32_t)crc32(0, b + 12, 17));
}

static void test_png_broken(void)
{
    const char *path = temp_name("broken.png");
    uint8_t px[4 * 4 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)(i * 13);
    png_spec s = { 4, 4, PNG_COLOR_TYPE_RGB, 8, 0, 0, 0 };
    CHECK(write_png(path, &s, px), "write png");
    size_t len = 0;
    uint8_t *b = slurp(path, &len);
    if (!b)
        return;
    kiln_tensor_f32 t;
    int rejected = 0, named = 0;
    for (size_t n = 0; n < len; n++) {
        rejected += kiln_image_read_memory(b, n, "img.png", 0, &t) == KILN_ERR_FORMAT &&
                    t.data == NULL;
        named += error_has("img.png");
    }
    CHECK(rejected == (int)len && named == (int)len, "%d of %zu PNG truncations rejected, %d "
          "named", rejected, len, named);
    write_bytes(path, b, len - 20);
    CHECK(kiln_image_read(path, 0, &t) == KILN_ERR_FORMAT && error_has(path),
          "truncated file: %s", kiln_last_error());

    uint8_t *c = malloc(len);
    memcpy(c, b, len);
    c[len - 20] ^= 0x55;  /* inside IDAT: bad CRC or bad deflate data */
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png: PNG: "), "corrupt IDAT: %s", kiln_last_error());
    memcpy(c, b, len);
    c[24] = 7;  /* bit depth 7, CRC left stale */
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png"), "corrupt IHDR: %s", kiln_last_error());
    memcpy(c, b, len);
    set_png_size(c, 0, 4);
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png: width 0: expected 1..32768"), "width 0: %s", kiln_last_error());
    set_png_size(c, 4, 40000);
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png: height 40000: expected 1..32768"), "height: %s",
          kiln_last_error());
    set_png_size(c, 32768, 16385);
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("pixels"), "area: %s", kiln_last_error());
    set_png_size(c, 8000, 8000);
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png: image data"), "too little data for the size: %s",
          kiln_last_error());
    set_png_size(c, 5, 4);
    CHECK(kiln_image_read_memory(c, len, "img.png", 0, &t) == KILN_ERR_FORMAT &&
          error_has("img.png: PNG: "), "rows too short for the width: %s", kiln_last_error());
    free(c);
    CHECK(kiln_image_read_memory(b, len, "img.png", 2, &t) == KILN_ERR_ARG, "channels 2");
    free(b);
}

/* Writes a PNM file from a header string and raster bytes. */
static void write_pnm(const char *path, const char *header, const void *raster, size_t n)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return;
    fputs(header, fp);
    if (n)
        fwrite(raster, 1, n, fp);
    fclose(fp);
}

static void test_pnm(void)
{
    const char *path = temp_name("img.pgm");
    uint8_t g[6] = { 0, 51, 102, 153, 204, 255 };
    float want[18];
    for (int i = 0; i < 6; i++)
        want[i] = want[6 + i] = want[12 + i] = g[i] / 255.0f;
    write_pnm(path, "P5\n# made by hand\n3 # width\n2\n#maxval next\n255\n", g, 6);
    check_image("P5 with comments", path, 0, 1, 2, 3, want, 1e-6);
    check_image("P5 as RGB", path, 3, 3, 2, 3, want, 1e-6);
    write_pnm(path, "P2\n3 2\n255\n0 51 102\n# a comment\n153 204\t255\n", NULL, 0);
    check_image("P2", path, 0, 1, 2, 3, want, 1e-6);

    uint8_t g16[12] = { 0, 0, 0x01, 0xf4, 0x03, 0xe8, 0, 1, 0, 100, 0x02, 0x58 };
    float w16[6] = { 0, 0.5f, 1, 0.001f, 0.1f, 0.6f };
    write_pnm(path, "P5 3 2 1000 ", g16, 12);
    check_image("P5 16-bit maxval 1000", path, 0, 1, 2, 3, w16, 1e-6);
    write_pnm(path, "P2 3 2 1000 0 500 1000 1 100 600", NULL, 0);
    check_image("P2 maxval 1000", path, 0, 1, 2, 3, w16, 1e-6);

    const char *ppm = temp_name("img.ppm");
    uint8_t rgb[6] = { 255, 0, 0, 0, 128, 255 };
    float wrgb[6] = { 1, 0, 0, 128 / 255.0f, 0, 1 };
    float wgrey[2] = { luma(1, 0, 0), luma(0, 128 / 255.0f, 1) };
    write_pnm(ppm, "P6\n2 1\n255\n", rgb, 6);
    check_image("P6", ppm, 0, 3, 1, 2, wrgb, 1e-6);
    check_image("P6 as grey", ppm, 1, 1, 1, 2, wgrey, 1e-6);
    write_pnm(ppm, "P3\n2 1\n255\n255 0 0  0 128 255\n", NULL, 0);
    check_image("P3", ppm, 0, 3, 1, 2, wrgb, 1e-6);
    uint8_t rgb16[12] = { 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0xff, 0xff };
    write_pnm(ppm, "P6\n2 1\n65535\n", rgb16, 12);
    check_image("P6 16-bit", ppm, 0, 3, 1, 2, wrgb, 1e-6);
}

/* An image file that must be rejected, and a piece of the message it must give. */
typedef struct {
    const char *text;
    size_t len;  /* 0: strlen(text) */
    const char *message;
} bad_image;

static void test_pnm_broken(void)
{
    static const bad_image cases[] = {
        { "P5\n3 2\n0\n\1\2\3\4\5\6", 0, "img.pgm: maxval 0: expected 1..65535" },
        { "P5\n3 2\n65536\n\1\2\3\4\5\6", 0, "maxval 65536" },
        { "P5\n0 2\n255\n", 0, "img.pgm: width 0: expected 1..32768" },
        { "P5\n40000 2\n255\n", 0, "img.pgm: width 40000: expected 1..32768" },
        { "P5\n2 40000\n255\n", 0, "img.pgm: height 40000" },
        { "P5\n32768 32768\n255\n", 0, "pixels" },
        { "P5\n3 2\n255\n\1\2\3\4\5", 0, "pixel data: expected 6 bytes, found 5" },
        { "P5\n3 2\n255\n\1\2\3\4\5", 0, "truncated" },
        { "P5\n3 2\n255", 0, "found the end of the file" },
        { "P5\n3 2\n255x\1\2\3\4\5\6", 0, "whitespace" },
        { "P5\n3 2\n100\n\1\2\3\4\5\145", 0, "pixel (row 1, column 2)" },
        { "P5\n3 x\n255\n", 0, "height: expected a number" },
        { "P53 2\n255\n\1\2\3\4\5\6", 0, "width: expected a number after whitespace" },
        { "P2\n3 2\n255\n1 2 3 4 5", 0, "expected at least 12 bytes" },
        { "P2\n3 2\n255\n1 2 3 4 5        ", 0, "pixel data: expected a number" },
        { "P2\n3 2\n255\n1 2 3 4 5 256", 0, "found 256" },
        { "P2\n3 2\n255\n1 2 3 4 5-6", 0, "pixel data" },
        { "P6\n2 1\n255\n\1\2\3\4\5", 0, "expected 6 bytes" },
        { "P3\n2 1\n255\n1 2 3 4 5 x", 0, "pixel data" },
        { "P7\nWIDTH 2\n", 0, "magic" },
        { "GIF89a", 0, "img.pgm: magic" },
        { "", 0, "too short" },
        { "P", 0, "magic" },
        { "P5", 0, "width" },
        { "P5 3\0 2 255 ", 12, "height" },
    };
    kiln_tensor_f32 t;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        kiln_status st = kiln_image_read_memory(cases[i].text, len, "img.pgm", 0, &t);
        CHECK(st == KILN_ERR_FORMAT && t.data == NULL && error_has(cases[i].message),
              "image %zu: got '%s', want '%s'", i, kiln_last_error(), cases[i].message);
    }
    const char *good = "P5\n# c\n3 2\n255\n\1\2\3\4\5\6";
    size_t len = strlen(good);
    int rejected = 0;
    for (size_t n = 0; n < len; n++)
        rejected += kiln_image_read_memory(good, n, "img.pgm", 0, &t) == KILN_ERR_FORMAT &&
                    error_has("img.pgm");
    CHECK(rejected == (int)len, "%d of %zu PGM truncations rejected", rejected, len);
    CHECK(kiln_image_read("tio_missing.png", 0, &t) == KILN_ERR_IO &&
          error_has("tio_missing.png"), "missing image: %s", kiln_last_error());
}

static void test_resize(void)
{
    kiln_tensor_f32 in = { 3, { 3, 5, 7 }, 105, NULL }, out;
    in.data = malloc(105 * sizeof(float));
    for (int i = 0; i < 105; i++)
        in.data[i] = 0.37f;
    int sizes[4][2] = { { 11, 4 }, { 1, 1 }, { 5, 7 }, { 40, 33 } };
    for (int k = 0; k < 4; k++) {
        CHECK(kiln_tensor_resize(&in, sizes[k][0], sizes[k][1], &out) == KILN_OK, "resize: %s",
              kiln_last_error());
        int ok = out.ndim == 3 && out.dims[0] == 3 && out.dims[1] == sizes[k][0] &&
                 out.dims[2] == sizes[k][1];
        for (size_t i = 0; ok && i < out.numel; i++)
            ok = check_close(out.data[i], 0.37, 1e-6);
        CHECK(ok, "constant image stays constant at %dx%d", sizes[k][0], sizes[k][1]);
        kiln_tensor_f32_free(&out);
    }
    free(in.data);

    float px[4] = { 0, 1, 2, 3 };
    kiln_tensor_f32 small = { 3, { 1, 2, 2 }, 4, px };
    /* half-pixel centres: source coordinates -0.25 (clamped to 0), 0.25, 0.75, 1.25 (to 1) */
    static const float want[16] = { 0.0f, 0.25f, 0.75f, 1.0f,   0.5f, 0.75f, 1.25f, 1.5f,
                                    1.5f, 1.75f, 2.25f, 2.5f,   2.0f, 2.25f, 2.75f, 3.0f };
    CHECK(kiln_tensor_resize(&small, 4, 4, &out) == KILN_OK, "2x2 -> 4x4: %s",
          kiln_last_error());
    int ok = out.numel == 16 && out.dims[1] == 4 && out.dims[2] == 4;
    for (int i = 0; ok && i < 16; i++)
        ok = check_close(out.data[i], want[i], 1e-6);
    CHECK(ok, "2x2 -> 4x4 matches the hand-computed values");
    kiln_tensor_f32_free(&out);
    CHECK(kiln_tensor_resize(&small, 2, 2, &out) == KILN_OK &&
          memcmp(out.data, px, sizeof px) == 0, "same-size resize is the identity");
    kiln_tensor_f32_free(&out);
    CHECK(kiln_tensor_resize(&small, 1, 1, &out) == KILN_OK && check_close(out.data[0], 1.5, 1e-6),
          "2x2 -> 1x1 averages");
    kiln_tensor_f32_free(&out);
    CHECK(kiln_tensor_resize(&small, 0, 4, &out) == KILN_ERR_ARG && out.data == NULL,
          "height 0 rejected");
    CHECK(kiln_tensor_resize(&small, 4, 4, &small) == KILN_ERR_ARG, "in-place rejected");
    kiln_tensor_f32 flat = { 2, { 2, 2 }, 4, px };
    CHECK(kiln_tensor_resize(&flat, 4, 4, &out) == KILN_ERR_ARG, "2-d input rejected");
}

int main(void)
{
    test_npy_roundtrip();
    test_npy_dtypes();
    test_npy_truncation();
    test_npy_bad_headers();
    test_png_grey();
    test_png_colour();
    test_png_interlaced();
    test_png_broken();
    test_pnm();
    test_pnm_broken();
    test_resize();
    remove_temps();
    return check_report();
}
