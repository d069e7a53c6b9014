/* safetensors: a validating reader (mmap, or a copy of a memory buffer) and an atomic writer. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* strdup, pread, O_CLOEXEC, O_DIRECTORY */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/error.h"
#include "io/json.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian and is used in place: a little-endian host is assumed"
#endif

#define META_KEY "__metadata__"
#define SHOWN_MAX 60   /* bytes of a name quoted in a message before it is cut with "..." */

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [KILN_DT_F32] = { "F32", 4 }, [KILN_DT_F16] = { "F16", 2 }, [KILN_DT_I8] = { "I8", 1 },
    [KILN_DT_U8] = { "U8", 1 },   [KILN_DT_I32] = { "I32", 4 }, [KILN_DT_I64] = { "I64", 8 },
    [KILN_DT_BOOL] = { "BOOL", 1 },
};
_Static_assert(sizeof dtype_info / sizeof dtype_info[0] == KILN_DT_COUNT, "a dtype without a name");
#define N_DTYPES (sizeof dtype_info / sizeof dtype_info[0])

size_t kiln_dtype_size(kiln_dtype t)
{
    return (unsigned)t < N_DTYPES ? dtype_info[t].size : 0;
}

const char *kiln_dtype_name(kiln_dtype t)
{
    return (unsigned)t < N_DTYPES ? dtype_info[t].name : NULL;
}

/* The dtype named s ("F32"); false if there is none. */
static bool dtype_parse(const char *s, kiln_dtype *out)
{
    for (unsigned i = 0; i < N_DTYPES; i++) {
        if (strcmp(s, dtype_info[i].name) == 0) {
            *out = (kiln_dtype)i;
            return true;
        }
    }
    return false;
}

/* ---- message helpers ---- */

typedef struct { char s[SHOWN_MAX + 4]; } shown_text;
typedef struct { char s[KILN_ST_MAX_DIMS * 22 + 3]; } shape_text;
typedef struct { char s[SHOWN_MAX + 16]; } value_text;

/* A name fit for a message: control characters become '?', long names are cut with "...". */
static shown_text show(const char *name)
{
    shown_text out;
    size_t n = strlen(name), keep = n > SHOWN_MAX ? SHOWN_MAX : n;
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)name[i];
        out.s[i] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    strcpy(out.s + keep, n > keep ? "..." : "");
    return out;
}

/* "[32,1,3,3]" */
static shape_text shape_str(const int64_t *dims, int ndim)
{
    shape_text out;
    size_t len = 0;
    out.s[len++] = '[';
    for (int i = 0; i < ndim; i++)
        len += (size_t)snprintf(out.s + len, sizeof out.s - len, "%s%lld", i ? "," : "",
                                (long long)dims[i]);
    snprintf(out.s + len, sizeof out.s - len, "]");
    return out;
}

/* What a JSON value is, for "found ..." parts of messages: 1.5, -3, "text", an array, ... */
static value_text describe(const json_t *v)
{
    value_text out;
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_INTEGER:
        snprintf(out.s, sizeof out.s, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(out.s, sizeof out.s, "%.17g", json_real_value(v));
        break;
    case JSON_STRING:
        snprintf(out.s, sizeof out.s, "\"%s\"", show(json_string_value(v)).s);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        snprintf(out.s, sizeof out.s, "%s", json_is_true(v) ? "true" : "false");
        break;
    case JSON_NULL:
        snprintf(out.s, sizeof out.s, "null");
        break;
    default:
        snprintf(out.s, sizeof out.s, "an %s", kiln_json_type_name(v));
        break;
    }
    return out;
}

/* Elements of a shape; false if the count overflows 64 bits. A zero dim gives 0. */
static bool shape_count(const int64_t *dims, int ndim, uint64_t *out)
{
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++)
        if (dims[i] == 0) {
            *out = 0;
            return true;
        }
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)dims[i];
        if (count > UINT64_MAX / d)
            return false;
        count *= d;
    }
    *out = count;
    return true;
}

/* Bytes of a tensor of this shape and dtype; false if they overflow size_t. */
static bool shape_bytes(const int64_t *dims, int ndim, kiln_dtype t, uint64_t *out)
{
    uint64_t count, size = kiln_dtype_size(t);
    if (!shape_count(dims, ndim, &count) || count > SIZE_MAX / size)
        return false;
    *out = count * size;
    return true;
}

