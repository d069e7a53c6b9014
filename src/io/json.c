/* Strict JSON parser (recursive descent with a depth limit) and an escaping string buffer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "io/json.h"

struct kiln_json {
    kiln_json_kind kind;
    bool boolean;        /* KILN_JSON_BOOL */
    bool is_int;         /* NUMBER written as an integer that fits int64 */
    int64_t ival;        /* the integer when is_int */
    double num;          /* NUMBER as a double */
    char *str;           /* STRING text */
    size_t n, cap;       /* ARRAY items / OBJECT members */
    char **keys;         /* OBJECT member keys */
    kiln_json **items;   /* ARRAY items / OBJECT member values */
};

typedef struct {
    const char *text;
    size_t len, pos;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
} parser;

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (n bytes available), or 0 if it is invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0) {
        len = 2; cp = c & 0x1F; min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3; cp = c & 0x0F; min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4; cp = c & 0x07; min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool kiln_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_seq_len(u + i, len - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

/* Writes code point cp as UTF-8 into out; returns the byte count. */
static size_t utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- errors and scanning ---- */

/* Records the first error: "at byte N: expected X, found Y". Always returns NULL. */
static void *fail_at(parser *p, size_t pos, const char *expected)
{
    if (p->failed)
        return NULL;
    p->failed = true;
    if (!p->err || p->errlen == 0)
        return NULL;
    char found[32];
    if (pos >= p->len) {
        snprintf(found, sizeof found, "end of input");
    } else {
        unsigned char c = (unsigned char)p->text[pos];
        if (c >= 0x20 && c < 0x7F)
            snprintf(found, sizeof found, "'%c'", c);
        else
            snprintf(found, sizeof found, "byte 0x%02x", c);
    }
    snprintf(p->err, p->errlen, "at byte %zu: expected %s, found %s", pos, expected, found);
    return NULL;
}

/* Records an error at the current position. */
static void *fail(parser *p, const char *expected)
{
    return fail_at(p, p->pos, expected);
}

/* Records an allocation failure. Always returns NULL. */
static void *fail_oom(parser *p)
{
    if (!p->failed && p->err && p->errlen)
        snprintf(p->err, p->errlen, "at byte %zu: out of memory", p->pos);
    p->failed = true;
    return NULL;
}

static void skip_ws(parser *p)
{
    while (p->pos < p->len) {
        char c = p->text[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* The byte at the current position, or -1 at the end. */
static int peek(const parser *p)
{
    return p->pos < p->len ? (unsigned char)p->text[p->pos] : -1;
}

/* Consumes c if it is next. */
static bool eat(parser *p, char c)
{
    if (peek(p) != (unsigned char)c)
        return false;
    p->pos++;
    return true;
}

/* ---- tree ---- */

static kiln_json *node_new(parser *p, kiln_json_kind kind)
{
    kiln_json *v = calloc(1, sizeof *v);
    if (!v)
        return fail_oom(p);
    v->kind = kind;
    return v;
}

void kiln_json_free(kiln_json *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        kiln_json_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

/* Appends child (and key, for objects) to container v, taking ownership of both. */
static bool node_add(parser *p, kiln_json *v, char *key, kiln_json *child)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 4;
        kiln_json **items = realloc(v->items, cap * sizeof *items);
        bool ok = items != NULL;
        if (ok)
            v->items = items;
        if (ok && v->kind == KILN_JSON_OBJECT) {
            char **keys = realloc(v->keys, cap * sizeof *keys);
            ok = keys != NULL;
            if (ok)
                v->keys = keys;
        }
        if (!ok) {
            free(key);
            kiln_json_free(child);
            fail_oom(p);
            return false;
        }
        v->cap = cap;
    }
    if (v->kind == KILN_JSON_OBJECT)
        v->keys[v->n] = key;
    v->items[v->n++] = child;
    return true;
}

/* ---- values ---- */

static kiln_json *parse_value(parser *p);

/* Reads 4 hex digits at the current position into *out. */
static bool parse_hex4(parser *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int c = peek(p);
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else
            return fail(p, "a hex digit in \\uXXXX"), false;
        v = v * 16 + d;
        p->pos++;
    }
    *out = v;
    return true;
}

/* Decodes a \uXXXX escape (the "\u" already consumed), joining surrogate pairs. */
static bool parse_unicode_escape(parser *p, uint32_t *cp)
{
    size_t start = p->pos - 2;
    if (!parse_hex4(p, cp))
        return false;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return fail_at(p, start, "a high surrogate before a low one (lone \\uDC00-\\uDFFF)"),
               false;
    if (*cp >= 0xD800 && *cp <= 0xDBFF) {
        uint32_t lo;
        if (!eat(p, '\\') || !eat(p, 'u'))
            return fail(p, "\\u and a low surrogate after a high surrogate"), false;
        if (!parse_hex4(p, &lo))
            return false;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail_at(p, p->pos - 6, "a low surrogate \\uDC00-\\uDFFF"), false;
        *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (*cp == 0)
        return fail_at(p, start, "no \\u0000 (NUL is not supported in strings)"), false;
    return true;
}

/* Decodes one escape sequence (the backslash already consumed) into out; returns its length. */
static size_t parse_escape(parser *p, char *out)
{
    int c = peek(p);
    p->pos++;
    switch (c) {
    case '"': *out = '"'; return 1;
    case '\\': *out = '\\'; return 1;
    case '/': *out = '/'; return 1;
    case 'b': *out = '\b'; return 1;
    case 'f': *out = '\f'; return 1;
    case 'n': *out = '\n'; return 1;
    case 'r': *out = '\r'; return 1;
    case 't': *out = '\t'; return 1;
    case 'u': {
        uint32_t cp;
        return parse_unicode_escape(p, &cp) ? utf8_encode(cp, out) : 0;
    }
    default:
        p->pos--;
        fail(p, "an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
        return 0;
    }
}

/* Finds the closing quote of the string whose body starts at p->pos; returns its position
 * or len if there is none. Escapes are skipped, not checked. */
static size_t find_string_end(const parser *p)
{
    size_t i = p->pos;
    while (i < p->len && p->text[i] != '"')
        i += p->text[i] == '\\' ? 2 : 1;
    return i < p->len ? i : p->len;
}

/* Parses a string at the current position (on its opening quote) into a new NUL-terminated
 * buffer. Decoded text is never longer than the source, which bounds the allocation. */
static char *parse_string_raw(parser *p)
{
    p->pos++;
    size_t end = find_string_end(p);
    if (end >= p->len)
        return fail_at(p, p->len, "'\"' to close the string");
    char *out = malloc(end - p->pos + 1);
    if (!out)
        return fail_oom(p);
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->text[p->pos];
        size_t k;
        if (c < 0x20) {
            k = 0;
            fail(p, "a string character (control characters must be escaped)");
        } else if (c == '\\') {
            p->pos++;
            k = parse_escape(p, out + n);
        } else {
            k = utf8_seq_len((const unsigned char *)p->text + p->pos, end - p->pos);
            if (k == 0)
                fail(p, "valid UTF-8 in the string");
            else
                memcpy(out + n, p->text + p->pos, k);
            p->pos += k;
        }
        if (k == 0) {
            free(out);
            return NULL;
        }
        n += k;
    }
    p->pos++;
    out[n] = '\0';
    return out;
}

static kiln_json *parse_string(parser *p)
{
    char *s = parse_string_raw(p);
    if (!s)
        return NULL;
    kiln_json *v = node_new(p, KILN_JSON_STRING);
    if (!v) {
        free(s);
        return NULL;
    }
    v->str = s;
    return v;
}

/* Consumes one or more decimal digits; false if there is none. */
static bool eat_digits(parser *p)
{
    size_t start = p->pos;
    while (peek(p) >= '0' && peek(p) <= '9')
        p->pos++;
    return p->pos > start;
}

/* Exact int64 value of the optional '-' and digits in s[0..n); false if it does not fit. */
static bool parse_int64(const char *s, size_t n, int64_t *out)
{
    bool neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t mag = 0;
    for (size_t i = neg ? 1 : 0; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (mag > (limit - d) / 10)
            return false;
        mag = mag * 10 + d;
    }
    if (neg)
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    else
        *out = (int64_t)mag;
    return true;
}

/* Number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static kiln_json *parse_number(parser *p)
{
    size_t start = p->pos;
    bool integral = true;
    eat(p, '-');
    if (eat(p, '0')) {
        if (peek(p) >= '0' && peek(p) <= '9')
            return fail(p, "no leading zeros in a number");
    } else if (!eat_digits(p)) {
        return fail(p, "a digit");
    }
    if (eat(p, '.')) {
        integral = false;
        if (!eat_digits(p))
            return fail(p, "a digit after the decimal point");
    }
    if (eat(p, 'e') || eat(p, 'E')) {
        integral = false;
        if (!eat(p, '+'))
            eat(p, '-');
        if (!eat_digits(p))
            return fail(p, "a digit in the exponent");
    }
    size_t n = p->pos - start;
    char *copy = malloc(n + 1);
    kiln_json *v = copy ? node_new(p, KILN_JSON_NUMBER) : fail_oom(p);
    if (v) {
        memcpy(copy, p->text + start, n);
        copy[n] = '\0';
        v->num = strtod(copy, NULL);   /* assumes the "C" numeric locale */
        v->is_int = integral && parse_int64(copy, n, &v->ival);
    }
    free(copy);
    return v;
}

/* Matches the keyword word (true, false, null) at the current position. */
static bool eat_word(parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

static kiln_json *parse_literal(parser *p)
{
    kiln_json *v = NULL;
    if (eat_word(p, "true")) {
        if ((v = node_new(p, KILN_JSON_BOOL)))
            v->boolean = true;
    } else if (eat_word(p, "false")) {
        v = node_new(p, KILN_JSON_BOOL);
    } else if (eat_word(p, "null")) {
        v = node_new(p, KILN_JSON_NULL);
    } else {
        fail(p, "a value (object, array, string, number, true, false or null)");
    }
    return v;
}

/* Enters one more level of nesting; false (with an error) past the limit. */
static bool enter(parser *p)
{
    if (++p->depth > KILN_JSON_MAX_DEPTH) {
        char msg[64];
        snprintf(msg, sizeof msg, "at most %d nested arrays/objects", KILN_JSON_MAX_DEPTH);
        fail(p, msg);
        return false;
    }
    return true;
}

static kiln_json *parse_array(parser *p)
{
    if (!enter(p))
        return NULL;
    p->pos++;
    kiln_json *v = node_new(p, KILN_JSON_ARRAY);
    if (!v)
        return NULL;
    skip_ws(p);
    if (eat(p, ']')) {
        p->depth--;
        return v;
    }
    for (;;) {
        kiln_json *item = parse_value(p);
        if (!item || !node_add(p, v, NULL, item))
            break;
        skip_ws(p);
        if (eat(p, ']')) {
            p->depth--;
            return v;
        }
        if (!eat(p, ',')) {
            fail(p, "',' or ']' in an array");
            break;
        }
    }
    kiln_json_free(v);
    return NULL;
}

/* Parses one "key": value member into v. */
static bool parse_member(parser *p, kiln_json *v)
{
    skip_ws(p);
    if (peek(p) != '"')
        return fail(p, "'\"' to start an object key"), false;
    char *key = parse_string_raw(p);
    if (!key)
        return false;
    skip_ws(p);
    if (!eat(p, ':')) {
        free(key);
        return fail(p, "':' after an object key"), false;
    }
    kiln_json *value = parse_value(p);
    if (!value) {
        free(key);
        return false;
    }
    return node_add(p, v, key, value);
}

static kiln_json *parse_object(parser *p)
{
    if (!enter(p))
        return NULL;
    p->pos++;
    kiln_json *v = node_new(p, KILN_JSON_OBJECT);
    if (!v)
        return NULL;
    skip_ws(p);
    if (eat(p, '}')) {
        p->depth--;
        return v;
    }
    for (;;) {
        if (!parse_member(p, v))
            break;
        skip_ws(p);
        if (eat(p, '}')) {
            p->depth--;
            return v;
        }
        if (!eat(p, ',')) {
            fail(p, "',' or '}' in an object");
            break;
        }
    }
    kiln_json_free(v);
    return NULL;
}

static kiln_json *parse_value(parser *p)
{
    skip_ws(p);
    int c = peek(p);
    if (c == '{')
        return parse_object(p);
    if (c == '[')
        return parse_array(p);
    if (c == '"')
        return parse_string(p);
    if (c == '-' || (c >= '0' && c <= '9'))
        return parse_number(p);
    return parse_literal(p);
}

kiln_json *kiln_json_parse(const char *text, size_t len, char *err, size_t errlen)
{
    parser p = { .text = text, .len = len, .err = err, .errlen = errlen };
    if (err && errlen)
        err[0] = '\0';
    if (!text)
        p.len = 0;
    kiln_json *root = parse_value(&p);
    if (!root)
        return NULL;
    skip_ws(&p);
    if (p.pos != p.len) {
        fail(&p, "end of input after the value");
        kiln_json_free(root);
        return NULL;
    }
    return root;
}

/* ---- accessors ---- */

kiln_json_kind kiln_json_type(const kiln_json *v)
{
    return v ? v->kind : KILN_JSON_NULL;
}

const char *kiln_json_kind_name(kiln_json_kind k)
{
    static const char *const names[] = { "null", "boolean", "number", "string", "array",
                                         "object" };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

size_t kiln_json_len(const kiln_json *v)
{
    return v && (v->kind == KILN_JSON_ARRAY || v->kind == KILN_JSON_OBJECT) ? v->n : 0;
}

const kiln_json *kiln_json_at(const kiln_json *v, size_t i)
{
    return v && v->kind == KILN_JSON_ARRAY && i < v->n ? v->items[i] : NULL;
}

const char *kiln_json_key_at(const kiln_json *v, size_t i)
{
    return v && v->kind == KILN_JSON_OBJECT && i < v->n ? v->keys[i] : NULL;
}

const kiln_json *kiln_json_value_at(const kiln_json *v, size_t i)
{
    return v && v->kind == KILN_JSON_OBJECT && i < v->n ? v->items[i] : NULL;
}

const kiln_json *kiln_json_get(const kiln_json *v, const char *key)
{
    if (!v || v->kind != KILN_JSON_OBJECT || !key)
        return NULL;
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0)
            return v->items[i];
    return NULL;
}

const char *kiln_json_string(const kiln_json *v)
{
    return v && v->kind == KILN_JSON_STRING ? v->str : NULL;
}

int64_t kiln_json_int(const kiln_json *v, bool *ok)
{
    bool is_int = v && v->kind == KILN_JSON_NUMBER && v->is_int;
    if (ok)
        *ok = is_int;
    return is_int ? v->ival : 0;
}

double kiln_json_number(const kiln_json *v)
{
    return v && v->kind == KILN_JSON_NUMBER ? v->num : 0.0;
}

bool kiln_json_bool(const kiln_json *v)
{
    return v && v->kind == KILN_JSON_BOOL && v->boolean;
}

/* ---- writing ---- */

/* Makes room for n more bytes plus a NUL; false once the buffer has failed. */
static bool buf_reserve(kiln_json_buf *b, size_t n)
{
    if (b->failed)
        return false;
    if (n >= SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return false;
    }
    if (b->len + n + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) {
        b->failed = true;
        return false;
    }
    b->data = data;
    b->cap = cap;
    return true;
}

void kiln_json_buf_append(kiln_json_buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kiln_json_buf_puts(kiln_json_buf *b, const char *s)
{
    kiln_json_buf_append(b, s, strlen(s));
}

void kiln_json_buf_printf(kiln_json_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
    } else if (buf_reserve(b, (size_t)n)) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

/* The short escape of byte c (n, t, ...), or 0 if it has none. */
static char short_escape(unsigned char c)
{
    switch (c) {
    case '"': return '"';
    case '\\': return '\\';
    case '\b': return 'b';
    case '\f': return 'f';
    case '\n': return 'n';
    case '\r': return 'r';
    case '\t': return 't';
    default: return 0;
    }
}

bool kiln_json_buf_string(kiln_json_buf *b, const char *s)
{
    size_t len = strlen(s);
    if (!kiln_utf8_valid(s, len))
        return false;
    kiln_json_buf_append(b, "\"", 1);
    size_t run = 0;   /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        kiln_json_buf_append(b, s + run, i - run);
        char e = short_escape(c);
        if (e)
            kiln_json_buf_printf(b, "\\%c", e);
        else
            kiln_json_buf_printf(b, "\\u%04x", c);
        run = i + 1;
    }
    kiln_json_buf_append(b, s + run, len - run);
    kiln_json_buf_append(b, "\"", 1);
    return true;
}

void kiln_json_buf_free(kiln_json_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}
