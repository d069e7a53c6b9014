/* IDX (MNIST-format) loading: raw or gzip files or memory, validated field by field; the
 * fashion-mnist dataset and IDX directories. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>
#include "core/error.h"
#include "data/layout.h"
#include "kiln/dataset.h"

#define IDX_MAGIC_LABELS  0x00000801u
#define IDX_MAGIC_IMAGES3 0x00000803u
#define IDX_MAGIC_IMAGES4 0x00000804u
#define IDX_MAX_NUMEL     ((uint64_t)INT_MAX)  /* most elements a file may declare */
#define IDX_FIRST_ALLOC   ((size_t)1 << 20)    /* data buffers start here and double */
#define IDX_MAX_STEP      ((size_t)1 << 30)    /* largest single zlib read */
#define FASHION_DIR       "/usr/share/datasets/fashion-mnist"
#define INSTALL_HINT      "install the Debian package dataset-fashion-mnist (scripts/setup-deps)"

/* A byte source: a file through zlib (raw or gzip) or a memory buffer (raw or gzip). */
typedef struct {
    const char *name;        /* file name for messages */
    gzFile gz;               /* file source, or NULL for memory */
    const uint8_t *mem;      /* memory source bytes */
    size_t mem_len, mem_pos; /* its size and read position (compressed bytes when inflating) */
    bool inflating;          /* the memory source is gzip, decoded through zs */
    bool zs_done;            /* the last gzip member of the memory source ended */
    bool cut_short;          /* a gzip stream ended inside a member */
    z_stream zs;             /* inflate state of a gzip memory source */
    uint64_t pos;            /* decoded bytes delivered so far */
} idx_reader;

/* A parsed IDX header. */
typedef struct {
    uint32_t magic;               /* 0x0000TTNN: element type TT, NN dims */
    int ndim;                     /* dims */
    int dims[KILN_IDX_MAX_DIMS];  /* sizes, each in [1, INT_MAX] */
    size_t numel;                 /* product of dims, at most INT_MAX */
} idx_header;

/* Bytes per element of an IDX type byte, or 0 if unknown. */
static int idx_elem_size(int dtype)
{
    switch (dtype) {
    case 0x08: case 0x09: return 1;
    case 0x0b: return 2;
    case 0x0c: case 0x0d: return 4;
    case 0x0e: return 8;
    default: return 0;
    }
}

/* Name of an IDX type byte, or NULL if unknown. */
static const char *idx_type_name(int dtype)
{
    switch (dtype) {
    case 0x08: return "ubyte";
    case 0x09: return "sbyte";
    case 0x0b: return "int16";
    case 0x0c: return "int32";
    case 0x0d: return "float32";
    case 0x0e: return "float64";
    default: return NULL;
    }
}

/* Describes a magic number in words ("ubyte, 3 dims") into buf. */
static const char *describe_magic(uint32_t magic, char *buf, size_t cap)
{
    const char *type = idx_type_name((int)(magic >> 8) & 0xff);
    if (magic >> 16)
        snprintf(buf, cap, "not an IDX file: the first two bytes must be zero");
    else if (type)
        snprintf(buf, cap, "%s, %u dims", type, magic & 0xffu);
    else
        snprintf(buf, cap, "unknown element type 0x%02x, %u dims", (magic >> 8) & 0xffu,
                 magic & 0xffu);
    return buf;
}

/* Big-endian uint32 at p. */
static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Suffix for truncation messages when a gzip stream was cut. */
static const char *cut_note(const idx_reader *r)
{
    return r->cut_short ? " (the gzip stream ends early)" : "";
}

/* Opens a file source; zlib reads gzip or passes raw bytes through. */
static kiln_status reader_open_file(idx_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->name = path;
    errno = 0;
    r->gz = gzopen(path, "rb");
    if (!r->gz)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path,
                          errno ? strerror(errno) : "out of memory");
    gzbuffer(r->gz, 1u << 18);
    return KILN_OK;
}