static int cmp_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first string that repeats in list[0..n) (which gets sorted), or NULL. */
static const char *find_duplicate(const char **list, size_t n)
{
    if (n > 1)
        qsort(list, n, sizeof *list, cmp_strings);
    for (size_t i = 1; i < n; i++)
        if (strcmp(list[i - 1], list[i]) == 0)
            return list[i];
    return NULL;
}

/* ---- the reader ---- */

/* Where one tensor's bytes lie in the data section. */
typedef struct {
    uint64_t begin, end;
    int index;
} span;

struct kiln_st_file {
    char *path;                          /* path or name, for messages */
    unsigned char *base;                 /* the whole file */
    size_t size;
    bool mapped;                         /* base is an mmap (else malloc'd or NULL) */
    json_t *header;                      /* parsed header (owns metadata strings) */
    const json_t *meta;                  /* __metadata__ or NULL */
    const char **meta_keys;              /* its keys in file order (strings of header) */
    bool ints_as_reals;                  /* header read with every number a real (load_header) */
    kiln_json_error range_error;         /* ... because strictly it has a number out of range */
    kiln_st_tensor *tensors;             /* header order */
    int n;
    const kiln_st_tensor **by_name;      /* tensors sorted by name, for kiln_st_find */
    void **copies;                       /* per tensor: aligned copy of misaligned data */
};

/* Reports a problem with one tensor: "<file>: tensor "<name>": <message>". */
static bool tensor_fail(const kiln_st_file *f, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool tensor_fail(const kiln_st_file *f, const char *name, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": %s", f->path, show(name).s, msg);
    return false;
}

/* Reads a non-negative JSON integer; false if v is not one. In a header read with every number a
 * real (see load_header), an integral real below 2^63 counts as one. */
static bool get_uint(const kiln_st_file *f, const json_t *v, uint64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < 0)
            return false;
        *out = (uint64_t)x;
        return true;
    }
    if (f->ints_as_reals && json_is_real(v)) {
        double r = json_real_value(v);
        if (r >= 0 && r < 0x1p63 && r == (double)(uint64_t)r) {
            *out = (uint64_t)r;
            return true;
        }
    }
    return false;
}

static uint64_t read_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* The number of objects in v (at most KILN_JSON_MAX_DEPTH deep) that have the key key; *holder
 * gets the last one found. */
static size_t count_holders(const json_t *v, const char *key, const json_t **holder)
{
    size_t n = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += count_holders(json_array_get(v, i), key, holder);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *item;
        if (json_object_get(v, key)) {
            *holder = v;
            n++;
        }
        json_object_foreach((json_t *)v, k, item)
            n += count_holders(item, key, holder);
    }
    return n;
}

/* Reports a key that the header has twice in one object (the parser refuses those: which of the
 * values counts would be a guess), naming what is repeated where that can be told: a tensor,
 * "__metadata__", a metadata key or a key of one tensor's entry. e is the strict parse's error. */
static bool duplicate_fail(const kiln_st_file *f, const char *text, size_t len,
                           const kiln_json_error *e)
{
    kiln_json_error e2;
    json_t *root = kiln_json_parse(text, len, KILN_JSON_KEEP_LAST | KILN_JSON_INT_AS_REAL, &e2);
    char *key = kiln_json_duplicate_key(text, e);
    const json_t *holder = NULL, *meta = json_object_get(root, META_KEY);
    const char *entry = NULL;   /* the tensor whose entry holds key */
    size_t holders = root && key ? count_holders(root, key, &holder) : 0;
    if (holders == 1 && json_is_object(root) && holder != root && holder != meta) {
        const char *name;
        json_t *value;
        json_object_foreach(root, name, value) {
            if (value == holder)
                entry = name;
        }
    }
    if (!root)   /* the text is also wrong further on, where the old reader looked first */
        kiln_error(KILN_ERR_FORMAT, "%s: header is not valid JSON: %s (header starts at file "
                   "offset 8)", f->path, e2.msg);
    else if (!json_is_object(root))
        kiln_error(KILN_ERR_FORMAT, "%s: header is %s, expected a JSON object", f->path,
                   describe(root).s);
    else if (holders == 1 && holder == root && strcmp(key, META_KEY) == 0)
        kiln_error(KILN_ERR_FORMAT, "%s: \"" META_KEY "\" appears twice in the header", f->path);
    else if (holders == 1 && holder == root)
        tensor_fail(f, key, "appears twice in the header, expected distinct tensor names");
    else if (holders == 1 && holder == meta)
        kiln_error(KILN_ERR_FORMAT, "%s: \"" META_KEY "\" has the key \"%s\" twice, expected "
                   "distinct keys", f->path, show(key).s);
    else if (entry)
        tensor_fail(f, entry, "entry has the key \"%s\" twice, expected each key once",
                    show(key).s);
    else
        kiln_error(KILN_ERR_FORMAT, "%s: header is not valid JSON: %s (header starts at file "
                   "offset 8)", f->path, e->msg);
    free(key);
    json_decref(root);
    return false;
}

