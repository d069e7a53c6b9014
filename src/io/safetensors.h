/* The safetensors format: an 8-byte little-endian header length N, N bytes of JSON header
 * ({"__metadata__": {str: str}, "name": {"dtype", "shape", "data_offsets": [begin, end]}}),
 * then the raw little-endian tensor data, offsets relative to its start. */
#ifndef KILN_IO_SAFETENSORS_H
#define KILN_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "kiln/kiln.h"

#define KILN_ST_MAX_DIMS 8                       /* most dims of one tensor */
#define KILN_ST_NAME_MAX 128                     /* name buffer size, with the NUL */
#define KILN_ST_MAX_HEADER (100u * 1024u * 1024u) /* largest JSON header accepted */

/* Element types: kiln_dtype in kiln.h (others, such as BF16, are rejected when reading). */

/* One tensor: its name, type, shape and bytes. */
typedef struct {
    char name[KILN_ST_NAME_MAX];  /* NUL-terminated UTF-8, at most 127 bytes */
    kiln_dtype dtype;             /* element type */
    int ndim;                     /* 0..8; 0 is a scalar */
    int64_t dims[KILN_ST_MAX_DIMS];
    const void *data;             /* reader: into the loaded file (or a private copy when the
                                   * file misaligns it), aligned to the dtype size, never NULL;
                                   * writer: caller's data (NULL allowed when nbytes is 0) */
    size_t nbytes;                /* product(dims) * dtype size */
} kiln_st_tensor;

/* Writes tensors and metadata (NULL-terminated key, value, key, value... list, may be NULL)
 * atomically: temp file in the same directory, fwrite, fflush, fsync, rename over path, fsync
 * of the directory. The header lists tensors in the given order and is space-padded to a
 * multiple of 8 bytes; data is contiguous (as other readers require), laid out by falling
 * dtype size (given order within a size) so every tensor starts at a file offset that is a
 * multiple of its element size. */
kiln_status kiln_st_write(const char *path, const kiln_st_tensor *tensors, int n,
                          const char *const *meta);

/* An opened safetensors file (validated header, tensors in header order). */
typedef struct kiln_st_file kiln_st_file;

/* Maps (or reads) and validates a file. NULL on error, message via kiln_error naming the file,
 * the field, what was expected and what was found. */
kiln_st_file *kiln_st_open(const char *path);
/* Like kiln_st_open on a copy of buf[0..len); name (may be NULL) is used in messages. */
kiln_st_file *kiln_st_open_memory(const void *buf, size_t len, const char *name);
/* Number of tensors. */
int kiln_st_count(const kiln_st_file *f);
/* Tensor i in header order, or NULL if out of range. */
const kiln_st_tensor *kiln_st_at(const kiln_st_file *f, int i);
/* The tensor named name, or NULL if absent. */
const kiln_st_tensor *kiln_st_find(const kiln_st_file *f, const char *name);
/* The __metadata__ value of key, or NULL if absent. */
const char *kiln_st_meta(const kiln_st_file *f, const char *key);
/* Number of __metadata__ entries. */
int kiln_st_meta_count(const kiln_st_file *f);
/* Key of __metadata__ entry i (file order), or NULL; its value via kiln_st_meta. */
const char *kiln_st_meta_key(const kiln_st_file *f, int i);
/* The path (or name) the file was opened with. */
const char *kiln_st_path(const kiln_st_file *f);
/* Unmaps and frees; every data pointer and string from f becomes invalid. NULL is fine. */
void kiln_st_close(kiln_st_file *f);

#endif
