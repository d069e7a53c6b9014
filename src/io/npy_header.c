/* The .npy header parser: byte sources over files or memory, the preamble (magic, version,
 * header length) and the header dict ('descr', 'fortran_order', 'shape') validated field by
 * field, and the data length check. Shared by the float reader and the typed array reader. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L  /* fileno */
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/error.h"
#include "io/npy_header.h"

#define NPY_MAX_HEADER ((uint64_t)1 << 20)  /* longest header dict accepted */
#define NPY_SHOW       60                   /* most characters of a value quoted in messages */

static const npy_type_info npy_types[] = {
    { "<f4", NPY_F4, 4, KILN_DT_F32 }, { "<f8", NPY_F8, 8, KILN_DT_COUNT },
    { "<i4", NPY_I4, 4, KILN_DT_I32 }, { "<i8", NPY_I8, 8, KILN_DT_I64 },
    { "|u1", NPY_U1, 1, KILN_DT_U8 }, { "<u1", NPY_U1, 1, KILN_DT_U8 },
    { ">u1", NPY_U1, 1, KILN_DT_U8 },
};
#define NPY_N_TYPES (sizeof npy_types / sizeof npy_types[0])
#define NPY_TYPE_LIST "'<f4', '<f8', '<i4', '<i8' or '|u1'"

/* A piece of the header text. */
typedef struct {
    const char *p;  /* first character */
    size_t n;       /* length */
} npy_span;

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
const char *kiln_npy_shape_text(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
    return buf;
}

/* Bytes a source of known size has left. */
uint64_t kiln_npy_src_left(const npy_src *s)
{
    return s->pos < s->size ? s->size - s->pos : 0;
}

/* Reads up to n bytes from a source; fewer only at its end or on a read error. */
size_t kiln_npy_src_read(npy_src *s, void *buf, size_t n)
{
    size_t got;
    if (s->fp) {
        got = fread(buf, 1, n, s->fp);
    } else {
        uint64_t left = kiln_npy_src_left(s);
        got = (uint64_t)n < left ? n : (size_t)left;
        if (got)
            memcpy(buf, s->mem + s->pos, got);
    }
    s->pos += got;
    return got;
}

/* The error for a short read: an I/O error if the file failed, else a truncation. */
kiln_status kiln_npy_short_read(const npy_src *s, const char *what, uint64_t want, uint64_t got)
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
    size_t got = kiln_npy_src_read(s, pre, 8);
    size_t cmp = got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN;
    if (memcmp(pre, NPY_MAGIC, cmp) != 0 || (got < NPY_MAGIC_LEN && !(s->fp && ferror(s->fp))))
        return kiln_error(KILN_ERR_FORMAT, "%s: magic: expected \\x93NUMPY, found '%s'%s",
                          s->name, quote(shown, sizeof shown, (const char *)pre, cmp),
                          got < NPY_MAGIC_LEN ? " (the file is too short)" : "");
    if (got < 8)
        return kiln_npy_short_read(s, "version", 8, got);
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0)
        return kiln_error(KILN_ERR_FORMAT, "%s: version: expected 1.0, 2.0 or 3.0, found %d.%d",
                          s->name, major, minor);
    size_t len_bytes = major == 1 ? 2 : 4;
    got = kiln_npy_src_read(s, pre + 8, len_bytes);
    if (got < len_bytes)
        return kiln_npy_short_read(s, "header length", len_bytes, got);
    *header_len = major == 1 ? (uint64_t)pre[8] | (uint64_t)pre[9] << 8 : npy_load_le32(pre + 8);
    if (*header_len > NPY_MAX_HEADER)
        return kiln_error(KILN_ERR_FORMAT, "%s: header length: expected at most %llu, found %llu",
                          s->name, (unsigned long long)NPY_MAX_HEADER,
                          (unsigned long long)*header_len);
    if (s->size_known && *header_len > kiln_npy_src_left(s))
        return kiln_error(KILN_ERR_FORMAT, "%s: header length: expected at most %llu (the bytes "
                          "left in the file), found %llu", s->name,
                          (unsigned long long)kiln_npy_src_left(s),
                          (unsigned long long)*header_len);
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
kiln_status kiln_npy_read_header(npy_src *s, npy_header *h)
{
    uint64_t len = 0;
    kiln_status st = read_preamble(s, &len);
    if (st)
        return st;
    char *text = malloc(len ? (size_t)len : 1);
    if (!text)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for a %llu-byte header", s->name,
                          (unsigned long long)len);
    size_t got = kiln_npy_src_read(s, text, (size_t)len);
    st = got < len ? kiln_npy_short_read(s, "header", len, got)
                   : parse_header(s->name, text, len, h);
    free(text);
    return st;
}

/* Checks that the data left in a source is exactly what the header declares. */
kiln_status kiln_npy_check_data_len(const npy_src *s, const npy_header *h, uint64_t want)
{
    char shape[256];
    uint64_t left = kiln_npy_src_left(s);
    if (!s->size_known || left == want)
        return KILN_OK;
    return kiln_error(KILN_ERR_FORMAT, "%s: data: expected %llu bytes (shape %s of '%s'), found "
                      "%llu%s", s->name, (unsigned long long)want,
                      kiln_npy_shape_text(shape, sizeof shape, h->ndim, h->dims), h->type->descr,
                      (unsigned long long)left,
                      left < want ? " (the file is truncated)" : " (extra bytes)");
}

npy_src kiln_npy_src_memory(const void *buf, size_t len, const char *name)
{
    return (npy_src){ .name = name, .mem = buf, .size = buf ? len : 0, .size_known = true };
}

kiln_status kiln_npy_src_open(npy_src *s, const char *path)
{
    struct stat sb;
    memset(s, 0, sizeof *s);
    s->name = path;
    s->fp = fopen(path, "rb");
    if (!s->fp)
        return kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    kiln_status st = KILN_OK;
    if (fstat(fileno(s->fp), &sb) != 0)
        st = kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        st = kiln_error(KILN_ERR_IO, "%s: cannot read: it is a directory", path);
    s->size_known = S_ISREG(sb.st_mode);
    s->size = s->size_known ? (uint64_t)sb.st_size : 0;
    if (st)
        kiln_npy_src_close(s);
    return st;
}

void kiln_npy_src_close(npy_src *s)
{
    if (s->fp)
        fclose(s->fp);
    s->fp = NULL;
}
