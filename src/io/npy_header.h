/* Internal: the .npy header parser shared by the float reader (npy.c) and the typed array reader
 * (npy_array.c): byte sources over files or memory, the preamble and header dict validated field
 * by field, and the data length check. */
#ifndef KILN_IO_NPY_HEADER_H
#define KILN_IO_NPY_HEADER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include "kiln/tensor_io.h"

#define NPY_MAGIC      "\x93NUMPY"
#define NPY_MAGIC_LEN  6
#define NPY_CHUNK      ((size_t)1 << 14)    /* bytes converted per step when reading a file */

/* Element types a file may hold. */
typedef enum { NPY_F4, NPY_F8, NPY_I4, NPY_I8, NPY_U1 } npy_dtype;

/* A descr string accepted in a header and what it means. */
typedef struct {
    const char *descr;  /* as written in the header, without quotes */
    npy_dtype type;     /* element type */
    int size;           /* bytes per element */
    kiln_dtype dtype;   /* the same type as a kiln_dtype (KILN_DT_COUNT for float64) */
} npy_type_info;

/* A byte source: a file or a memory buffer. */
typedef struct {
    const char *name;     /* file name for messages */
    FILE *fp;             /* file source, or NULL for memory */
    const uint8_t *mem;   /* memory source bytes */
    uint64_t size;        /* total bytes, when size_known */
    bool size_known;      /* memory, or a regular file */
    uint64_t pos;         /* bytes consumed so far */
} npy_src;

/* What a header declares. */
typedef struct {
    const npy_type_info *type;           /* element type */
    int ndim;                            /* dims */
    int64_t dims[KILN_TENSOR_MAX_DIMS];  /* sizes */
    uint64_t numel;                      /* product of dims */
    bool seen_descr, seen_order, seen_shape;
} npy_header;

/* Little-endian uint32 at p. */
static inline uint32_t npy_load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Little-endian uint64 at p. */
static inline uint64_t npy_load_le64(const uint8_t *p)
{
    return (uint64_t)npy_load_le32(p) | (uint64_t)npy_load_le32(p + 4) << 32;
}

/* Formats a shape as a Python tuple ("(3, 4)", "(5,)", "()") into buf. */
const char *kiln_npy_shape_text(char *buf, size_t cap, int ndim, const int64_t *dims);
/* A memory source over buf[0..len) named name. */
npy_src kiln_npy_src_memory(const void *buf, size_t len, const char *name);
/* Opens path as a file source (a directory is refused); close it with kiln_npy_src_close. */
kiln_status kiln_npy_src_open(npy_src *s, const char *path);
/* Closes a file source (memory sources need nothing). */
void kiln_npy_src_close(npy_src *s);
/* Bytes a source of known size has left. */
uint64_t kiln_npy_src_left(const npy_src *s);
/* Reads up to n bytes from a source; fewer only at its end or on a read error. */
size_t kiln_npy_src_read(npy_src *s, void *buf, size_t n);
/* The error for a short read: an I/O error if the file failed, else a truncation. */
kiln_status kiln_npy_short_read(const npy_src *s, const char *what, uint64_t want, uint64_t got);
/* Reads and validates preamble and header dict, leaving s at the data. */
kiln_status kiln_npy_read_header(npy_src *s, npy_header *h);
/* Checks that the data left in a source of known size is exactly want bytes. */
kiln_status kiln_npy_check_data_len(const npy_src *s, const npy_header *h, uint64_t want);

#endif
