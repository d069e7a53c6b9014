/* NumPy .npy arrays: read from files or memory (format versions 1.0, 2.0 and 3.0; several
 * dtypes converted to float32) with every header field validated, and written atomically as
 * float32. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* fileno, fdopen, fsync, O_CLOEXEC */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/error.h"
#include "io/atomic_file.h"
#include "kiln/tensor_io.h"

#define NPY_MAGIC      "\x93NUMPY"
#define NPY_MAGIC_LEN  6
#define NPY_MAX_HEADER ((uint64_t)1 << 20)  /* longest header dict accepted */
#define NPY_CHUNK      ((size_t)1 << 14)    /* bytes converted per step when reading a file */
#define NPY_ALIGN      64                   /* written headers end on this boundary */
#define NPY_SHOW       60                   /* most characters of a value quoted in messages */

/* Element types a file may hold. */
typedef enum { NPY_F4, NPY_F8, NPY_I4, NPY_I8, NPY_U1 } npy_dtype;

/* A descr string accepted in a header and what it means. */
typedef struct {
    const char *descr;  /* as written in the header, without quotes */
    npy_dtype type;     /* element type */
    int size;           /* bytes per element */
} npy_type_info;

static const npy_type_info npy_types[] = {
    { "<f4", NPY_F4, 4 }, { "<f8", NPY_F8, 8 }, { "<i4", NPY_I4, 4 }, { "<i8", NPY_I8, 8 },
    { "|u1", NPY_U1, 1 }, { "<u1", NPY_U1, 1 }, { ">u1", NPY_U1, 1 },
};
#define NPY_N_TYPES (sizeof npy_types / sizeof npy_types[0])
#define NPY_TYPE_LIST "'<f4', '<f8', '<i4', '<i8' or '|u1'"

/* A byte source: a file or a memory buffer. */
typedef struct {
    const char *name;     /* file name for messages */
    FILE *fp;             /* file source, or NULL for memory */
    const uint8_t *mem;   /* memory source bytes */
    uint64_t size;        /* total bytes, when size_known */
    bool size_known;      /* memory, or a regular file */
    uint64_t pos;         /* bytes consumed so far */
} npy_src;

/* A piece of the header text. */
typedef struct {
    const char *p;  /* first character */
    size_t n;       /* length */
} npy_span;

/* What a header declares. */
typedef struct {
    const npy_type_info *type;           /* element type */
    int ndim;                            /* dims */
    int64_t dims[KILN_TENSOR_MAX_DIMS];  /* sizes */
    uint64_t numel;                      /* product of dims */
    bool seen_descr, seen_order, seen_shape;
} npy_header;

/* Little-endian uint32 at p. */
static uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Little-endian uint64 at p. */
static uint64_t load_le64(const uint8_t *p)
{
    return (uint64_t)load_le32(p) | (uint64_t)load_le32(p + 4) << 32;
}

/* Copies text[0..n) into buf for a message: non-printable bytes become \xNN, long text is cut
 * with "...". */
static const char *quote(char *buf, size_t cap, const char *text, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        if (i == NPY_SHOW) {
            o += (size_t)snprintf(buf + o, cap - o, "...");
            break;
        }
        if (c >= 0x20 && c < 0x7f)
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = '\0';
    return buf;
}

/* Formats a shape as a Python tuple ("(3, 4)", "(5,)", "()") into buf. */
static const char *shape_text(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
    return buf;
}

/* Bytes a source of known size has left. */
static uint64_t src_left(const npy_src *s)
{
    return s->pos < s->size ? s->size - s->pos : 0;
}

/* Reads up to n bytes from a source; fewer only at its end or on a read error. */
static size_t src_read(npy_src *s, void *buf, size_t n)
{
    size_t got;
    if (s->fp) {
        got = fread(buf, 1, n, s->fp);
    } else {
        uint64_t left = src_left(s);
        got = (uint64_t)n < left ? n : (size_t)left;
        if (got)
            memcpy(buf, s->mem + s->pos, got);
    }
    s->pos += got;
    return got;
}

/* The error for a short read: an I/O error if the file failed, else a truncation. */
static kiln_status short_read(const npy_src *s, const char *what, uint64_t want, uint64_t got)
{
    if (s->fp && ferror(s->fp))
        return kiln_error(KILN_ERR_IO, "%s: read error after %llu bytes: %s", s->name,
                          (unsigned long long)s->pos, strerror(errno));
    return kiln_error(KILN_ERR_FORMAT, "%s: %s: expected %llu bytes, found %llu (the file is "
                      "truncated)", s->name, what, (unsigned long long)want,
                      (unsigned long long)got);
}

