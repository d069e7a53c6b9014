/* IDX loading: synthetic raw and gzip files, every corruption class, memory sources, generic
 * tensors, gather scaling and (when installed) Fashion-MNIST itself. */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include "check.h"
#include "kiln/dataset.h"

/* A byte buffer. */
typedef struct {
    uint8_t *p;  /* bytes */
    size_t n;    /* length */
} bytes;

static char tmp_names[64][128];  /* temp files created, removed at exit */
static int n_tmp;

/* A unique temp file name in the cwd for tag (remembered for cleanup). */
static const char *tmp_name(const char *tag)
{
    char name[128];
    snprintf(name, sizeof name, "kiln_test_idx_%ld_%s", (long)getpid(), tag);
    for (int i = 0; i < n_tmp; i++)
        if (strcmp(tmp_names[i], name) == 0)
            return tmp_names[i];
    memcpy(tmp_names[n_tmp], name, sizeof name);
    return tmp_names[n_tmp++];
}

/* Writes b to path raw, or gzip-compressed when gz. */
static void write_file(const char *path, bytes b, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        CHECK(f && gzwrite(f, b.p, (unsigned)b.n) == (int)b.n && gzclose(f) == Z_OK,
              "gzip write %s", path);
        return;
    }
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b.p, 1, b.n, f) == b.n && fclose(f) == 0, "write %s", path);
}

/* Reads a whole file (caller frees p). */
static bytes slurp(const char *path)
{
    bytes b = { 0 };
    FILE *f = fopen(path, "rb");
    if (!f)
        return b;
    fseek(f, 0, SEEK_END);
    b.n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b.p = malloc(b.n ? b.n : 1);
    CHECK(fread(b.p, 1, b.n, f) == b.n, "read %s", path);
    fclose(f);
    return b;
}

/* The gzip encoding of b (via a temp file). */
static bytes gzip_bytes(bytes b)
{
    const char *path = tmp_name("gzscratch");
    write_file(path, b, 1);
    return slurp(path);
}

/* Big-endian u32 store. */
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An IDX file: magic, ndim dims, then data. */
static bytes make_idx(uint32_t magic, const uint32_t *dims, int ndim, const void *data,
                      size_t data_len)
{
    bytes b = { malloc(4 + 4 * (size_t)ndim + data_len + 1), 4 + 4 * (size_t)ndim + data_len };
    put_be32(b.p, magic);
    for (int i = 0; i < ndim; i++)
        put_be32(b.p + 4 + 4 * i, dims[i]);
    if (data_len)
        memcpy(b.p + 4 + 4 * ndim, data, data_len);
    return b;
}

/* A copy of b's first n bytes, plus extra bytes of 0xab. */
static bytes resize(bytes b, size_t n, size_t extra)
{
    bytes r = { malloc(n + extra + 1), n + extra };
    memcpy(r.p, b.p, n < b.n ? n : b.n);
    memset(r.p + n, 0xab, extra);
    return r;
}

/* The synthetic set: 5 examples of 4x3, pixels (i*37+11) mod 256, labels 0 3 1 3 2. */
enum { SN = 5, SH = 4, SW = 3 };
static uint8_t s_pix[SN * SH * SW];
static const uint8_t s_lab[SN] = { 0, 3, 1, 3, 2 };
static bytes s_images, s_labels;

/* Builds the synthetic files' bytes. */
static void make_synthetic(void)
{
    static const uint32_t idims[3] = { SN, SH, SW }, ldims[1] = { SN };
    for (int i = 0; i < SN * SH * SW; i++)
        s_pix[i] = (uint8_t)(i * 37 + 11);
    s_images = make_idx(0x803, idims, 3, s_pix, sizeof s_pix);
    s_labels = make_idx(0x801, ldims, 1, s_lab, sizeof s_lab);
}