/* Opens a memory source; gzip if it starts with 1f 8b. */
static kiln_status reader_open_memory(idx_reader *r, const char *name, const void *bytes,
                                      size_t len)
{
    memset(r, 0, sizeof *r);
    r->name = name;
    r->mem = bytes;
    r->mem_len = bytes ? len : 0;
    if (r->mem_len >= 2 && r->mem[0] == 0x1f && r->mem[1] == 0x8b) {
        if (inflateInit2(&r->zs, 16 + MAX_WBITS) != Z_OK)
            return kiln_error(KILN_ERR_NOMEM, "%s: cannot start gzip decoding", name);
        r->inflating = true;
    }
    return KILN_OK;
}

/* Releases a source. */
static void reader_close(idx_reader *r)
{
    if (r->gz)
        gzclose(r->gz);
    if (r->inflating)
        inflateEnd(&r->zs);
    r->gz = NULL;
    r->inflating = false;
}

/* Reports a corrupt or unreadable gzip stream. */
static kiln_status gzip_error(const idx_reader *r, int zerr, const char *msg)
{
    if (zerr == Z_ERRNO)
        return kiln_error(KILN_ERR_IO, "%s: read error after %llu bytes: %s", r->name,
                          (unsigned long long)r->pos, strerror(errno));
    if (zerr == Z_MEM_ERROR)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory decoding gzip", r->name);
    return kiln_error(KILN_ERR_FORMAT, "%s: gzip data: expected a valid deflate stream, found "
                      "corruption after %llu decoded bytes (zlib: %s)", r->name,
                      (unsigned long long)r->pos, msg ? msg : "unknown error");
}

/* Reads up to n bytes (n <= IDX_MAX_STEP) from a file source; 0 at end of data. */
static kiln_status read_file_some(idx_reader *r, uint8_t *buf, size_t n, size_t *got)
{
    int zerr = Z_OK;
    int k = gzread(r->gz, buf, (unsigned)n);
    const char *msg = gzerror(r->gz, &zerr);
    if (k < 0 || (zerr != Z_OK && zerr != Z_BUF_ERROR))
        return gzip_error(r, zerr, msg);
    if (zerr == Z_BUF_ERROR)
        r->cut_short = true;
    *got = (size_t)k;
    return KILN_OK;
}

/* Moves to the next gzip member of a memory source; other trailing bytes end it (as gzread). */
static void next_member(idx_reader *r)
{
    size_t left = r->mem_len - r->mem_pos;
    if (left >= 2 && r->mem[r->mem_pos] == 0x1f && r->mem[r->mem_pos + 1] == 0x8b)
        inflateReset(&r->zs);
    else
        r->zs_done = true;
}

/* Reads up to n bytes (n <= IDX_MAX_STEP) from a gzip memory source; 0 at end of data. */
static kiln_status read_inflate_some(idx_reader *r, uint8_t *buf, size_t n, size_t *got)
{
    z_stream *zs = &r->zs;
    zs->next_out = buf;
    zs->avail_out = (uInt)n;
    while (zs->avail_out > 0 && !r->zs_done) {
        size_t left = r->mem_len - r->mem_pos;
        uInt in = left > IDX_MAX_STEP ? (uInt)IDX_MAX_STEP : (uInt)left;
        zs->next_in = (Bytef *)(uintptr_t)(r->mem + r->mem_pos);
        zs->avail_in = in;
        int ret = inflate(zs, Z_NO_FLUSH);
        r->mem_pos += in - zs->avail_in;
        if (ret == Z_STREAM_END) {
            next_member(r);
        } else if (ret == Z_BUF_ERROR && left == 0) {
            r->cut_short = true;
            break;
        } else if (ret != Z_OK) {
            kiln_status st = gzip_error(r, ret, zs->msg);
            *got = 0;
            return st;
        }
    }
    *got = n - zs->avail_out;
    return KILN_OK;
}