/* Reads and checks magic, version and header length. */
static kiln_status read_preamble(npy_src *s, uint64_t *header_len)
{
    uint8_t pre[12];
    char shown[64];
    size_t got = src_read(s, pre, 8);
    size_t cmp = got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN;
    if (memcmp(pre, NPY_MAGIC, cmp) != 0 || (got < NPY_MAGIC_LEN && !(s->fp && ferror(s->fp))))
        return kiln_error(KILN_ERR_FORMAT, "%s: magic: expected \\x93NUMPY, found '%s'%s",
                          s->name, quote(shown, sizeof shown, (const char *)pre, cmp),
                          got < NPY_MAGIC_LEN ? " (the file is too short)" : "");
    if (got < 8)
        return short_read(s, "version", 8, got);
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return kiln_error(KILN_ERR_FORMAT, "%s: version: expected 1.0, 2.0 or 3.0, found %d.%d",
                          s->name, major, minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    got = src_read(s, pre + 8, len_bytes);
    if (got < len_bytes)
        return short_read(s, "header length", len_bytes, got);
    *header_len = major == 1 ? (uint64_t)pre[8] | (uint64_t)pre[9] << 8 : load_le32(pre + 8);
    if (*header_len > NPY_MAX_HEADER)
        return kiln_error(KILN_ERR_FORMAT, "%s: header length: expected at most %llu, found %llu",
                          s->name, (unsigned long long)NPY_MAX_HEADER,
                          (unsigned long long)*header_len);
    if (s->size_known && *header_len > src_left(s))
        return kiln_error(KILN_ERR_FORMAT, "%s: header length: expected at most %llu (the bytes "
                          "left in the file), found %llu", s->name,
                          (unsigned long long)src_left(s), (unsigned long long)*header_len);
    return KILN_OK;
}

/* Index of the first non-whitespace character at or after i. */
static size_t skip_ws(const char *t, size_t len, size_t i)
{
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
        i++;
    return i;
}

/* End of the Python literal starting at i: the first ',' or unmatched closing bracket outside
 * brackets and strings (or len). */
static size_t value_end(const char *t, size_t len, size_t i)
{
    int depth = 0;
    for (; i < len; i++) {
        char c = t[i];
        if (c == '\'' || c == '"') {
            const char *close = memchr(t + i + 1, c, len - i - 1);
            if (!close)
                return len;
            i = (size_t)(close - t);
        } else if (c == '(' || c == '[' || c == '{') {
            depth++;
        } else if (c == ')' || c == ']' || c == '}') {
            if (depth-- == 0)
                return i;
        } else if (c == ',' && depth == 0) {
            return i;
        }
    }
    return len;
}

/* Reports a malformed header at position i. */
static kiln_status syntax_error(const char *name, const char *t, size_t len, size_t i,
                                const char *expected)
{
    char shown[NPY_SHOW * 4 + 8];
    if (i >= len)
        return kiln_error(KILN_ERR_FORMAT, "%s: header: expected %s, found the end of the "
                          "header", name, expected);
    return kiln_error(KILN_ERR_FORMAT, "%s: header: expected %s at offset %zu, found '%s'",
                      name, expected, i, quote(shown, sizeof shown, t + i, len - i));
}

/* Reports a bad value of a header key. */
static kiln_status value_error(const char *name, const char *key, const char *expected,
                               npy_span v)
{
    char shown[NPY_SHOW * 4 + 8];
    return kiln_error(KILN_ERR_FORMAT, "%s: header '%s': expected %s, found '%s'", name, key,
                      expected, quote(shown, sizeof shown, v.p, v.n));
}

/* Whether a span holds exactly the text s. */
static bool span_is(npy_span v, const char *s)
{
    return v.n == strlen(s) && memcmp(v.p, s, v.n) == 0;
}

/* Checks the 'descr' value: a quoted supported type string. */
static kiln_status parse_descr(const char *name, npy_span v, npy_header *h)
{
    if (v.n >= 2 && (v.p[0] == '\'' || v.p[0] == '"') && v.p[v.n - 1] == v.p[0]) {
        npy_span inner = { v.p + 1, v.n - 2 };
        for (size_t i = 0; i < NPY_N_TYPES; i++)
            if (span_is(inner, npy_types[i].descr)) {
                h->type = &npy_types[i];
                return KILN_OK;
            }
        for (size_t i = 0; i < NPY_N_TYPES; i++)
            if (inner.n == 3 && inner.p[0] == '>' && npy_types[i].descr[0] == '<' &&
                memcmp(inner.p + 1, npy_types[i].descr + 1, 2) == 0)
                return value_error(name, "descr", "a little-endian type (big-endian data is "
                                   "not supported; convert with astype('<...'))", v);
    }
    return value_error(name, "descr", "one of " NPY_TYPE_LIST, v);
}

/* Checks the 'fortran_order' value: only False (C order) is supported. */
static kiln_status parse_order(const char *name, npy_span v)
{
    if (span_is(v, "False"))
        return KILN_OK;
    if (span_is(v, "True"))
        return value_error(name, "fortran_order", "False (Fortran-order data is not supported; "
                           "save a C-contiguous array)", v);
    return value_error(name, "fortran_order", "True or False", v);
}

/* Parses a non-negative decimal integer (an optional Python 2 'L' suffix allowed) at *i;
 * *big is set if it exceeds KILN_TENSOR_MAX_NUMEL. */
static bool parse_dim(npy_span v, size_t *i, int64_t *out, bool *big)
{
    size_t j = *i;
    int64_t x = 0;
    while (j < v.n && v.p[j] >= '0' && v.p[j] <= '9') {
        if (x <= KILN_TENSOR_MAX_NUMEL)
            x = x * 10 + (v.p[j] - '0');
        j++;
    }
    if (j == *i)
        return false;
    if (j < v.n && v.p[j] == 'L')
        j++;
    *big = x > KILN_TENSOR_MAX_NUMEL;
    *out = x;
    *i = j;
    return true;
}

/* Reports a dimension beyond KILN_TENSOR_MAX_NUMEL. */
static kiln_status dim_error(const char *name, int d, npy_span v)
{
    char shown[NPY_SHOW * 4 + 8];
    return kiln_error(KILN_ERR_FORMAT, "%s: header 'shape': dimension %d: expected at most %lld, "
                      "found a larger number in '%s'", name, d, (long long)KILN_TENSOR_MAX_NUMEL,
                      quote(shown, sizeof shown, v.p, v.n));
}

/* Checks dims against the size limits and sets numel. */
static kiln_status check_numel(const char *name, npy_span v, npy_header *h)
{
    char shown[NPY_SHOW * 4 + 8];
    uint64_t numel = 1;
    bool empty = false;
    for (int d = 0; d < h->ndim; d++)
        empty = empty || h->dims[d] == 0;
    for (int d = 0; d < h->ndim && !empty; d++) {
        numel *= (uint64_t)h->dims[d];
        if (numel > (uint64_t)KILN_TENSOR_MAX_NUMEL)
            return kiln_error(KILN_ERR_FORMAT, "%s: header 'shape': expected at most %lld "
                              "elements, found more in '%s'", name,
                              (long long)KILN_TENSOR_MAX_NUMEL,
                              quote(shown, sizeof shown, v.p, v.n));
    }
    h->numel = empty ? 0 : numel;
    return KILN_OK;
}

/* Checks the 'shape' value: a tuple of non-negative integers ("()", "(5,)", "(3, 4)"). */
static kiln_status parse_shape(const char *name, npy_span v, npy_header *h)
{
    const char *expected = "a tuple of non-negative integers";
    size_t i = 1;
    bool comma = false;
    h->ndim = 0;
    if (v.n < 2 || v.p[0] != '(' || v.p[v.n - 1] != ')')
        return value_error(name, "shape", expected, v);
    for (i = skip_ws(v.p, v.n - 1, i); i < v.n - 1; i = skip_ws(v.p, v.n - 1, i)) {
        int64_t dim;
        bool big;
        if (h->ndim > 0 && !comma)
            return value_error(name, "shape", expected, v);
        if (!parse_dim(v, &i, &dim, &big))
            return value_error(name, "shape", expected, v);
        if (h->ndim == KILN_TENSOR_MAX_DIMS)
            return value_error(name, "shape", "at most 8 dimensions", v);
        if (big)
            return dim_error(name, h->ndim, v);
        h->dims[h->ndim++] = dim;
        i = skip_ws(v.p, v.n - 1, i);
        comma = i < v.n - 1 && v.p[i] == ',';
        i += comma;
    }
    if (h->ndim == 1 && !comma)
        return value_error(name, "shape", "a tuple (a single dimension needs a trailing "
                           "comma, as '(5,)')", v);
    return check_numel(name, v, h);
}

/* Applies one key: value pair of the header dict. */
static kiln_status apply_key(const char *name, npy_span key, npy_span v, npy_header *h)
{
    char shown[NPY_SHOW * 4 + 8];
    bool *seen = span_is(key, "descr") ? &h->seen_descr
               : span_is(key, "fortran_order") ? &h->seen_order
               : span_is(key, "shape") ? &h->seen_shape : NULL;
    if (!seen)
        return kiln_error(KILN_ERR_FORMAT, "%s: header: expected keys 'descr', 'fortran_order' "
                          "and 'shape', found key '%s'", name,
                          quote(shown, sizeof shown, key.p, key.n));
    if (*seen)
        return kiln_error(KILN_ERR_FORMAT, "%s: header: expected each key once, found '%s' "
                          "twice", name, quote(shown, sizeof shown, key.p, key.n));
    *seen = true;
    if (seen == &h->seen_descr)
        return parse_descr(name, v, h);
    if (seen == &h->seen_order)
        return parse_order(name, v);
    return parse_shape(name, v, h);
}

/* Parses one quoted key at *i. */
static bool parse_key(const char *t, size_t len, size_t *i, npy_span *key)
{
    if (*i >= len || (t[*i] != '\'' && t[*i] != '"'))
        return false;
    const char *close = memchr(t + *i + 1, t[*i], len - *i - 1);
    if (!close)
        return false;
    key->p = t + *i + 1;
    key->n = (size_t)(close - key->p);
    *i = (size_t)(close - t) + 1;
    return true;
}

/* Parses one "key: value" entry at *i. */
static kiln_status parse_entry(const char *name, const char *t, size_t len, size_t *i,
                               npy_header *h)
{
    npy_span key, v;
    if (!parse_key(t, len, i, &key))
        return syntax_error(name, t, len, *i, "a quoted key");
    *i = skip_ws(t, len, *i);
    if (*i >= len || t[*i] != ':')
        return syntax_error(name, t, len, *i, "':'");
    *i = skip_ws(t, len, *i + 1);
    size_t end = value_end(t, len, *i);
    v.p = t + *i;
    v.n = end - *i;
    while (v.n > 0 && skip_ws(v.p, v.n, v.n - 1) == v.n)
        v.n--;
    if (v.n == 0)
        return syntax_error(name, t, len, *i, "a value");
    *i = end;
    return apply_key(name, key, v, h);
}

/* Parses the header dict text: the three keys in any order, whitespace, a trailing comma. */
static kiln_status parse_header(const char *name, const char *t, size_t len, npy_header *h)
{
    size_t i = skip_ws(t, len, 0);
    memset(h, 0, sizeof *h);
    if (i >= len || t[i] != '{')
        return syntax_error(name, t, len, i, "a dict starting with '{'");
    for (i = skip_ws(t, len, i + 1); i >= len || t[i] != '}'; i = skip_ws(t, len, i)) {
        kiln_status st = parse_entry(name, t, len, &i, h);
        if (st)
            return st;
        i = skip_ws(t, len, i);
        if (i < len && t[i] == ',')
            i++;
        else if (i >= len || t[i] != '}')
            return syntax_error(name, t, len, i, "',' or '}'");
    }
    i = skip_ws(t, len, i + 1);
    if (i < len)
        return syntax_error(name, t, len, i, "only padding after the dict");
    const char *missing = !h->seen_descr ? "descr" : !h->seen_order ? "fortran_order"
                        : !h->seen_shape ? "shape" : NULL;
    if (missing)
        return kiln_error(KILN_ERR_FORMAT, "%s: header: expected keys 'descr', 'fortran_order' "
                          "and 'shape', found no '%s'", name, missing);
    return KILN_OK;
}

/* Reads the header text and parses it. */
static kiln_status read_header(npy_src *s, npy_header *h)
{
    uint64_t len = 0;
    kiln_status st = read_preamble(s, &len);
    if (st)
        return st;
    char *text = malloc(len ? (size_t)len : 1);
    if (!text)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for a %llu-byte header", s->name,
                          (unsigned long long)len);
    size_t got = src_read(s, text, (size_t)len);
    st = got < len ? short_read(s, "header", len, got) : parse_header(s->name, text, len, h);
    free(text);
    return st;
}