/* Checks the length prefix and parses the header into f->header. */
static bool load_header(kiln_st_file *f)
{
    if (f->size < 8) {
        kiln_error(KILN_ERR_FORMAT, "%s: file is %zu bytes, expected at least 8 (the header "
                   "length)", f->path, f->size);
        return false;
    }
    uint64_t n = read_le64(f->base);
    if (n > KILN_ST_MAX_HEADER) {
        kiln_error(KILN_ERR_FORMAT, "%s: header length is %llu bytes, expected at most %u "
                   "(100 MB)", f->path, (unsigned long long)n, KILN_ST_MAX_HEADER);
        return false;
    }
    if (n > f->size - 8) {
        kiln_error(KILN_ERR_FORMAT, "%s: header length is %llu bytes, but only %zu bytes "
                   "follow the length field (truncated file?)", f->path,
                   (unsigned long long)n, f->size - 8);
        return false;
    }
    const char *text = (const char *)f->base + 8;
    kiln_json_error e;
    f->header = kiln_json_parse(text, (size_t)n, 0, &e);
    if (!f->header && e.status == KILN_JSON_RANGE) {
        /* An integer past 64 bits. Read the header again with every number a real, so that the
         * checks below name the field that holds it ("shape"[0] is 9.2233720368547758e+18,
         * expected a non-negative integer); if they all pass, finish_open rejects the file
         * with this error anyway. */
        kiln_json_error e2;
        f->header = kiln_json_parse(text, (size_t)n, KILN_JSON_INT_AS_REAL, &e2);
        if (f->header) {
            f->ints_as_reals = true;
            f->range_error = e;
        } else {
            e = e2;
        }
    }
    if (!f->header && e.status == KILN_JSON_DUPLICATE)
        return duplicate_fail(f, text, (size_t)n, &e);
    if (!f->header) {
        kiln_error(KILN_ERR_FORMAT, "%s: header is not valid JSON: %s (header starts at file "
                   "offset 8)", f->path, e.msg);
        return false;
    }
    if (!json_is_object(f->header)) {
        kiln_error(KILN_ERR_FORMAT, "%s: header is %s, expected a JSON object", f->path,
                   describe(f->header).s);
        return false;
    }
    return true;
}

/* Validates __metadata__ (an object of strings; the parser saw to distinct keys) if there is
 * one, and lists its keys. */
static bool load_metadata(kiln_st_file *f)
{
    f->meta = json_object_get(f->header, META_KEY);
    if (!f->meta)
        return true;
    if (!json_is_object(f->meta)) {
        kiln_error(KILN_ERR_FORMAT, "%s: \"" META_KEY "\" is %s, expected an object of strings",
                   f->path, describe(f->meta).s);
        return false;
    }
    size_t m = json_object_size(f->meta), i = 0;
    f->meta_keys = malloc((m ? m : 1) * sizeof *f->meta_keys);
    if (!f->meta_keys) {
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading the header", f->path);
        return false;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)f->meta, key, v) {
        if (!json_is_string(v)) {
            kiln_error(KILN_ERR_FORMAT, "%s: \"" META_KEY "\" entry \"%s\" is %s, expected a "
                       "string", f->path, show(key).s, describe(v).s);
            return false;
        }
        f->meta_keys[i++] = key;
    }
    return true;
}

/* Reads "dtype" of a tensor entry. */
static bool load_dtype(const kiln_st_file *f, const json_t *entry, kiln_st_tensor *t)
{
    const json_t *v = json_object_get(entry, "dtype");
    if (!v)
        return tensor_fail(f, t->name, "missing \"dtype\"");
    if (!json_is_string(v))
        return tensor_fail(f, t->name, "\"dtype\" is %s, expected a string such as \"F32\"",
                           describe(v).s);
    if (!dtype_parse(json_string_value(v), &t->dtype))
        return tensor_fail(f, t->name, "unsupported dtype %s, expected one of F32, F16, I8, "
                           "U8, I32, I64, BOOL", describe(v).s);
    return true;
}