/* Checks d holds the synthetic set exactly. */
static void check_synthetic(const kiln_dataset *d, const char *what)
{
    CHECK(d->n == SN && d->c == 1 && d->h == SH && d->w == SW, "%s: shape %d %d %d %d", what,
          d->n, d->c, d->h, d->w);
    CHECK(d->n_classes == 4, "%s: n_classes %d", what, d->n_classes);
    CHECK(d->images && memcmp(d->images, s_pix, sizeof s_pix) == 0, "%s: pixels", what);
    CHECK(d->labels && memcmp(d->labels, s_lab, sizeof s_lab) == 0, "%s: labels", what);
}

/* Loads the pair (images, labels) written to files (gz flags each) and from memory (raw bytes
 * or their gzip); returns the file status, checking memory agrees on success and failure. */
static kiln_status load_both(bytes im, int im_gz, bytes lb, int lb_gz, kiln_dataset *d,
                             char *msg, size_t cap)
{
    const char *ip = tmp_name("img"), *lp = tmp_name("lab");
    write_file(ip, im, im_gz);
    write_file(lp, lb, lb_gz);
    kiln_status st = kiln_idx_load(ip, lp, d);
    snprintf(msg, cap, "%s", kiln_last_error());
    bytes gi = im_gz ? gzip_bytes(im) : im, gl = lb_gz ? gzip_bytes(lb) : lb;
    kiln_dataset m;
    kiln_status sm = kiln_idx_load_memory(gi.p, gi.n, gl.p, gl.n, &m);
    CHECK((st == KILN_OK) == (sm == KILN_OK), "memory status %d vs file %d: %s", sm, st,
          kiln_last_error());
    if (st == KILN_OK && sm == KILN_OK)
        CHECK(m.n == d->n && m.n_classes == d->n_classes &&
              memcmp(m.images, d->images, (size_t)d->n * d->c * d->h * d->w) == 0 &&
              memcmp(m.labels, d->labels, (size_t)d->n) == 0, "memory and file loads differ");
    CHECK(sm != KILN_OK || st == KILN_OK || m.images == NULL, "failed memory load left data");
    kiln_dataset_free(&m);
    if (im_gz)
        free(gi.p);
    if (lb_gz)
        free(gl.p);
    return st;
}

/* Expects loading to fail with a message naming the file and containing want. */
static void expect_fail(bytes im, int im_gz, bytes lb, int lb_gz, const char *file_tag,
                        const char *want, const char *what)
{
    kiln_dataset d;
    char msg[1024];
    kiln_status st = load_both(im, im_gz, lb, lb_gz, &d, msg, sizeof msg);
    const char *file = tmp_name(file_tag);
    CHECK(st != KILN_OK, "%s: loaded but should fail", what);
    CHECK(strstr(msg, file) != NULL, "%s: message does not name %s: %s", what, file, msg);
    CHECK(!want || strstr(msg, want) != NULL, "%s: message lacks \"%s\": %s", what, want, msg);
    CHECK(d.images == NULL && d.labels == NULL && d.n == 0, "%s: output not zeroed", what);
    kiln_dataset_free(&d);
}

/* Raw, gzip and mixed files load exactly; so do concatenated gzip members. */
static void test_load_good(void)
{
    char msg[1024];
    for (int mode = 0; mode < 4; mode++) {
        kiln_dataset d;
        kiln_status st = load_both(s_images, mode & 1, s_labels, mode >> 1, &d, msg, sizeof msg);
        CHECK(st == KILN_OK, "mode %d: %s", mode, msg);
        check_synthetic(&d, "synthetic");
        kiln_dataset_free(&d);
        CHECK(d.images == NULL && d.n == 0, "free zeroes");
    }
    /* Two gzip members back to back (gzopen "ab" appends a member). */
    const char *ip = tmp_name("img"), *lp = tmp_name("lab");
    bytes first = resize(s_images, 30, 0), rest = { s_images.p + 30, s_images.n - 30 };
    write_file(ip, first, 1);
    gzFile f = gzopen(ip, "ab");
    CHECK(f && gzwrite(f, rest.p, (unsigned)rest.n) == (int)rest.n && gzclose(f) == Z_OK, "ab");
    write_file(lp, s_labels, 0);
    kiln_dataset d, m;
    CHECK(kiln_idx_load(ip, lp, &d) == KILN_OK, "two members: %s", kiln_last_error());
    check_synthetic(&d, "two gzip members");
    bytes two = slurp(ip);
    CHECK(kiln_idx_load_memory(two.p, two.n, s_labels.p, s_labels.n, &m) == KILN_OK,
          "two members in memory: %s", kiln_last_error());
    check_synthetic(&m, "two gzip members in memory");
    kiln_dataset_free(&d);
    kiln_dataset_free(&m);
    free(two.p);
    free(first.p);
}

