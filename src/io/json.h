/* JSON through jansson (Debian's libjansson-dev): a strict parse of untrusted text whose errors
 * say where the text is wrong and what was expected, and the few helpers the readers and writers
 * share. Values are jansson's json_t: read them with its accessors (json_object_get,
 * json_integer_value, ...), free them with json_decref. */
#ifndef KILN_IO_JSON_H
#define KILN_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#define KILN_JSON_MAX_DEPTH 64  /* most nested arrays/objects kiln_json_parse accepts */

/* Why kiln_json_parse failed. */
typedef enum {
    KILN_JSON_OK,         /* no error */
    KILN_JSON_SYNTAX,     /* not JSON, not UTF-8, \u0000 in a string, or out of memory */
    KILN_JSON_DUPLICATE,  /* an object has a key twice */
    KILN_JSON_RANGE,      /* an integer outside int64, or a real outside a double's range */
    KILN_JSON_DEPTH,      /* nested deeper than KILN_JSON_MAX_DEPTH */
} kiln_json_status;

/* What kiln_json_parse found wrong, and where. */
typedef struct {
    kiln_json_status status;  /* KILN_JSON_OK after a successful parse */
    size_t pos;               /* byte of the text where the problem starts (0 for DEPTH) */
    size_t end;               /* DUPLICATE: the byte after the repeated key's closing quote */
    char msg[256];            /* "at byte N: expected X, found Y"; "" after a successful parse */
} kiln_json_error;

/* Options of kiln_json_parse, or'ed; 0 is strict. */
enum {
    KILN_JSON_KEEP_LAST = 1,    /* a repeated key replaces its earlier value instead of failing */
    KILN_JSON_INT_AS_REAL = 2,  /* every number is read as a real, so no integer is out of range */
};

/* Parses exactly one JSON value of any kind from text[0..len) (whitespace around it allowed):
 * UTF-8 without \u0000, every key once per object, integers within int64, reals within a
 * double's range, at most KILN_JSON_MAX_DEPTH nested arrays/objects; flags relax the second and
 * third rules. NULL on error, described in *err (err may be NULL). */
json_t *kiln_json_parse(const char *text, size_t len, unsigned flags, kiln_json_error *err);

/* The key that a KILN_JSON_DUPLICATE error err found twice in text, decoded, as a new string
 * (free it); NULL for any other error or if out of memory. */
char *kiln_json_duplicate_key(const char *text, const kiln_json_error *err);

/* A readable name of v's type: "object", "array", "string", "number", "boolean" or "null"
 * (also for a NULL pointer). */
const char *kiln_json_type_name(const json_t *v);

/* Whether the NUL-terminated s is valid UTF-8 (no overlong forms, surrogates or code points past
 * U+10FFFF), as JSON strings written with jansson must be. False also if out of memory. */
bool kiln_json_utf8_valid(const char *s);

#endif