/* Reads "shape" of a tensor entry. */
static bool load_shape(const kiln_st_file *f, const json_t *entry, kiln_st_tensor *t)
{
    const json_t *v = json_object_get(entry, "shape");
    if (!v)
        return tensor_fail(f, t->name, "missing \"shape\"");
    if (!json_is_array(v))
        return tensor_fail(f, t->name, "\"shape\" is %s, expected an array of non-negative "
                           "integers", describe(v).s);
    size_t n = json_array_size(v);
    if (n > KILN_ST_MAX_DIMS)
        return tensor_fail(f, t->name, "\"shape\" has %zu dims, expected at most %d", n,
                           KILN_ST_MAX_DIMS);
    t->ndim = (int)n;
    for (size_t i = 0; i < n; i++) {
        uint64_t d;
        if (!get_uint(f, json_array_get(v, i), &d))
            return tensor_fail(f, t->name, "\"shape\"[%zu] is %s, expected a non-negative "
                               "integer", i, describe(json_array_get(v, i)).s);
        t->dims[i] = (int64_t)d;
    }
    return true;
}

/* Reads "data_offsets" [begin, end] of a tensor entry. */
static bool load_offsets(const kiln_st_file *f, const json_t *entry, const char *name,
                         span *s)
{
    const json_t *v = json_object_get(entry, "data_offsets");
    if (!v)
        return tensor_fail(f, name, "missing \"data_offsets\"");
    if (!json_is_array(v))
        return tensor_fail(f, name, "\"data_offsets\" is %s, expected an array [begin, end]",
                           describe(v).s);
    if (json_array_size(v) != 2)
        return tensor_fail(f, name, "\"data_offsets\" has %zu items, expected 2 ([begin, end])",
                           json_array_size(v));
    uint64_t off[2];
    for (size_t i = 0; i < 2; i++)
        if (!get_uint(f, json_array_get(v, i), &off[i]))
            return tensor_fail(f, name, "\"data_offsets\"[%zu] is %s, expected a non-negative "
                               "integer", i, describe(json_array_get(v, i)).s);
    if (off[0] > off[1])
        return tensor_fail(f, name, "data_offsets [%llu, %llu]: begin is after end, expected "
                           "begin <= end", (unsigned long long)off[0],
                           (unsigned long long)off[1]);
    s->begin = off[0];
    s->end = off[1];
    return true;
}

/* Checks that the span holds exactly the tensor's bytes and lies inside the data section. */
static bool check_extent(const kiln_st_file *f, kiln_st_tensor *t, const span *s,
                         uint64_t data_size)
{
    uint64_t bytes;
    const char *dt = kiln_dtype_name(t->dtype);
    if (!shape_bytes(t->dims, t->ndim, t->dtype, &bytes))
        return tensor_fail(f, t->name, "shape %s of %s has more bytes than fit in memory "
                           "(overflow)", shape_str(t->dims, t->ndim).s, dt);
    uint64_t have = s->end - s->begin;
    if (have != bytes)
        return tensor_fail(f, t->name, "data_offsets [%llu, %llu] give %llu bytes, expected "
                           "%llu (%s %s)", (unsigned long long)s->begin,
                           (unsigned long long)s->end, (unsigned long long)have,
                           (unsigned long long)bytes, dt, shape_str(t->dims, t->ndim).s);
    if (s->end > data_size)
        return tensor_fail(f, t->name, "data_offsets [%llu, %llu] end past the data section "
                           "of %llu bytes (truncated file?)", (unsigned long long)s->begin,
                           (unsigned long long)s->end, (unsigned long long)data_size);
    t->nbytes = (size_t)bytes;
    return true;
}

/* Reads and checks one tensor entry; s gets its span. */
static bool load_tensor(const kiln_st_file *f, const char *name, const json_t *entry,
                        kiln_st_tensor *t, span *s, uint64_t data_size)
{
    size_t len = strlen(name);
    if (len >= KILN_ST_NAME_MAX)
        return tensor_fail(f, name, "name is %zu bytes long, expected at most %d", len,
                           KILN_ST_NAME_MAX - 1);
    memcpy(t->name, name, len + 1);
    if (!json_is_object(entry))
        return tensor_fail(f, name, "entry is %s, expected an object with \"dtype\", "
                           "\"shape\" and \"data_offsets\"", describe(entry).s);
    return load_dtype(f, entry, t) && load_shape(f, entry, t) &&
           load_offsets(f, entry, name, s) && check_extent(f, t, s, data_size);
}