/* The float of the little-endian float32 at p. */
static float get_f4(const uint8_t *p)
{
    uint32_t u = load_le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float of the little-endian float64 at p. */
static float get_f8(const uint8_t *p)
{
    uint64_t u = load_le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return (float)d;
}

/* The float of the little-endian int32 at p. */
static float get_i4(const uint8_t *p)
{
    uint32_t u = load_le32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return (float)v;
}

/* The float of the little-endian int64 at p. */
static float get_i8(const uint8_t *p)
{
    uint64_t u = load_le64(p);
    int64_t v;
    memcpy(&v, &u, sizeof v);
    return (float)v;
}

/* Converts n elements of type t at p to floats (uint8 scaled by 1/255). */
static void convert(const uint8_t *p, size_t n, npy_dtype t, float *out)
{
    switch (t) {
    case NPY_F4:
        for (size_t i = 0; i < n; i++)
            out[i] = get_f4(p + 4 * i);
        break;
    case NPY_F8:
        for (size_t i = 0; i < n; i++)
            out[i] = get_f8(p + 8 * i);
        break;
    case NPY_I4:
        for (size_t i = 0; i < n; i++)
            out[i] = get_i4(p + 4 * i);
        break;
    case NPY_I8:
        for (size_t i = 0; i < n; i++)
            out[i] = get_i8(p + 8 * i);
        break;
    case NPY_U1:
        for (size_t i = 0; i < n; i++)
            out[i] = p[i] / 255.0f;
        break;
    }
}

/* Checks that the data left in a source is exactly what the header declares. */
static kiln_status check_data_len(const npy_src *s, const npy_header *h, uint64_t want)
{
    char shape[256];
    uint64_t left = src_left(s);
    if (!s->size_known || left == want)
        return KILN_OK;
    return kiln_error(KILN_ERR_FORMAT, "%s: data: expected %llu bytes (shape %s of '%s'), found "
                      "%llu%s", s->name, (unsigned long long)want,
                      shape_text(shape, sizeof shape, h->ndim, h->dims), h->type->descr,
                      (unsigned long long)left,
                      left < want ? " (the file is truncated)" : " (extra bytes)");
}

/* Reads the data of a file source in chunks, then checks nothing follows it. */
static kiln_status read_file_data(npy_src *s, const npy_header *h, float *out)
{
    uint8_t buf[NPY_CHUNK];
    size_t size = (size_t)h->type->size, per = NPY_CHUNK / size;
    for (size_t done = 0; done < h->numel;) {
        size_t n = h->numel - done < per ? (size_t)h->numel - done : per;
        size_t got = src_read(s, buf, n * size);
        if (got < n * size)
            return short_read(s, "data", h->numel * size, done * size + got);
        convert(buf, n, h->type->type, out + done);
        done += n;
    }
    if (!s->size_known && fgetc(s->fp) != EOF)
        return kiln_error(KILN_ERR_FORMAT, "%s: data: expected %llu bytes, found more (extra "
                          "bytes)", s->name, (unsigned long long)(h->numel * size));
    return KILN_OK;
}

/* Reads a whole .npy from a source into out. */
static kiln_status npy_read_src(npy_src *s, kiln_tensor_f32 *out)
{
    npy_header h;
    kiln_status st = read_header(s, &h);
    if (st)
        return st;
    uint64_t want = h.numel * (uint64_t)h.type->size;
    st = check_data_len(s, &h, want);
    if (st)
        return st;
    float *data = malloc((h.numel ? (size_t)h.numel : 1) * sizeof *data);
    if (!data)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %llu floats", s->name,
                          (unsigned long long)h.numel);
    if (s->fp) {
        st = read_file_data(s, &h, data);
    } else {
        convert(s->mem + s->pos, (size_t)h.numel, h.type->type, data);
        s->pos += want;
    }
    if (st) {
        free(data);
        return st;
    }
    out->ndim = h.ndim;
    memcpy(out->dims, h.dims, sizeof h.dims);
    out->numel = (size_t)h.numel;
    out->data = data;
    return KILN_OK;
}

