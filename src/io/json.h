/* A small strict JSON parser (RFC 8259) into a read-only tree, and a string buffer that writes
 * escaped JSON strings. Enough for safetensors headers; not a general-purpose library. */
#ifndef KILN_IO_JSON_H
#define KILN_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_JSON_MAX_DEPTH 64  /* most nested arrays/objects the parser accepts */

/* The kind of a JSON value. */
typedef enum {
    KILN_JSON_NULL, KILN_JSON_BOOL, KILN_JSON_NUMBER, KILN_JSON_STRING, KILN_JSON_ARRAY,
    KILN_JSON_OBJECT
} kiln_json_kind;

/* One parsed JSON value; the root owns the whole tree. */
typedef struct kiln_json kiln_json;

/* Parses exactly one value from text[0..len) (whitespace around it allowed; strings must be
 * UTF-8 without \u0000). NULL on error, with "at byte N: expected X, found Y" in err. */
kiln_json *kiln_json_parse(const char *text, size_t len, char *err, size_t errlen);
/* Frees a tree returned by kiln_json_parse (NULL is fine). */
void kiln_json_free(kiln_json *root);

/* The kind of v; KILN_JSON_NULL for a NULL pointer. */
kiln_json_kind kiln_json_type(const kiln_json *v);
/* A readable name of a kind ("object", "string", ...). */
const char *kiln_json_kind_name(kiln_json_kind k);
/* Items of an array or members of an object; 0 for anything else. */
size_t kiln_json_len(const kiln_json *v);
/* Item i of an array, or NULL if v is not an array or i is out of range. */
const kiln_json *kiln_json_at(const kiln_json *v, size_t i);
/* Key of member i of an object, or NULL. */
const char *kiln_json_key_at(const kiln_json *v, size_t i);
/* Value of member i of an object, or NULL. */
const kiln_json *kiln_json_value_at(const kiln_json *v, size_t i);
/* Value of the first member named key of an object, or NULL (linear search). */
const kiln_json *kiln_json_get(const kiln_json *v, const char *key);
/* The NUL-terminated UTF-8 text of a string, or NULL if v is not a string. */
const char *kiln_json_string(const kiln_json *v);
/* Value of a number written as an integer that fits int64; *ok (may be NULL) says whether it
 * was one (0 is returned otherwise). */
int64_t kiln_json_int(const kiln_json *v, bool *ok);
/* Value of a number as a double (nearest), or 0 if v is not a number. */
double kiln_json_number(const kiln_json *v);
/* Value of a boolean; false for anything else. */
bool kiln_json_bool(const kiln_json *v);

/* A growable text buffer for writing JSON; once an allocation fails it stays failed. */
typedef struct {
    char *data;   /* NUL-terminated text (NULL while empty) */
    size_t len;   /* bytes of text, without the NUL */
    size_t cap;   /* bytes allocated */
    bool failed;  /* an allocation failed; the text is incomplete */
} kiln_json_buf;

/* Appends n raw bytes. */
void kiln_json_buf_append(kiln_json_buf *b, const char *s, size_t n);
/* Appends a NUL-terminated raw string. */
void kiln_json_buf_puts(kiln_json_buf *b, const char *s);
/* Appends printf-style formatted raw text. */
void kiln_json_buf_printf(kiln_json_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a quoted JSON string, escaping quotes, backslashes and control characters.
 * Returns false (appending nothing) if s is not valid UTF-8. */
bool kiln_json_buf_string(kiln_json_buf *b, const char *s);
/* Frees the buffer's memory and empties it. */
void kiln_json_buf_free(kiln_json_buf *b);

/* Whether s[0..len) is valid UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool kiln_utf8_valid(const char *s, size_t len);

#endif