/* Reads up to n bytes (n <= IDX_MAX_STEP) from a raw memory source; 0 at end of data. */
static kiln_status read_memory_some(idx_reader *r, uint8_t *buf, size_t n, size_t *got)
{
    size_t left = r->mem_len - r->mem_pos;
    *got = n < left ? n : left;
    if (*got)
        memcpy(buf, r->mem + r->mem_pos, *got);
    r->mem_pos += *got;
    return KILN_OK;
}

/* Reads n bytes, or fewer only at end of data; *got says how many. */
static kiln_status reader_read(idx_reader *r, void *buf, size_t n, size_t *got)
{
    uint8_t *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got > IDX_MAX_STEP ? IDX_MAX_STEP : n - *got, k = 0;
        kiln_status st = r->gz ? read_file_some(r, p + *got, want, &k)
                       : r->inflating ? read_inflate_some(r, p + *got, want, &k)
                       : read_memory_some(r, p + *got, want, &k);
        if (st)
            return st;
        if (k == 0)
            break;
        *got += k;
        r->pos += k;
    }
    return KILN_OK;
}

/* Reads the 4-byte magic. */
static kiln_status read_magic(idx_reader *r, uint32_t *magic)
{
    uint8_t b[4];
    size_t got;
    *magic = 0;
    kiln_status st = reader_read(r, b, 4, &got);
    if (st)
        return st;
    if (got < 4)
        return kiln_error(KILN_ERR_FORMAT, "%s: truncated: expected a 4-byte header magic, "
                          "found %zu bytes%s", r->name, got, cut_note(r));
    *magic = load_be32(b);
    return KILN_OK;
}

/* Formats dims as "60000 x 28 x 28" into buf. */
static const char *format_dims(const uint32_t *dims, int ndim, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && len < cap; i++) {
        int k = snprintf(buf + len, cap - len, i ? " x %u" : "%u", dims[i]);
        len += k > 0 ? (size_t)k : 0;
    }
    return buf;
}

/* Checks each dim is positive and their product at most IDX_MAX_NUMEL; fills h. */
static kiln_status check_dims(const idx_reader *r, const uint32_t *dims, idx_header *h)
{
    uint64_t numel = 1;
    double exact = 1.0;
    char text[160];
    for (int i = 0; i < h->ndim; i++) {
        if (dims[i] == 0)
            return kiln_error(KILN_ERR_FORMAT, "%s: header dim %d of %d: expected a positive "
                              "size, found 0 (dims %s)", r->name, i, h->ndim,
                              format_dims(dims, h->ndim, text, sizeof text));
        exact *= dims[i];
        if (numel <= IDX_MAX_NUMEL)
            numel *= dims[i];
    }
    if (numel > IDX_MAX_NUMEL)
        return kiln_error(KILN_ERR_FORMAT, "%s: header dims %s: expected at most %llu elements "
                          "in total, found %.0f", r->name,
                          format_dims(dims, h->ndim, text, sizeof text),
                          (unsigned long long)IDX_MAX_NUMEL, exact);
    for (int i = 0; i < h->ndim; i++)
        h->dims[i] = (int)dims[i];
    h->numel = (size_t)numel;
    return KILN_OK;
}

/* Reads and validates the dims that follow the magic (ndim already set in h). */
static kiln_status read_dims(idx_reader *r, idx_header *h)
{
    uint8_t b[4 * KILN_IDX_MAX_DIMS];
    uint32_t dims[KILN_IDX_MAX_DIMS];
    size_t need = 4 * (size_t)h->ndim, got;
    kiln_status st = reader_read(r, b, need, &got);
    if (st)
        return st;
    if (got < need)
        return kiln_error(KILN_ERR_FORMAT, "%s: truncated: expected %zu bytes of header dims "
                          "(%d dims), found %zu%s", r->name, need, h->ndim, got, cut_note(r));
    for (int i = 0; i < h->ndim; i++)
        dims[i] = load_be32(b + 4 * i);
    return check_dims(r, dims, h);
}

