/* NumPy .npy arrays read in their stored element type (uint8, int32, int64, float32) from files
 * or memory, for datasets that keep uint8 pixels as uint8. The header is validated by
 * npy_header.c; the element type is checked against the caller's list before any data is read. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "io/npy_header.h"

/* The accepted types in words ("'|u1' (uint8) or '<f4' (float32)") into buf. */
static const char *accepted_text(char *buf, size_t cap, unsigned accept)
{
    static const struct { kiln_dtype t; const char *text; } names[] = {
        { KILN_DT_U8, "'|u1' (uint8)" }, { KILN_DT_I32, "'<i4' (int32)" },
        { KILN_DT_I64, "'<i8' (int64)" }, { KILN_DT_F32, "'<f4' (float32)" },
    };
    int total = 0, done = 0;
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        total += (accept >> names[i].t) & 1u;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && o < cap; i++) {
        if (!((accept >> names[i].t) & 1u))
            continue;
        const char *sep = done == 0 ? "" : done == total - 1 ? " or " : ", ";
        int k = snprintf(buf + o, cap - o, "%s%s", sep, names[i].text);
        o += k > 0 ? (size_t)k : 0;
        done++;
    }
    if (total == 0)
        snprintf(buf, cap, "no type (the caller accepts none)");
    return buf;
}

/* Converts numel little-endian elements of size bytes in place to host order. */
static void to_host_order(uint8_t *p, size_t numel, int size)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (size_t i = 0; i < numel; i++, p += size)
        for (int a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
#else
    (void)p;
    (void)numel;
    (void)size;
#endif
}

/* Reads the data of a source into buf (want bytes) and checks nothing follows it. */
static kiln_status read_data(npy_src *s, uint64_t want, uint8_t *buf)
{
    size_t got = kiln_npy_src_read(s, buf, (size_t)want);
    if (got < want)
        return kiln_npy_short_read(s, "data", want, got);
    if (s->fp && !s->size_known && fgetc(s->fp) != EOF)
        return kiln_error(KILN_ERR_FORMAT, "%s: data: expected %llu bytes, found more (extra "
                          "bytes)", s->name, (unsigned long long)want);
    return KILN_OK;
}

/* Reads a whole .npy from a source into out, keeping its element type. */
static kiln_status read_array_src(npy_src *s, unsigned accept, kiln_npy_array *out)
{
    npy_header h;
    char list[160];
    kiln_status st = kiln_npy_read_header(s, &h);
    if (st)
        return st;
    kiln_dtype t = h.type->dtype;
    if (t >= KILN_DT_COUNT || !((accept >> t) & 1u))
        return kiln_error(KILN_ERR_FORMAT, "%s: header 'descr': expected %s, found '%s'",
                          s->name, accepted_text(list, sizeof list, accept), h.type->descr);
    uint64_t want = h.numel * (uint64_t)h.type->size;
    if ((st = kiln_npy_check_data_len(s, &h, want)) != KILN_OK)
        return st;
    uint8_t *data = malloc(want ? (size_t)want : 1);
    if (!data)
        return kiln_error(KILN_ERR_NOMEM, "%s: out of memory for %llu bytes of data", s->name,
                          (unsigned long long)want);
    if ((st = read_data(s, want, data)) != KILN_OK) {
        free(data);
        return st;
    }
    to_host_order(data, (size_t)h.numel, h.type->size);
    out->dtype = t;
    out->ndim = h.ndim;
    memcpy(out->dims, h.dims, sizeof h.dims);
    out->numel = (size_t)h.numel;
    out->data = data;
    return KILN_OK;
}

void kiln_npy_array_free(kiln_npy_array *a)
{
    if (!a)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

kiln_status kiln_npy_read_array_memory(const void *buf, size_t len, const char *name,
                                       unsigned accept, kiln_npy_array *out)
{
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_read_array_memory: out is NULL");
    memset(out, 0, sizeof *out);
    name = name ? name : "npy";
    if (!buf && len)
        return kiln_error(KILN_ERR_ARG, "%s: buffer is NULL", name);
    npy_src s = kiln_npy_src_memory(buf, len, name);
    return read_array_src(&s, accept, out);
}

kiln_status kiln_npy_read_array(const char *path, unsigned accept, kiln_npy_array *out)
{
    npy_src s;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_read_array: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    kiln_status st = kiln_npy_src_open(&s, path);
    if (st)
        return st;
    st = read_array_src(&s, accept, out);
    kiln_npy_src_close(&s);
    return st;
}