static int cmp_tensor_names(const void *a, const void *b)
{
    const kiln_st_tensor *x = *(const kiln_st_tensor *const *)a;
    const kiln_st_tensor *y = *(const kiln_st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* Sorts f->by_name (names are distinct: the parser refuses a key twice, see duplicate_fail). */
static void sort_names(kiln_st_file *f)
{
    for (int i = 0; i < f->n; i++)
        f->by_name[i] = &f->tensors[i];
    if (f->n > 1)
        qsort(f->by_name, (size_t)f->n, sizeof *f->by_name, cmp_tensor_names);
}

static int cmp_spans(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Rejects tensors whose bytes overlap (empty tensors overlap nothing). Sorts spans. */
static bool check_overlaps(const kiln_st_file *f, span *spans)
{
    if (f->n > 1)
        qsort(spans, (size_t)f->n, sizeof *spans, cmp_spans);
    const span *last = NULL;   /* the non-empty span reaching furthest so far */
    for (int i = 0; i < f->n; i++) {
        const span *s = &spans[i];
        if (s->begin == s->end)
            continue;
        if (last && s->begin < last->end)
            return tensor_fail(f, f->tensors[s->index].name, "data_offsets [%llu, %llu] "
                               "overlap those of tensor \"%s\" [%llu, %llu], expected disjoint "
                               "ranges", (unsigned long long)s->begin,
                               (unsigned long long)s->end, show(f->tensors[last->index].name).s,
                               (unsigned long long)last->begin, (unsigned long long)last->end);
        if (!last || s->end > last->end)
            last = s;
    }
    return true;
}

/* Points each tensor at its bytes, copying those not aligned to their element size. Empty
 * tensors get a valid, aligned, non-NULL pointer too. */
static bool place_data(kiln_st_file *f, const unsigned char *data, const span *spans)
{
    static const int64_t no_data[1];
    for (int i = 0; i < f->n; i++) {
        kiln_st_tensor *t = &f->tensors[spans[i].index];
        const unsigned char *p = data + spans[i].begin;
        t->data = t->nbytes ? (const void *)p : (const void *)no_data;
        if (t->nbytes == 0 || (uintptr_t)p % kiln_dtype_size(t->dtype) == 0)
            continue;
        void *copy = malloc(t->nbytes);   /* malloc memory suits every dtype */
        if (!copy) {
            kiln_error(KILN_ERR_NOMEM, "%s: out of memory copying tensor \"%s\" (%zu bytes)",
                       f->path, show(t->name).s, t->nbytes);
            return false;
        }
        memcpy(copy, p, t->nbytes);
        f->copies[spans[i].index] = copy;
        t->data = copy;
    }
    return true;
}

/* Reads every tensor entry of the header and checks them together. */
static bool load_tensors(kiln_st_file *f)
{
    uint64_t header_len = read_le64(f->base);
    const unsigned char *data = f->base + 8 + header_len;
    uint64_t data_size = f->size - 8 - header_len;
    size_t n = json_object_size(f->header) - (f->meta ? 1 : 0);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    f->copies = calloc(n ? n : 1, sizeof *f->copies);
    span *spans = calloc(n ? n : 1, sizeof *spans);
    bool ok = f->tensors && f->by_name && f->copies && spans;
    if (!ok)
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %zu tensors", f->path, n);
    const char *name;
    json_t *entry;
    json_object_foreach(f->header, name, entry) {
        if (!ok)
            break;
        if (strcmp(name, META_KEY) == 0)
            continue;
        ok = load_tensor(f, name, entry, &f->tensors[f->n], &spans[f->n], data_size);
        spans[f->n].index = f->n;
        f->n++;
    }
    if (ok)
        sort_names(f);
    ok = ok && check_overlaps(f, spans) && place_data(f, data, spans);
    free(spans);
    return ok;
}

/* A file record with a copy of path (or "<memory>"); NULL if out of memory. */
static kiln_st_file *file_new(const char *path)
{
    kiln_st_file *f = calloc(1, sizeof *f);
    const char *name = path ? path : "<memory>";
    if (f)
        f->path = strdup(name);
    if (!f || !f->path) {
        free(f);
        kiln_error(KILN_ERR_NOMEM, "%s: out of memory", name);
        return NULL;
    }
    return f;
}

/* Validates the loaded bytes; on failure closes f and returns NULL. */
static kiln_st_file *finish_open(kiln_st_file *f)
{
    if (load_header(f) && load_metadata(f) && load_tensors(f)) {
        if (!f->ints_as_reals)
            return f;
        /* every field Kiln reads is fine: the integer past 64 bits is in one it skips */
        kiln_error(KILN_ERR_FORMAT, "%s: header is not valid JSON: %s (header starts at file "
                   "offset 8)", f->path, f->range_error.msg);
    }
    kiln_st_close(f);
    return NULL;
}

kiln_st_file *kiln_st_open_memory(const void *buf, size_t len, const char *name)
{
    kiln_st_file *f = file_new(name);
    if (!f)
        return NULL;
    if (len > 0) {
        if (!buf) {
            kiln_error(KILN_ERR_ARG, "%s: buffer is NULL but its length is %zu", f->path, len);
            kiln_st_close(f);
            return NULL;
        }
        f->base = malloc(len);
        if (!f->base) {
            kiln_error(KILN_ERR_NOMEM, "%s: out of memory copying %zu bytes", f->path, len);
            kiln_st_close(f);
            return NULL;
        }
        memcpy(f->base, buf, len);
    }
    f->size = len;
    return finish_open(f);
}

/* Reads all size bytes of fd into a new buffer (when mmap is not possible). */
static bool read_all(kiln_st_file *f, int fd)
{
    f->base = malloc(f->size);
    if (!f->base)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory reading %zu bytes", f->path,
                          f->size), false;
    size_t got = 0;
    while (got < f->size) {
        ssize_t r = pread(fd, f->base + got, f->size - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return kiln_error(KILN_ERR_IO, "%s: cannot read: %s", f->path,
                              r < 0 ? strerror(errno) : "file shrank while reading"), false;
        got += (size_t)r;
    }
    return true;
}

/* Maps fd read-only into f (or reads it if it cannot be mapped). */
static bool map_file(kiln_st_file *f, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return kiln_error(KILN_ERR_IO, "%s: cannot stat: %s", f->path, strerror(errno)), false;
    if (!S_ISREG(st.st_mode))
        return kiln_error(KILN_ERR_IO, "%s: not a regular file", f->path), false;
    if ((uint64_t)st.st_size > SIZE_MAX)
        return kiln_error(KILN_ERR_IO, "%s: file too large to map", f->path), false;
    f->size = (size_t)st.st_size;
    if (f->size == 0)
        return true;
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED)
        return read_all(f, fd);
    f->base = p;
    f->mapped = true;
    return true;
}

kiln_st_file *kiln_st_open(const char *path)
{
    if (!path) {
        kiln_error(KILN_ERR_ARG, "kiln_st_open: path is NULL");
        return NULL;
    }
    kiln_st_file *f = file_new(path);
    if (!f)
        return NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        kiln_st_close(f);
        return NULL;
    }
    bool ok = map_file(f, fd);
    close(fd);
    if (!ok) {
        kiln_st_close(f);
        return NULL;
    }
    return finish_open(f);
}

int kiln_st_count(const kiln_st_file *f)
{
    return f ? f->n : 0;
}

const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, int i)
{
    return f && i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

static int cmp_find(const void *key, const void *elem)
{
    return strcmp(key, (*(const kiln_st_tensor *const *)elem)->name);
}

const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name)
{
    if (!f || !name || f->n == 0)
        return NULL;
    const kiln_st_tensor *const *hit = bsearch(name, f->by_name, (size_t)f->n,
                                               sizeof *f->by_name, cmp_find);
    return hit ? *hit : NULL;
}