void kiln_tensor_f32_free(kiln_tensor_f32 *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

kiln_status kiln_npy_read_memory(const void *buf, size_t len, const char *name,
                                 kiln_tensor_f32 *out)
{
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_read_memory: out is NULL");
    memset(out, 0, sizeof *out);
    name = name ? name : "npy";
    if (!buf && len)
        return kiln_error(KILN_ERR_ARG, "%s: buffer is NULL", name);
    npy_src s = { .name = name, .mem = buf, .size = buf ? len : 0, .size_known = true };
    return npy_read_src(&s, out);
}

kiln_status kiln_npy_read(const char *path, kiln_tensor_f32 *out)
{
    struct stat sb;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_read: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    npy_src s = { .name = path, .fp = fp };
    kiln_status st = KILN_OK;
    if (fstat(fileno(fp), &sb) != 0) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot read: it is a directory", path);
    } else {
        s.size_known = S_ISREG(sb.st_mode);
        s.size = s.size_known ? (uint64_t)sb.st_size : 0;
        st = npy_read_src(&s, out);
    }
    fclose(fp);
    return st;
}

/* Checks the arguments of kiln_npy_write; sets *numel. */
static kiln_status check_write_args(const char *path, const float *data, int ndim,
                                    const int64_t *dims, uint64_t *numel)
{
    if (!path)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_write: path is NULL");
    if (ndim < 0 || ndim > KILN_TENSOR_MAX_DIMS)
        return kiln_error(KILN_ERR_ARG, "%s: ndim: expected 0..%d, found %d", path,
                          KILN_TENSOR_MAX_DIMS, ndim);
    if (ndim > 0 && !dims)
        return kiln_error(KILN_ERR_ARG, "%s: dims is NULL", path);
    bool empty = false;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0 || dims[d] > KILN_TENSOR_MAX_NUMEL)
            return kiln_error(KILN_ERR_ARG, "%s: dims[%d]: expected 0..%lld, found %lld", path, d,
                              (long long)KILN_TENSOR_MAX_NUMEL, (long long)dims[d]);
        empty = empty || dims[d] == 0;
    }
    *numel = 1;
    for (int d = 0; d < ndim && !empty; d++) {
        *numel *= (uint64_t)dims[d];
        if (*numel > (uint64_t)KILN_TENSOR_MAX_NUMEL)
            return kiln_error(KILN_ERR_ARG, "%s: shape: expected at most %lld elements", path,
                              (long long)KILN_TENSOR_MAX_NUMEL);
    }
    *numel = empty ? 0 : *numel;
    if (*numel && !data)
        return kiln_error(KILN_ERR_ARG, "%s: data is NULL", path);
    return KILN_OK;
}