/* Reads a header whose magic must be one of magics[0..n_magics); expect words them. */
static kiln_status read_header_expect(idx_reader *r, const uint32_t *magics, int n_magics,
                                      const char *expect, idx_header *h)
{
    char found[96];
    kiln_status st = read_magic(r, &h->magic);
    if (st)
        return st;
    bool ok = false;
    for (int i = 0; i < n_magics; i++)
        ok = ok || h->magic == magics[i];
    if (!ok)
        return kiln_error(KILN_ERR_FORMAT, "%s: header magic: expected %s, found 0x%08x (%s)",
                          r->name, expect, h->magic,
                          describe_magic(h->magic, found, sizeof found));
    h->ndim = (int)(h->magic & 0xff);
    return read_dims(r, h);
}

/* Reads a header of any element type and 1..KILN_IDX_MAX_DIMS dims. */
static kiln_status read_header_any(idx_reader *r, idx_header *h)
{
    kiln_status st = read_magic(r, &h->magic);
    if (st)
        return st;
    int dtype = (int)(h->magic >> 8) & 0xff;
    h->ndim = (int)(h->magic & 0xff);
    if (h->magic >> 16)
        return kiln_error(KILN_ERR_FORMAT, "%s: header magic: expected 0x0000TTNN (two zero "
                          "bytes, type, dims), found 0x%08x (not an IDX file)", r->name,
                          h->magic);
    if (!idx_elem_size(dtype))
        return kiln_error(KILN_ERR_FORMAT, "%s: header magic 0x%08x: element type: expected "
                          "0x08 (ubyte), 0x09 (sbyte), 0x0b (int16), 0x0c (int32), 0x0d "
                          "(float32) or 0x0e (float64), found 0x%02x", r->name, h->magic,
                          dtype);
    if (h->ndim < 1 || h->ndim > KILN_IDX_MAX_DIMS)
        return kiln_error(KILN_ERR_FORMAT, "%s: header magic 0x%08x: dims: expected 1 to %d, "
                          "found %d", r->name, h->magic, KILN_IDX_MAX_DIMS, h->ndim);
    return read_dims(r, h);
}

/* Grows buf to the next capacity toward n (doubling). */
static kiln_status grow(const idx_reader *r, uint8_t **buf, size_t *cap, size_t n)
{
    size_t next = *cap > n / 2 ? n : *cap * 2;
    uint8_t *p = realloc(*buf, next);
    if (!p)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu bytes of data", r->name,
                          next);
    *buf = p;
    *cap = next;
    return KILN_OK;
}

/* Reads exactly n data bytes into a new buffer that grows as data arrives, so a lying header
 * cannot force a huge allocation; what names the data in messages. */
static kiln_status read_data(idx_reader *r, size_t n, const char *what, uint8_t **out)
{
    size_t cap = n < IDX_FIRST_ALLOC ? n : IDX_FIRST_ALLOC, have = 0, got = 0;
    uint8_t *buf = malloc(cap);
    kiln_status st = buf ? KILN_OK : kiln_error(KILN_ERR_NOMEM, "%s: out of memory", r->name);
    while (!st) {
        st = reader_read(r, buf + have, cap - have, &got);
        have += got;
        if (st || have < cap || cap == n)
            break;
        st = grow(r, &buf, &cap, n);
    }
    if (!st && have < n)
        st = kiln_error(KILN_ERR_FORMAT, "%s: truncated: expected %zu bytes of %s after the "
                        "header, found %zu%s", r->name, n, what, have, cut_note(r));
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    return KILN_OK;
}

/* Checks nothing follows the data, including a cut-off gzip trailer. */
static kiln_status check_end(idx_reader *r, const char *what)
{
    uint8_t tmp[16384];
    uint64_t end = r->pos, extra = 0;
    size_t got;
    kiln_status st;
    while (!(st = reader_read(r, tmp, sizeof tmp, &got)) && got > 0)
        extra += got;
    if (st)
        return st;
    if (extra)
        return kiln_error(KILN_ERR_FORMAT, "%s: trailing data: expected end of file after %llu "
                          "bytes (header and %s), found %llu more bytes", r->name,
                          (unsigned long long)end, what, (unsigned long long)extra);
    if (r->cut_short)
        return kiln_error(KILN_ERR_FORMAT, "%s: truncated: expected the gzip trailer after "
                          "%llu bytes of data, found the end of the file", r->name,
                          (unsigned long long)end);
    return KILN_OK;
}