const char *kiln_st_meta(const kiln_st_file *f, const char *key)
{
    return f && key ? json_string_value(json_object_get(f->meta, key)) : NULL;
}

int kiln_st_meta_count(const kiln_st_file *f)
{
    return f && f->meta ? (int)json_object_size(f->meta) : 0;
}

const char *kiln_st_meta_key(const kiln_st_file *f, int i)
{
    return f && i >= 0 && i < kiln_st_meta_count(f) ? f->meta_keys[i] : NULL;
}

const char *kiln_st_path(const kiln_st_file *f)
{
    return f ? f->path : NULL;
}

void kiln_st_close(kiln_st_file *f)
{
    if (!f)
        return;
    if (f->copies)
        for (int i = 0; i < f->n; i++)
            free(f->copies[i]);
    if (f->mapped)
        munmap(f->base, f->size);
    else
        free(f->base);
    json_decref(f->header);
    free(f->meta_keys);
    free(f->copies);
    free(f->by_name);
    free(f->tensors);
    free(f->path);
    free(f);
}

/* ---- the writer ---- */

/* Checks one tensor given to the writer. */
static kiln_status check_tensor_arg(const char *path, const kiln_st_tensor *t, int i)
{
    if (!memchr(t->name, '\0', sizeof t->name))
        return kiln_error(KILN_ERR_ARG, "%s: tensor %d: name is not NUL-terminated within %d "
                          "bytes", path, i, KILN_ST_NAME_MAX);
    shown_text shown = show(t->name);
    const char *name = shown.s;
    if (!kiln_json_utf8_valid(t->name))
        return kiln_error(KILN_ERR_ARG, "%s: tensor %d \"%s\": name is not valid UTF-8", path,
                          i, name);
    if (strcmp(t->name, META_KEY) == 0)
        return kiln_error(KILN_ERR_ARG, "%s: tensor %d: the name \"" META_KEY "\" is reserved",
                          path, i);
    if (!kiln_dtype_name(t->dtype))
        return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": dtype %d is not a kiln_dtype", path,
                          name, (int)t->dtype);
    if (t->ndim < 0 || t->ndim > KILN_ST_MAX_DIMS)
        return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": ndim is %d, expected 0..%d", path,
                          name, t->ndim, KILN_ST_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++)
        if (t->dims[d] < 0)
            return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": dims[%d] is %lld, expected >= 0",
                              path, name, d, (long long)t->dims[d]);
    uint64_t bytes;
    if (!shape_bytes(t->dims, t->ndim, t->dtype, &bytes))
        return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": shape %s overflows", path, name,
                          shape_str(t->dims, t->ndim).s);
    if (bytes != t->nbytes)
        return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": nbytes is %zu, expected %llu (%s %s)",
                          path, name, t->nbytes, (unsigned long long)bytes,
                          kiln_dtype_name(t->dtype), shape_str(t->dims, t->ndim).s);
    if (t->nbytes > 0 && !t->data)
        return kiln_error(KILN_ERR_ARG, "%s: tensor \"%s\": data is NULL", path, name);
    return KILN_OK;
}

