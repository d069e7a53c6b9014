/* The jansson wrapper: strict parsing flags, a nesting limit, and jansson's errors rewritten as
 * "at byte N: expected X, found Y" with N where the offending token starts. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L   /* strdup */
#endif
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/json.h"

#define SHOWN_MAX 40   /* bytes of a token or key quoted in a message before it is cut */

/* What the message says was found at the error. */
typedef enum { FOUND_TOKEN, FOUND_BYTE, FOUND_END } found_kind;

/* jansson's messages (their start) and what Kiln says instead. */
static const struct {
    const char *jansson;
    const char *expected;
    found_kind found;
} phrases[] = {
    { "end of file expected", "expected end of input after the value", FOUND_TOKEN },
    { "unexpected token", "expected a value (object, array, string, number, true, false or null)",
      FOUND_TOKEN },
    { "invalid token", "expected a value (object, array, string, number, true, false or null)",
      FOUND_TOKEN },
    { "'[' or '{' expected", "expected an object or an array", FOUND_TOKEN },
    { "string or '}' expected", "expected '\"' to start an object key, or '}'", FOUND_TOKEN },
    { "':' expected", "expected ':' after an object key", FOUND_TOKEN },
    { "'}' expected", "expected ',' or '}' in an object", FOUND_TOKEN },
    { "']' expected", "expected ',' or ']' in an array", FOUND_TOKEN },
    { "invalid escape", "expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
      FOUND_TOKEN },
    { "invalid Unicode", "expected \\u escapes that make characters (surrogates in pairs)",
      FOUND_TOKEN },
    { "premature end of input", "expected '\"' to close the string", FOUND_END },
    { "control character", "expected a string character (control characters must be escaped)",
      FOUND_BYTE },
    { "unexpected newline", "expected a string character (control characters must be escaped)",
      FOUND_BYTE },
    { "unable to decode byte", "expected valid UTF-8", FOUND_BYTE },
    { "\\u0000 is not allowed", "expected no \\u0000 (NUL is not supported in strings)",
      FOUND_TOKEN },
    { "NUL byte in object key", "expected no \\u0000 (NUL is not supported in strings)",
      FOUND_TOKEN },
    { "too big", "expected an integer within 64 bits", FOUND_TOKEN },
    { "real number overflow", "expected a real number within the range of a double",
      FOUND_TOKEN },
};

/* Copies s[0..n) into out for a message: control characters become '?', long text is cut with
 * "...". */
static void shown(const char *s, size_t n, char *out, size_t outlen)
{
    size_t keep = n > SHOWN_MAX ? SHOWN_MAX : n, o = 0;
    for (size_t i = 0; i < keep && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = c < 0x20 || c == 0x7F ? '?' : (char)c;
    }
    out[o] = '\0';
    if (n > keep && o + 4 <= outlen)
        strcpy(out + o, "...");
}

/* Where the string token that ends just before text[end] (at its closing quote) starts: the
 * last '"' before it that no backslash escapes. */
static size_t string_start(const char *text, size_t end)
{
    for (size_t i = end >= 2 ? end - 2 : 0; i > 0; i--) {
        if (text[i] != '"')
            continue;
        size_t slashes = 0;
        while (slashes < i && text[i - 1 - slashes] == '\\')
            slashes++;
        if (slashes % 2 == 0)
            return i;
    }
    return 0;
}

char *kiln_json_duplicate_key(const char *text, const kiln_json_error *err)
{
    if (!text || !err || err->status != KILN_JSON_DUPLICATE || err->end <= err->pos)
        return NULL;
    json_t *key = json_loadb(text + err->pos, err->end - err->pos, JSON_DECODE_ANY, NULL);
    char *out = json_is_string(key) ? strdup(json_string_value(key)) : NULL;
    json_decref(key);
    return out;
}