/* Reads the image and label headers and checks they agree on the example count. */
static kiln_status read_pair_headers(idx_reader *ri, idx_reader *rl, idx_header *hi,
                                     idx_header *hl)
{
    static const uint32_t image_magics[] = { IDX_MAGIC_IMAGES3, IDX_MAGIC_IMAGES4 };
    static const uint32_t label_magics[] = { IDX_MAGIC_LABELS };
    kiln_status st = read_header_expect(ri, image_magics, 2, "0x00000803 (ubyte, 3 dims) or "
                                        "0x00000804 (ubyte, 4 dims)", hi);
    if (!st)
        st = read_header_expect(rl, label_magics, 1, "0x00000801 (ubyte, 1 dims)", hl);
    if (!st && hi->dims[0] != hl->dims[0])
        st = kiln_error(KILN_ERR_SHAPE, "%s: example count: expected %d (the label count of "
                        "%s), found %d images", ri->name, hl->dims[0], rl->name, hi->dims[0]);
    return st;
}

/* Max label + 1. */
static int count_classes(const uint8_t *labels, int n)
{
    int max = 0;
    for (int i = 0; i < n; i++)
        max = labels[i] > max ? labels[i] : max;
    return max + 1;
}

/* Loads a dataset from two open sources into out (zeroed on error). */
static kiln_status load_pair(idx_reader *ri, idx_reader *rl, kiln_dataset *out)
{
    idx_header hi = { 0 }, hl = { 0 };
    kiln_dataset d = { 0 };
    kiln_status st = read_pair_headers(ri, rl, &hi, &hl);
    if (!st)
        st = read_data(ri, hi.numel, "pixel data", &d.images);
    if (!st)
        st = check_end(ri, "pixel data");
    if (!st)
        st = read_data(rl, hl.numel, "label data", &d.labels);
    if (!st)
        st = check_end(rl, "label data");
    if (st) {
        kiln_dataset_free(&d);
        return st;
    }
    d.n = hi.dims[0];
    d.c = hi.ndim == 4 ? hi.dims[1] : 1;
    d.h = hi.dims[hi.ndim - 2];
    d.w = hi.dims[hi.ndim - 1];
    d.n_classes = count_classes(d.labels, d.n);
    kiln_layout_describe_images(&d);
    *out = d;
    return KILN_OK;
}