/* Checks the metadata list: values present, UTF-8, distinct keys. */
static kiln_status check_meta_arg(const char *path, const char *const *meta)
{
    size_t n = 0;
    for (; meta && meta[2 * n]; n++) {
        const char *key = meta[2 * n], *value = meta[2 * n + 1];
        if (!value)
            return kiln_error(KILN_ERR_ARG, "%s: metadata key \"%s\" has no value (NULL)", path,
                              show(key).s);
        if (!kiln_json_utf8_valid(key) || !kiln_json_utf8_valid(value))
            return kiln_error(KILN_ERR_ARG, "%s: metadata \"%s\": key or value is not valid "
                              "UTF-8", path, show(key).s);
    }
    const char **keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++)
        keys[i] = meta[2 * i];
    const char *dup = find_duplicate(keys, n);
    kiln_status st = dup ? kiln_error(KILN_ERR_ARG, "%s: metadata key \"%s\" given twice", path,
                                      show(dup).s) : KILN_OK;
    free(keys);
    return st;
}

/* Checks every argument of kiln_st_write. */
static kiln_status check_write_args(const char *path, const kiln_st_tensor *tensors, int n,
                                    const char *const *meta)
{
    if (!path)
        return kiln_error(KILN_ERR_ARG, "kiln_st_write: path is NULL");
    if (n < 0 || (n > 0 && !tensors))
        return kiln_error(KILN_ERR_ARG, "%s: bad tensor list (n = %d)", path, n);
    for (int i = 0; i < n; i++) {
        kiln_status st = check_tensor_arg(path, &tensors[i], i);
        if (st)
            return st;
    }
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        if (tensors[i].nbytes > (uint64_t)INT64_MAX - total)
            return kiln_error(KILN_ERR_ARG, "%s: the tensors hold more than 2^63 - 1 bytes, "
                              "expected at most that (data_offsets are int64)", path);
        total += tensors[i].nbytes;
    }
    const char **names = malloc((n ? (size_t)n : 1) * sizeof *names);
    if (!names)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n; i++)
        names[i] = tensors[i].name;
    const char *dup = find_duplicate(names, (size_t)n);
    kiln_status st = dup ? kiln_error(KILN_ERR_ARG, "%s: tensor name \"%s\" given twice", path,
                                      show(dup).s) : KILN_OK;
    free(names);
    return st ? st : check_meta_arg(path, meta);
}