/* Fills err from jansson's error e on text[0..len). */
static void describe_error(const char *text, size_t len, const json_error_t *e,
                           kiln_json_error *err)
{
    char what[JSON_ERROR_TEXT_LENGTH];
    snprintf(what, sizeof what, "%s", e->text);
    size_t pos = e->position > 0 ? (size_t)e->position : 0;
    if (pos > len)
        pos = len;

    /* jansson ends a message with " near '<token>'" (the token read last, up to 20 bytes) or
     * " near end of file"; its position is just past that token. */
    const char *token = NULL;
    size_t token_len = 0;
    bool at_end = false;
    char *near = strstr(what, " near ");
    if (near) {
        size_t n = strlen(near);
        if (strcmp(near, " near end of file") == 0) {
            at_end = true;
        } else if (strncmp(near, " near '", 7) == 0 && n > 7 && near[n - 1] == '\'') {
            token = near + 7;
            token_len = n - 8;
        }
        *near = '\0';
    }

    switch (json_error_code(e)) {
    case json_error_duplicate_key:
        err->status = KILN_JSON_DUPLICATE;
        break;
    case json_error_numeric_overflow:
        err->status = KILN_JSON_RANGE;
        break;
    case json_error_stack_overflow:
        err->status = KILN_JSON_DEPTH;
        break;
    default:
        err->status = KILN_JSON_SYNTAX;
        break;
    }

    if (err->status == KILN_JSON_RANGE && !token) {
        /* a number longer than jansson quotes: it ends at pos */
        size_t start = pos;
        while (start > 0 && text[start - 1] && strchr("0123456789+-.eE", text[start - 1]))
            start--;
        token = text + start;
        token_len = pos - start;
    }
    char found[SHOWN_MAX + 16] = "";
    if (err->status == KILN_JSON_DUPLICATE) {
        err->end = pos;
        err->pos = string_start(text, pos);
        char *key = kiln_json_duplicate_key(text, err);
        char key_shown[SHOWN_MAX + 4];
        shown(key ? key : "?", key ? strlen(key) : 1, key_shown, sizeof key_shown);
        snprintf(err->msg, sizeof err->msg, "at byte %zu: found the key \"%s\" twice in one "
                 "object, expected distinct keys", err->pos, key_shown);
        free(key);
        return;
    }
    if (err->status == KILN_JSON_DEPTH) {
        err->pos = token && pos >= token_len ? pos - token_len : pos;
        snprintf(err->msg, sizeof err->msg, "at byte %zu: expected at most %d nested "
                 "arrays/objects, found more", err->pos, KILN_JSON_MAX_DEPTH);
        return;
    }

    const char *expected = what;
    found_kind kind = FOUND_TOKEN;
    for (size_t i = 0; i < sizeof phrases / sizeof phrases[0]; i++) {
        if (strncmp(what, phrases[i].jansson, strlen(phrases[i].jansson)) == 0) {
            expected = phrases[i].expected;
            kind = phrases[i].found;
            break;
        }
    }
    if (at_end && pos > 0 && text[pos - 1] == '\0') {
        /* a NUL byte where a token should be: jansson quotes it as an empty token, "end of file" */
        at_end = false;
        kind = FOUND_BYTE;
        pos--;
    }
    if (kind == FOUND_BYTE && pos < len) {
        /* at the offending byte itself (jansson has not consumed it) */
        err->pos = pos;
        snprintf(found, sizeof found, "byte 0x%02x", (unsigned char)text[pos]);
    } else if (kind == FOUND_END || at_end || (!token && pos >= len)) {
        err->pos = pos;
        snprintf(found, sizeof found, "end of input");
    } else if (token) {
        char tok[SHOWN_MAX + 4];
        err->pos = pos >= token_len ? pos - token_len : 0;
        shown(token, token_len, tok, sizeof tok);
        snprintf(found, sizeof found, "'%s'", tok);
    } else {
        err->pos = pos;   /* a token longer than jansson quotes: the error is just past it */
    }
    snprintf(err->msg, sizeof err->msg, "at byte %zu: %s%s%s", err->pos, expected,
             found[0] ? ", found " : "", found);
}

/* Whether v nests more than KILN_JSON_MAX_DEPTH - depth further arrays/objects. */
static bool too_deep(const json_t *v, int depth)
{
    if (!json_is_object(v) && !json_is_array(v))
        return false;
    if (depth >= KILN_JSON_MAX_DEPTH)
        return true;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (too_deep(json_array_get(v, i), depth + 1))
                return true;
        return false;
    }
    const char *key;
    json_t *item;
    json_object_foreach((json_t *)v, key, item) {
        if (too_deep(item, depth + 1))
            return true;
    }
    return false;
}

json_t *kiln_json_parse(const char *text, size_t len, unsigned flags, kiln_json_error *err)
{
    kiln_json_error scratch;
    if (!err)
        err = &scratch;
    err->status = KILN_JSON_OK;
    err->pos = err->end = 0;
    err->msg[0] = '\0';
    if (!text)
        len = 0;
    if (len > INT_MAX) {   /* jansson counts positions in an int */
        err->status = KILN_JSON_SYNTAX;
        snprintf(err->msg, sizeof err->msg, "at byte 0: expected at most %d bytes of JSON, "
                 "found %zu", INT_MAX, len);
        return NULL;
    }
    size_t jflags = JSON_DECODE_ANY;
    if (!(flags & KILN_JSON_KEEP_LAST))
        jflags |= JSON_REJECT_DUPLICATES;
    if (flags & KILN_JSON_INT_AS_REAL)
        jflags |= JSON_DECODE_INT_AS_REAL;
    json_error_t e;
    json_t *v = json_loadb(text ? text : "", len, jflags, &e);
    if (!v) {
        describe_error(text ? text : "", len, &e, err);
        return NULL;
    }
    if (too_deep(v, 0)) {
        err->status = KILN_JSON_DEPTH;
        snprintf(err->msg, sizeof err->msg, "expected at most %d nested arrays/objects, found "
                 "more", KILN_JSON_MAX_DEPTH);
        json_decref(v);
        return NULL;
    }
    return v;
}

const char *kiln_json_type_name(const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    default: return "null";
    }
}

bool kiln_json_utf8_valid(const char *s)
{
    json_t *v = json_string(s);   /* jansson refuses strings that are not UTF-8 */
    bool ok = v != NULL;
    json_decref(v);
    return ok;
}