/* A 4-D NCHW image file gives c from the file; label 255 gives 256 classes. */
static void test_load_4d(void)
{
    static const uint32_t idims[4] = { 3, 2, 2, 3 }, ldims[1] = { 3 };
    uint8_t pix[36], lab[3] = { 255, 0, 7 };
    char msg[1024];
    for (int i = 0; i < 36; i++)
        pix[i] = (uint8_t)(255 - i);
    bytes im = make_idx(0x804, idims, 4, pix, sizeof pix), lb = make_idx(0x801, ldims, 1, lab, 3);
    kiln_dataset d;
    CHECK(load_both(im, 1, lb, 0, &d, msg, sizeof msg) == KILN_OK, "4-D: %s", msg);
    CHECK(d.n == 3 && d.c == 2 && d.h == 2 && d.w == 3, "4-D shape %d %d %d %d", d.n, d.c, d.h,
          d.w);
    CHECK(d.n_classes == 256, "n_classes %d", d.n_classes);
    CHECK(d.images && memcmp(d.images, pix, 36) == 0 && memcmp(d.labels, lab, 3) == 0, "4-D");
    kiln_dataset_free(&d);
    free(im.p);
    free(lb.p);
}

/* Wrong magics: swapped files, wrong ndim, other dtypes, not IDX at all. */
static void test_bad_magic(void)
{
    expect_fail(s_labels, 0, s_labels, 0, "img", "expected 0x00000803 (ubyte, 3 dims)",
                "labels as images");
    expect_fail(s_labels, 0, s_labels, 0, "img", "found 0x00000801 (ubyte, 1 dims)",
                "labels as images found");
    expect_fail(s_images, 0, s_images, 1, "lab", "expected 0x00000801", "images as labels");
    static const uint32_t magics[] = { 0x802, 0x805, 0x0d03, 0x0703, 0x01000803, 0 };
    static const char *const wants[] = { "ubyte, 2 dims", "ubyte, 5 dims", "float32, 3 dims",
                                         "unknown element type 0x07", "not an IDX file",
                                         "found 0x00000000" };
    for (int i = 0; i < 6; i++) {
        bytes b = resize(s_images, s_images.n, 0);
        put_be32(b.p, magics[i]);
        expect_fail(b, i & 1, s_labels, 0, "img", wants[i], "bad image magic");
        free(b.p);
    }
    bytes text = { (uint8_t *)"hello, world\n", 13 };
    expect_fail(s_images, 0, text, 0, "lab", "header magic", "text as labels");
}

/* Every truncation of either file, raw and gzip, fails naming the file. */
static void test_truncated(void)
{
    for (int which = 0; which < 2; which++) {
        bytes full = which ? s_labels : s_images;
        const char *tag = which ? "lab" : "img";
        for (size_t cut = 0; cut < full.n; cut++)
            for (int gz = 0; gz < 2; gz++) {
                bytes b = resize(full, cut, 0);
                if (which)
                    expect_fail(s_images, 0, b, gz, tag, "truncated", "truncated labels");
                else
                    expect_fail(b, gz, s_labels, 0, tag, "truncated", "truncated images");
                free(b.p);
            }
    }
    bytes b = resize(s_images, s_images.n - 5, 0);
    expect_fail(b, 1, s_labels, 0, "img",
                "expected 60 bytes of pixel data after the header, found 55", "pixel count");
    free(b.p);
}