/* Lays tensors out by falling element size (given order within a size) so that each starts
 * at a multiple of its size with no gaps; fills begin[] and the write order. */
static void plan_layout(const kiln_st_tensor *tensors, int n, uint64_t *begin, int *order)
{
    static const size_t sizes[] = { 8, 4, 2, 1 };
    uint64_t off = 0;
    int k = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int i = 0; i < n; i++) {
            if (kiln_dtype_size(tensors[i].dtype) != sizes[s])
                continue;
            begin[i] = off;
            off += tensors[i].nbytes;
            order[k++] = i;
        }
    }
}

/* The JSON header: metadata first, then the tensors in the given order; NULL if out of memory.
 * Free it. (check_write_args has seen to UTF-8 and distinct keys.) */
static char *build_header(const kiln_st_tensor *tensors, int n, const uint64_t *begin,
                          const char *const *meta)
{
    json_t *root = json_object(), *object = NULL, *array = NULL;
    bool ok = root != NULL;
    /* each json_*_new call takes the new value, and frees it if it fails */
    if (meta && meta[0]) {
        ok = ok && json_object_set_new(root, META_KEY, object = json_object()) == 0;
        for (size_t i = 0; ok && meta[2 * i]; i++)
            ok = json_object_set_new(object, meta[2 * i], json_string(meta[2 * i + 1])) == 0;
    }
    for (int i = 0; ok && i < n; i++) {
        const kiln_st_tensor *t = &tensors[i];
        ok = json_object_set_new(root, t->name, object = json_object()) == 0 &&
             json_object_set_new(object, "dtype", json_string(kiln_dtype_name(t->dtype))) == 0 &&
             json_object_set_new(object, "shape", array = json_array()) == 0;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = json_array_append_new(array, json_integer(t->dims[d])) == 0;
        ok = ok && json_object_set_new(object, "data_offsets", array = json_array()) == 0 &&
             json_array_append_new(array, json_integer((json_int_t)begin[i])) == 0 &&
             json_array_append_new(array, json_integer((json_int_t)(begin[i] + t->nbytes))) == 0;
    }
    char *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* Writes length prefix, header (space-padded to a multiple of 8 bytes) and data to a temp file
 * and renames it over path. */
static kiln_status write_atomic(const char *path, const char *header,
                                const kiln_st_tensor *tensors, int n, const int *order)
{
    kiln_atomic_file f;
    kiln_status st = kiln_atomic_open(&f, path);
    if (st != KILN_OK)
        return st;
    size_t len = strlen(header), padded = (len + 7) / 8 * 8;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    bool ok = fwrite(len8, 1, 8, f.fp) == 8 && fwrite(header, 1, len, f.fp) == len;
    for (size_t i = len; ok && i < padded; i++)
        ok = fputc(' ', f.fp) != EOF;
    for (int k = 0; ok && k < n; k++) {
        const kiln_st_tensor *t = &tensors[order[k]];
        ok = t->nbytes == 0 || fwrite(t->data, 1, t->nbytes, f.fp) == t->nbytes;
    }
    if (!ok) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot write: %s", f.tmp, strerror(errno));
        kiln_atomic_abort(&f);
        return st;
    }
    return kiln_atomic_commit(&f);
}

kiln_status kiln_st_write(const char *path, const kiln_st_tensor *tensors, int n,
                          const char *const *meta)
{
    kiln_status st = check_write_args(path, tensors, n, meta);
    if (st)
        return st;
    size_t count = n ? (size_t)n : 1;
    uint64_t *begin = malloc(count * sizeof *begin);
    int *order = malloc(count * sizeof *order);
    char *header = NULL;
    if (begin && order) {
        plan_layout(tensors, n, begin, order);
        header = build_header(tensors, n, begin, meta);
    }
    if (!header)
        st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory building the header", path);
    else
        st = write_atomic(path, header, tensors, n, order);
    free(header);
    free(begin);
    free(order);
    return st;
}