kiln_status kiln_idx_load(const char *images_path, const char *labels_path, kiln_dataset *out)
{
    idx_reader ri, rl;
    if (!out || !images_path || !labels_path)
        return kiln_error(KILN_ERR_ARG, "kiln_idx_load: expected two paths and an output, "
                          "found NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = reader_open_file(&ri, images_path);
    if (st)
        return st;
    st = reader_open_file(&rl, labels_path);
    if (!st)
        st = load_pair(&ri, &rl, out);
    reader_close(&ri);
    reader_close(&rl);
    return st;
}

kiln_status kiln_idx_load_memory(const void *images, size_t images_len, const void *labels,
                                 size_t labels_len, kiln_dataset *out)
{
    idx_reader ri, rl;
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_idx_load_memory: expected an output, found NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = reader_open_memory(&ri, "images", images, images_len);
    if (st)
        return st;
    st = reader_open_memory(&rl, "labels", labels, labels_len);
    if (!st)
        st = load_pair(&ri, &rl, out);
    reader_close(&ri);
    reader_close(&rl);
    return st;
}

/* Fills path with dir/base.gz or dir/base, whichever exists (the .gz first). */
static kiln_status find_file(const char *name, const char *dir, const char *base,
                             const char *hint, char *path, size_t cap)
{
    static const char *const suffixes[] = { ".gz", "" };
    struct stat sb;
    for (int i = 0; i < 2; i++) {
        int k = snprintf(path, cap, "%s/%s%s", dir, base, suffixes[i]);
        if (k < 0 || (size_t)k >= cap)
            return kiln_error(KILN_ERR_ARG, "dataset \"%s\": path %s/%s: expected at most %zu "
                              "characters, found more", name, dir, base, cap - 1);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            return KILN_OK;
    }
    return kiln_error(KILN_ERR_IO, "dataset \"%s\": expected %s/%s or %s.gz, found neither%s",
                      name, dir, base, base, hint);
}

kiln_status kiln_dataset_load(const char *name_or_dir, bool split_train, kiln_dataset *out)
{
    char images[4096], labels[4096], base[64];
    struct stat sb;
    if (!out || !name_or_dir)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load: expected a name and an output, "
                          "found NULL");
    memset(out, 0, sizeof *out);
    bool fashion = strcmp(name_or_dir, "fashion-mnist") == 0;
    const char *dir = fashion ? FASHION_DIR : name_or_dir;
    const char *hint = fashion ? "; " INSTALL_HINT : "";
    const char *split = split_train ? "train" : "t10k";
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kiln_error(KILN_ERR_IO, "dataset \"%s\": expected a known name (fashion-mnist) "
                          "or a directory, found no directory at %s; for fashion-mnist, %s",
                          name_or_dir, dir, INSTALL_HINT);
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
    kiln_status st = find_file(name_or_dir, dir, base, hint, images, sizeof images);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
    if (!st)
        st = find_file(name_or_dir, dir, base, hint, labels, sizeof labels);
    return st ? st : kiln_idx_load(images, labels, out);
}

/* Converts big-endian elements of size elem to host order in place. */
static void to_host_order(uint8_t *p, size_t numel, int elem)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)p; (void)numel; (void)elem;
#else
    for (size_t i = 0; i < numel; i++, p += elem)
        for (int a = 0, b = elem - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
#endif
}

/* Reads a generic tensor from an open source into out. */
static kiln_status read_tensor(idx_reader *r, kiln_idx_tensor *out)
{
    idx_header h = { 0 };
    uint8_t *data = NULL;
    kiln_status st = read_header_any(r, &h);
    int dtype = (int)(h.magic >> 8) & 0xff, elem = idx_elem_size(dtype);
    if (!st && h.numel > SIZE_MAX / (size_t)elem)
        st = kiln_error(KILN_ERR_FORMAT, "%s: size: expected at most %zu bytes, found %zu "
                        "elements of %d bytes", r->name, SIZE_MAX, h.numel, elem);
    if (!st)
        st = read_data(r, h.numel * (size_t)elem, "tensor data", &data);
    if (!st)
        st = check_end(r, "tensor data");
    if (st) {
        free(data);
        return st;
    }
    to_host_order(data, h.numel, elem);
    out->dtype = dtype;
    out->elem_size = elem;
    out->ndim = h.ndim;
    memcpy(out->dims, h.dims, sizeof h.dims);
    out->numel = h.numel;
    out->data = data;
    return KILN_OK;
}

kiln_status kiln_idx_read(const char *path, kiln_idx_tensor *out)
{
    idx_reader r;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_idx_read: expected a path and an output, "
                          "found NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = reader_open_file(&r, path);
    if (!st)
        st = read_tensor(&r, out);
    reader_close(&r);
    return st;
}

kiln_status kiln_idx_read_memory(const void *bytes, size_t len, kiln_idx_tensor *out)
{
    idx_reader r;
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_idx_read_memory: expected an output, found NULL");
    memset(out, 0, sizeof *out);
    kiln_status st = reader_open_memory(&r, "tensor", bytes, len);
    if (!st)
        st = read_tensor(&r, out);
    reader_close(&r);
    return st;
}

void kiln_idx_tensor_free(kiln_idx_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}