/* Every cut of the gzip stream itself fails, as does corruption of its body and trailer. */
static void test_gzip_corrupt(void)
{
    bytes gz = gzip_bytes(s_images);
    const char *ip = tmp_name("img"), *lp = tmp_name("lab");
    write_file(lp, s_labels, 0);
    for (size_t cut = 0; cut < gz.n; cut++) {
        bytes b = resize(gz, cut, 0);
        kiln_dataset d, m;
        write_file(ip, b, 0);
        kiln_status st = kiln_idx_load(ip, lp, &d);
        CHECK(st != KILN_OK && strstr(kiln_last_error(), ip), "gzip cut at %zu: %s", cut,
              kiln_last_error());
        st = kiln_idx_load_memory(b.p, b.n, s_labels.p, s_labels.n, &m);
        CHECK(st != KILN_OK && strstr(kiln_last_error(), "images"), "memory gzip cut at %zu",
              cut);
        kiln_dataset_free(&d);
        kiln_dataset_free(&m);
        free(b.p);
    }
    /* Flip each byte after the 10-byte header: must fail, unless only padding bits changed. */
    int failures = 0;
    for (size_t at = 10; at < gz.n; at++) {
        bytes b = resize(gz, gz.n, 0);
        kiln_dataset d;
        b.p[at] ^= 0xff;
        write_file(ip, b, 0);
        kiln_status st = kiln_idx_load(ip, lp, &d);
        if (st == KILN_OK)
            CHECK(memcmp(d.images, s_pix, sizeof s_pix) == 0, "corrupt byte %zu loaded", at);
        else
            CHECK(strstr(kiln_last_error(), ip) != NULL, "flip %zu: %s", at, kiln_last_error());
        failures += st != KILN_OK;
        kiln_dataset_free(&d);
        free(b.p);
    }
    CHECK(failures >= (int)gz.n - 12, "only %d of %zu flips failed", failures, gz.n - 10);
    bytes b = resize(gz, gz.n, 0);
    b.p[gz.n - 6] ^= 0x01;  /* CRC-32 trailer */
    write_file(ip, b, 0);
    kiln_dataset d;
    CHECK(kiln_idx_load(ip, lp, &d) != KILN_OK && strstr(kiln_last_error(), "gzip"),
          "bad crc: %s", kiln_last_error());
    free(b.p);
    free(gz.p);
}

/* Count mismatch, zero and absurd dims, trailing bytes. */
static void test_bad_fields(void)
{
    static const uint32_t ldims4[1] = { 4 };
    bytes l4 = make_idx(0x801, ldims4, 1, s_lab, 4);
    expect_fail(s_images, 0, l4, 1, "img", "example count: expected 4", "count mismatch");
    expect_fail(s_images, 1, l4, 0, "lab", "found 5 images", "count mismatch names labels");
    free(l4.p);
    for (int i = 0; i < 3; i++) {
        bytes b = resize(s_images, s_images.n, 0);
        put_be32(b.p + 4 + 4 * i, 0);
        expect_fail(b, i == 1, s_labels, 0, "img", "expected a positive size, found 0", "zero");
        free(b.p);
    }
    static const uint32_t huge[][3] = { { 70000, 28000, 28000 }, { 5, 0xffffffffu, 0xffffffffu },
                                        { 0x80000000u, 1, 1 } };
    for (int i = 0; i < 3; i++) {
        bytes b = resize(s_images, s_images.n, 0);
        for (int k = 0; k < 3; k++)
            put_be32(b.p + 4 + 4 * k, huge[i][k]);
        expect_fail(b, 0, s_labels, 0, "img", "expected at most 2147483647 elements", "huge");
        free(b.p);
    }
    for (int gz = 0; gz < 2; gz++) {
        bytes b = resize(s_images, s_images.n, 1), c = resize(s_labels, s_labels.n, 100);
        expect_fail(b, gz, s_labels, 0, "img", "trailing data: expected end of file after 76 "
                    "bytes (header and pixel data), found 1 more bytes", "trailing image byte");
        expect_fail(s_images, 0, c, gz, "lab", "found 100 more bytes", "trailing labels");
        free(b.p);
        free(c.p);
    }
}