/* Builds preamble and header dict, padded with spaces and a newline to NPY_ALIGN; returns its
 * length. */
static size_t build_header(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    char shape[256];
    int n = snprintf(buf + 10, cap - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
                     shape_text(shape, sizeof shape, ndim, dims));
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + 10 + n, ' ', padded - total);
    buf[padded - 1] = '\n';
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((padded - 10) & 0xff);
    buf[9] = (char)((padded - 10) >> 8);
    return padded;
}

/* Writes n floats little-endian to fp. */
static bool write_floats(FILE *fp, const float *data, size_t n)
{
    uint8_t buf[NPY_CHUNK];
    size_t per = NPY_CHUNK / 4;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < per ? n - done : per;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &data[done + i], sizeof u);
            for (int b = 0; b < 4; b++)
                buf[4 * i + (size_t)b] = (uint8_t)(u >> (8 * b));
        }
        if (fwrite(buf, 1, 4 * k, fp) != 4 * k)
            return false;
        done += k;
    }
    return true;
}

kiln_status kiln_npy_write(const char *path, const float *data, int ndim, const int64_t *dims)
{
    uint64_t numel = 0;
    kiln_status st = check_write_args(path, data, ndim, dims, &numel);
    if (st)
        return st;
    char header[512];
    size_t hlen = build_header(header, sizeof header, ndim, dims);
    kiln_atomic_file f;
    if ((st = kiln_atomic_open(&f, path)) != KILN_OK)
        return st;
    if (fwrite(header, 1, hlen, f.fp) != hlen || !write_floats(f.fp, data, (size_t)numel)) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot write: %s", f.tmp, strerror(errno));
        kiln_atomic_abort(&f);
        return st;
    }
    return kiln_atomic_commit(&f);
}
