/* NumPy .npy arrays read into float32 from files or memory (format versions 1.0, 2.0 and 3.0;
 * the header is validated by npy_header.c; several dtypes converted), and written atomically as
 * float32. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "io/atomic_file.h"
#include "io/npy_header.h"
#include "kiln/tensor_io.h"

#define NPY_ALIGN 64  /* written headers end on this boundary */

/* The float of the little-endian float32 at p. */
static float get_f4(const uint8_t *p)
{
    uint32_t u = npy_load_le32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float of the little-endian float64 at p. */
static float get_f8(const uint8_t *p)
{
    uint64_t u = npy_load_le64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return (float)d;
}

/* The float of the little-endian int32 at p. */
static float get_i4(const uint8_t *p)
{
    uint32_t u = npy_load_le32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v);
    return (float)v;
}

/* The float of the little-endian int64 at p. */
static float get_i8(const uint8_t *p)
{
    uint64_t u = npy_load_le64(p);
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

/* Reads the data of a file source in chunks, then checks nothing follows it. */
static kiln_status read_file_data(npy_src *s, const npy_header *h, float *out)
{
    uint8_t buf[NPY_CHUNK];
    size_t size = (size_t)h->type->size, per = NPY_CHUNK / size;
    for (size_t done = 0; done < h->numel;) {
        size_t n = h->numel - done < per ? (size_t)h->numel - done : per;
        size_t got = kiln_npy_src_read(s, buf, n * size);
        if (got < n * size)
            return kiln_npy_short_read(s, "data", h->numel * size, done * size + got);
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
    kiln_status st = kiln_npy_read_header(s, &h);
    if (st)
        return st;
    uint64_t want = h.numel * (uint64_t)h.type->size;
    st = kiln_npy_check_data_len(s, &h, want);
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
    npy_src s = kiln_npy_src_memory(buf, len, name);
    return npy_read_src(&s, out);
}

kiln_status kiln_npy_read(const char *path, kiln_tensor_f32 *out)
{
    npy_src s;
    if (!out || !path)
        return kiln_error(KILN_ERR_ARG, "kiln_npy_read: %s is NULL", out ? "path" : "out");
    memset(out, 0, sizeof *out);
    kiln_status st = kiln_npy_src_open(&s, path);
    if (st)
        return st;
    st = npy_read_src(&s, out);
    kiln_npy_src_close(&s);
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
                     kiln_npy_shape_text(shape, sizeof shape, ndim, dims));
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