/* Missing files and directories, a dataset directory with mixed raw and gzip files. */
static void test_dataset_dir(void)
{
    kiln_dataset d;
    CHECK(kiln_idx_load("kiln_no_such_file", tmp_name("lab"), &d) == KILN_ERR_IO &&
          strstr(kiln_last_error(), "kiln_no_such_file"), "missing: %s", kiln_last_error());
    CHECK(kiln_dataset_load("/nonexistent/kiln-data", true, &d) == KILN_ERR_IO &&
          strstr(kiln_last_error(), "dataset-fashion-mnist"), "no dir: %s", kiln_last_error());
    char dir[128], path[256];
    snprintf(dir, sizeof dir, "kiln_test_idx_%ld_dir", (long)getpid());
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    static const char *const names[4] = { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz" };
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        write_file(path, i & 1 ? s_labels : s_images, strstr(names[i], ".gz") != NULL);
    }
    for (int split = 0; split < 2; split++) {
        CHECK(kiln_dataset_load(dir, split, &d) == KILN_OK, "dir split %d: %s", split,
              kiln_last_error());
        check_synthetic(&d, "dataset dir");
        kiln_dataset_free(&d);
    }
    snprintf(path, sizeof path, "%s/%s", dir, names[3]);
    remove(path);
    CHECK(kiln_dataset_load(dir, false, &d) != KILN_OK &&
          strstr(kiln_last_error(), "t10k-labels-idx1-ubyte"), "missing labels: %s",
          kiln_last_error());
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        remove(path);
    }
    CHECK(rmdir(dir) == 0, "rmdir %s", dir);
}

/* Generic tensors: element types converted from big-endian; unknown types rejected. */
static void test_generic(void)
{
    static const uint32_t dims[2] = { 2, 3 };
    uint8_t f32[24], i16[12], f64[48];
    const float fv[6] = { 0.5f, -1.25f, 3e10f, 0.0f, -0.0f, 7.0f };
    for (int i = 0; i < 6; i++) {
        uint32_t u;
        uint64_t v;
        double dv = fv[i] * 2.0;
        memcpy(&u, &fv[i], 4);
        put_be32(f32 + 4 * i, u);
        i16[2 * i] = (uint8_t)((-300 + 200 * i) >> 8 & 0xff);
        i16[2 * i + 1] = (uint8_t)((-300 + 200 * i) & 0xff);
        memcpy(&v, &dv, 8);
        put_be32(f64 + 8 * i, (uint32_t)(v >> 32));
        put_be32(f64 + 8 * i + 4, (uint32_t)v);
    }
    kiln_idx_tensor t;
    bytes b = make_idx(0x0d02, dims, 2, f32, 24);
    const char *p = tmp_name("tensor");
    write_file(p, b, 1);
    CHECK(kiln_idx_read(p, &t) == KILN_OK && t.dtype == 0x0d && t.ndim == 2 && t.dims[0] == 2 &&
          t.dims[1] == 3 && t.numel == 6 && memcmp(t.data, fv, 24) == 0, "float32: %s",
          kiln_last_error());
    kiln_idx_tensor_free(&t);
    free(b.p);
    b = make_idx(0x0b02, dims, 2, i16, 12);
    CHECK(kiln_idx_read_memory(b.p, b.n, &t) == KILN_OK && t.elem_size == 2, "int16: %s",
          kiln_last_error());
    for (int i = 0; t.data && i < 6; i++)
        CHECK(((int16_t *)t.data)[i] == -300 + 200 * i, "int16[%d] %d", i,
              ((int16_t *)t.data)[i]);
    kiln_idx_tensor_free(&t);
    free(b.p);
    b = make_idx(0x0e02, dims, 2, f64, 48);
    CHECK(kiln_idx_read_memory(b.p, b.n, &t) == KILN_OK && ((double *)t.data)[1] == -2.5,
          "float64: %s", kiln_last_error());
    kiln_idx_tensor_free(&t);
    put_be32(b.p, 0x0702);
    CHECK(kiln_idx_read_memory(b.p, b.n, &t) != KILN_OK &&
          strstr(kiln_last_error(), "element type") && strstr(kiln_last_error(), "found 0x07"),
          "unknown type: %s", kiln_last_error());
    put_be32(b.p, 0x0e00);
    CHECK(kiln_idx_read_memory(b.p, b.n, &t) != KILN_OK && strstr(kiln_last_error(), "dims"),
          "0 dims: %s", kiln_last_error());
    CHECK(t.data == NULL, "failed read left data");
    free(b.p);
}

