/* Text datasets for byte-level language modelling: one split's bytes held once, example i the
 * non-overlapping window at i * context with the next bytes as targets, gathered on demand. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/error.h"
#include "data/layout.h"

#define TEST_SHARE   20                  /* the last len / TEST_SHARE bytes are the test split */
#define FIRST_ALLOC  ((size_t)1 << 16)   /* buffers for files of unknown size start here */

/* Where a split lies in a text of len bytes. */
static void split_range(size_t len, bool train, size_t *off, size_t *n)
{
    size_t test = len / TEST_SHARE;
    *off = train ? 0 : len - test;
    *n = train ? len - test : test;
}

/* Checks context and the split's length; sets *windows. */
static kiln_status check_split(const char *name, size_t len, int context, bool train,
                               size_t split_len, int *windows)
{
    if (context < 1)
        return kiln_error(KILN_ERR_ARG, "%s: context: expected a window of at least 1 byte, "
                          "found %d (set --context)", name, context);
    if (split_len < (size_t)context + 1)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s split: expected at least %lld bytes (context "
                          "%d + 1 for the last target), found %zu (the text has %zu bytes; the "
                          "last 5%% are the test split)", name, train ? "training" : "test",
                          (long long)context + 1, context, split_len, len);
    size_t n = (split_len - 1) / (size_t)context;
    if (n > INT_MAX)
        return kiln_error(KILN_ERR_FORMAT, "%s: %s split: expected at most %d windows of %d "
                          "bytes, found %zu", name, train ? "training" : "test", INT_MAX,
                          context, n);
    *windows = (int)n;
    return KILN_OK;
}

/* Fills in a text dataset around its split's bytes (taken). */
static void build(uint8_t *bytes, size_t len, int context, int windows, kiln_dataset *out)
{
    const int64_t dims[1] = { context };
    memset(out, 0, sizeof *out);
    out->kind = KILN_DATA_TEXT;
    out->n = windows;
    out->n_classes = 256;
    kiln_layout_set(&out->input, 1, dims, KILN_DT_U8, KILN_DT_I32);
    kiln_layout_set(&out->target, 1, dims, KILN_DT_U8, KILN_DT_I32);
    kiln_layout_model_shape(out);
    out->text = bytes;
    out->text_len = len;
}

kiln_status kiln_dataset_load_text_memory(const void *bytes, size_t len, const char *name,
                                          int context, bool train, kiln_dataset *out)
{
    size_t off, n;
    int windows;
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load_text_memory: out is NULL");
    memset(out, 0, sizeof *out);
    name = name ? name : "text";
    if (!bytes && len)
        return kiln_error(KILN_ERR_ARG, "%s: buffer is NULL", name);
    split_range(len, train, &off, &n);
    kiln_status st = check_split(name, len, context, train, n, &windows);
    if (st)
        return st;
    uint8_t *copy = malloc(n);
    if (!copy)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu bytes", name, n);
    memcpy(copy, (const uint8_t *)bytes + off, n);
    build(copy, n, context, windows, out);
    return KILN_OK;
}

/* Reads a stream of unknown size (a pipe) to its end into a new buffer. */
static kiln_status read_stream(FILE *fp, const char *path, uint8_t **buf, size_t *len)
{
    size_t cap = FIRST_ALLOC, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n, fp);
        if (n < cap)
            break;
        uint8_t *grown = cap <= SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
        if (!grown)
            free(b);
        b = grown;
        cap *= 2;
    }
    if (!b)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
    if (ferror(fp)) {
        free(b);
        return kiln_error(KILN_ERR_IO, "%s: read error: %s", path, strerror(errno));
    }
    *buf = b;
    *len = n;
    return KILN_OK;
}

/* Reads the split of a regular file of size bytes straight from its place in the file. */
static kiln_status read_split(FILE *fp, const char *path, size_t size, int context, bool train,
                              kiln_dataset *out)
{
    size_t off, n;
    int windows;
    split_range(size, train, &off, &n);
    kiln_status st = check_split(path, size, context, train, n, &windows);
    if (st)
        return st;
    uint8_t *buf = malloc(n);
    if (!buf)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
    size_t got = 0;
    if (fseeko(fp, (off_t)off, SEEK_SET) == 0)
        got = fread(buf, 1, n, fp);
    if (got < n) {
        free(buf);
        return kiln_error(KILN_ERR_IO, "%s: read error: expected %zu bytes at offset %zu, found "
                          "%zu%s%s", path, n, off, got, ferror(fp) ? ": " : " (the file shrank)",
                          ferror(fp) ? strerror(errno) : "");
    }
    build(buf, n, context, windows, out);
    return KILN_OK;
}

kiln_status kiln_dataset_load_text(const char *path, int context, bool train, kiln_dataset *out)
{
    struct stat sb;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_dataset_load_text: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    kiln_status st;
    if (fstat(fileno(fp), &sb) != 0) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot read: it is a directory", path);
    } else if (S_ISREG(sb.st_mode)) {
        st = read_split(fp, path, (size_t)sb.st_size, context, train, out);
    } else {
        uint8_t *all = NULL;
        size_t len = 0;
        st = read_stream(fp, path, &all, &len);
        if (!st)
            st = kiln_dataset_load_text_memory(all, len, path, context, train, out);
        free(all);
    }
    fclose(fp);
    return st;
}
