/* libFuzzer target for the safetensors reader and the JSON wrapper (jansson). Every input must
 * either open (then every tensor byte is read, and the file is written back and reread
 * identically) or fail with a message naming the file; JSON that parses must print and parse
 * back equal; anything else aborts.
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Isrc tests/fuzz_safetensors.c \
 *       src/io/safetensors.c src/io/json.c src/io/atomic_file.c src/core/error.c -ljansson \
 *       -o fuzz_st && ./fuzz_st */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/error.h"
#include "io/json.h"
#include "io/safetensors.h"

#define FUZZ_NAME "fuzz.safetensors"

/* Aborts with a message: a property the reader promises does not hold. */
static void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz property failed: %s (last error: '%s')\n", what, kiln_last_error());
    abort();
}

/* Reads every byte of every tensor and checks the accessors agree with each other. */
static unsigned fuzz_touch(const kiln_st_file *f)
{
    unsigned sum = 0;
    for (int i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        if (kiln_st_find(f, t->name) != t)
            fuzz_fail("find does not return the tensor");
        if (t->ndim < 0 || t->ndim > KILN_ST_MAX_DIMS || !kiln_dtype_name(t->dtype))
            fuzz_fail("bad ndim or dtype");
        if ((uintptr_t)t->data % kiln_dtype_size(t->dtype) != 0)
            fuzz_fail("misaligned data");
        for (size_t b = 0; b < t->nbytes; b++)
            sum += ((const unsigned char *)t->data)[b];
    }
    for (int i = 0; i < kiln_st_meta_count(f); i++)
        if (!kiln_st_meta(f, kiln_st_meta_key(f, i)))
            fuzz_fail("metadata key without a value");
    return sum;
}

/* Checks what kiln_json_parse says of data: a parse error with a message, or a value that jansson
 * prints and kiln_json_parse reads back equal. */
static void fuzz_json(const uint8_t *data, size_t size)
{
    kiln_json_error err;
    json_t *j = kiln_json_parse((const char *)data, size, 0, &err);
    if (!j) {
        if (err.status == KILN_JSON_OK || err.pos > size ||
            (err.status != KILN_JSON_DEPTH && strncmp(err.msg, "at byte ", 8) != 0))
            fuzz_fail("JSON error without a kind or a position");
        if (err.status == KILN_JSON_DUPLICATE) {
            char *key = kiln_json_duplicate_key((const char *)data, &err);
            if (!key)
                fuzz_fail("duplicate key not found");
            free(key);
        }
        return;
    }
    char *text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_t *back = text ? kiln_json_parse(text, strlen(text), 0, &err) : NULL;
    if (!back || !json_equal(j, back))
        fuzz_fail("JSON does not print and parse back equal");
    json_decref(back);
    free(text);
    json_decref(j);
}

/* Writes an opened file back out and checks the copy reads the same. */
static void fuzz_round_trip(const kiln_st_file *f)
{
    int n = kiln_st_count(f), m = kiln_st_meta_count(f);
    kiln_st_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    const char **meta = calloc(2 * (size_t)m + 1, sizeof *meta);
    if (!ts || !meta)
        abort();
    for (int i = 0; i < n; i++)
        ts[i] = *kiln_st_at(f, i);
    for (int i = 0; i < m; i++) {
        meta[2 * i] = kiln_st_meta_key(f, i);
        meta[2 * i + 1] = kiln_st_meta(f, meta[2 * i]);
    }
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_st_%ld.safetensors", (long)getpid());
    if (kiln_st_write(path, ts, n, meta) != KILN_OK)
        fuzz_fail("cannot write back a file that opened");
    kiln_st_file *g = kiln_st_open(path);
    if (!g || kiln_st_count(g) != n || kiln_st_meta_count(g) != m)
        fuzz_fail("written copy does not reopen alike");
    for (int i = 0; i < n; i++) {
        const kiln_st_tensor *a = kiln_st_at(f, i), *b = kiln_st_at(g, i);
        if (strcmp(a->name, b->name) || a->dtype != b->dtype || a->ndim != b->ndim ||
            a->nbytes != b->nbytes || memcmp(a->dims, b->dims, sizeof a->dims) ||
            (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
            fuzz_fail("written copy differs");
    }
    for (int i = 0; i < m; i++)
        if (strcmp(kiln_st_meta(g, meta[2 * i]), meta[2 * i + 1]) != 0)
            fuzz_fail("written metadata differs");
    kiln_st_close(g);
    unlink(path);
    free(meta);
    free(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_json(data, size);

    kiln_error(KILN_OK, "%s", "");
    kiln_st_file *f = kiln_st_open_memory(data, size, FUZZ_NAME);
    if (!f) {
        if (!strstr(kiln_last_error(), FUZZ_NAME))
            fuzz_fail("error message does not name the file");
        return 0;
    }
    volatile unsigned sink = fuzz_touch(f);
    (void)sink;
    fuzz_round_trip(f);
    kiln_st_close(f);
    return 0;
}