/* Gather scales every pixel value by 1/255 exactly into [0,1] and copies labels. */
static void test_gather(void)
{
    uint8_t pix[2 * 256], lab[2] = { 4, 9 };
    for (int i = 0; i < 512; i++)
        pix[i] = (uint8_t)(i < 256 ? i : 511 - i);
    kiln_dataset d = { .n = 2, .c = 1, .h = 16, .w = 16, .n_classes = 10, .images = pix,
                       .labels = lab };
    int idx[3] = { 1, 0, 1 }, y[3];
    float x[3 * 256];
    kiln_dataset_gather(&d, idx, 3, x, y);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 256; j++) {
            float v = x[i * 256 + j];
            int p = pix[idx[i] * 256 + j];
            bad += !(v >= 0.0f && v <= 1.0f && fabs(v - p / 255.0) < 1e-7);
        }
    CHECK(bad == 0, "%d gathered values off", bad);
    CHECK(x[0] == 1.0f && x[256] == 0.0f && x[256 + 255] == 1.0f, "ends %g %g", x[0], x[256]);
    CHECK(y[0] == 9 && y[1] == 4 && y[2] == 9, "labels %d %d %d", y[0], y[1], y[2]);
}

/* Fashion-MNIST, when installed: sizes, shape, balanced classes, gather. */
static void test_fashion(void)
{
    struct stat sb;
    if (stat("/usr/share/datasets/fashion-mnist", &sb) != 0) {
        printf("fashion-mnist not installed; skipping its checks\n");
        return;
    }
    for (int split = 1; split >= 0; split--) {
        kiln_dataset d;
        int want = split ? 60000 : 10000, hist[256] = { 0 };
        CHECK(kiln_dataset_load("fashion-mnist", split, &d) == KILN_OK, "fashion split %d: %s",
              split, kiln_last_error());
        CHECK(d.n == want && d.c == 1 && d.h == 28 && d.w == 28 && d.n_classes == 10,
              "fashion shape %d %d %d %d, %d classes", d.n, d.c, d.h, d.w, d.n_classes);
        for (int i = 0; i < d.n; i++)
            hist[d.labels[i]]++;
        for (int k = 0; k < 10; k++)
            CHECK(hist[k] == want / 10, "split %d class %d has %d", split, k, hist[k]);
        if (d.n == want) {
            int idx[2] = { 0, want - 1 }, y[2];
            float x[2 * 784];
            kiln_dataset_gather(&d, idx, 2, x, y);
            int bad = 0;
            for (int j = 0; j < 784; j++)
                bad += fabs(x[784 + j] - d.images[(size_t)(want - 1) * 784 + j] / 255.0) > 1e-7;
            CHECK(bad == 0 && y[0] == d.labels[0] && y[1] == d.labels[want - 1], "gather");
        }
        kiln_dataset_free(&d);
    }
}

int main(void)
{
    make_synthetic();
    test_load_good();
    test_load_4d();
    test_bad_magic();
    test_truncated();
    test_gzip_corrupt();
    test_bad_fields();
    test_dataset_dir();
    test_generic();
    test_gather();
    test_fashion();
    for (int i = 0; i < n_tmp; i++)
        remove(tmp_names[i]);
    free(s_images.p);
    free(s_labels.p);
    return check_report();
}
