/* Tests of the JSON wrapper (jansson) and of safetensors reading and writing, including a
 * battery of truncated, bit-flipped and hand-crafted corrupt files that must fail cleanly. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "check.h"
#include "core/error.h"
#include "io/json.h"
#include "io/safetensors.h"

/* ---- helpers ---- */

/* A unique file name in the working directory: test_st_<pid>_<tag>.safetensors */
static const char *temp_path(const char *tag)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "test_st_%ld_%s.safetensors", (long)getpid(), tag);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, len, fp) != len) {
        perror(path);
        exit(2);
    }
    fclose(fp);
}

/* The whole file; the caller frees it. */
static unsigned char *read_bytes(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        perror(path);
        exit(2);
    }
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        perror(path);
        exit(2);
    }
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* A file of an explicit length prefix, header bytes and data bytes. */
static void write_parts(const char *path, uint64_t header_len, const char *header, size_t hlen,
                        const void *data, size_t dlen)
{
    unsigned char *buf = malloc(8 + hlen + dlen + 1);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(buf + 8, header, hlen);
    if (dlen)
        memcpy(buf + 8 + hlen, data, dlen);
    write_bytes(path, buf, 8 + hlen + dlen);
    free(buf);
}

/* A file with a correct length prefix for header, followed by dlen bytes of data. */
static void write_raw(const char *path, const char *header, const void *data, size_t dlen)
{
    write_parts(path, strlen(header), header, strlen(header), data, dlen);
}

/* Opens path expecting failure with a message naming the file and containing want (if set). */
static void expect_open_fails(const char *path, const char *want, const char *what)
{
    kiln_error(KILN_OK, "%s", "");
    kiln_st_file *f = kiln_st_open(path);
    const char *msg = kiln_last_error();
    CHECK(f == NULL, "%s: open should fail", what);
    kiln_st_close(f);
    CHECK(msg[0] != '\0' && strstr(msg, path) != NULL, "%s: message names the file: '%s'", what,
          msg);
    if (want)
        CHECK(strstr(msg, want) != NULL, "%s: message '%s' should contain '%s'", what, msg, want);
}

/* Writes header + data to a temp file and expects opening it to fail with want. */
static void expect_bad_header(const char *tag, const char *header, size_t dlen,
                              const char *want)
{
    static const unsigned char zeros[256];
    const char *path = temp_path(tag);
    write_raw(path, header, zeros, dlen);
    expect_open_fails(path, want, tag);
    remove(path);
}

/* Whether any file in the working directory starts with prefix. */
static bool file_with_prefix_exists(const char *prefix)
{
    DIR *d = opendir(".");
    bool found = false;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            found = true;
    if (d)
        closedir(d);
    return found;
}

/* ---- JSON (jansson through src/io/json.h) ---- */

static void test_json_values(void)
{
    const char *text = " {\"a\": [1, -2.5, true, false, null], \"b\": {\"c\": \"d\"}, \"z\": 7} ";
    kiln_json_error err;
    json_t *root = kiln_json_parse(text, strlen(text), 0, &err);
    CHECK(root != NULL && err.status == KILN_JSON_OK, "parse: %s", err.msg);
    if (!root)
        return;
    CHECK(json_is_object(root) && json_object_size(root) == 3, "object of 3");
    const json_t *a = json_object_get(root, "a");
    CHECK(json_is_array(a) && json_array_size(a) == 5, "array of 5");
    CHECK(json_is_integer(json_array_get(a, 0)) && json_integer_value(json_array_get(a, 0)) == 1,
          "int 1");
    CHECK(json_is_real(json_array_get(a, 1)) && json_number_value(json_array_get(a, 1)) == -2.5,
          "-2.5 is a real");
    CHECK(json_is_true(json_array_get(a, 2)) && json_is_false(json_array_get(a, 3)), "bools");
    CHECK(json_is_null(json_array_get(a, 4)) && json_array_get(a, 5) == NULL, "null, end");
    const char *keys[3], *key;
    json_t *value;
    size_t k = 0;
    json_object_foreach(root, key, value)
        keys[k++] = key;
    CHECK(k == 3 && strcmp(keys[0], "a") == 0 && strcmp(keys[1], "b") == 0 &&
          strcmp(keys[2], "z") == 0, "key order kept");
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(root, "b"), "c")), "d") == 0,
          "nested string");
    CHECK(strcmp(kiln_json_type_name(a), "array") == 0 &&
          strcmp(kiln_json_type_name(json_array_get(a, 1)), "number") == 0 &&
          strcmp(kiln_json_type_name(json_array_get(a, 2)), "boolean") == 0 &&
          strcmp(kiln_json_type_name(NULL), "null") == 0, "type names");
    json_decref(root);
}

static void test_json_duplicates(void)
{
    /* refused strictly: which value would count is a guess (Python's reader takes the last) */
    const char *text = "{\"a\": [1], \"b\": 2, \"a\": 7}";
    kiln_json_error err;
    json_t *v = kiln_json_parse(text, strlen(text), 0, &err);
    CHECK(!v && err.status == KILN_JSON_DUPLICATE && err.pos == 19 &&
          strstr(err.msg, "at byte 19: found the key \"a\" twice"), "duplicate: %s", err.msg);
    char *key = kiln_json_duplicate_key(text, &err);
    CHECK(key && strcmp(key, "a") == 0, "duplicate key %s", key ? key : "(null)");
    free(key);
    v = kiln_json_parse(text, strlen(text), KILN_JSON_KEEP_LAST, &err);
    CHECK(v && json_integer_value(json_object_get(v, "a")) == 7, "KEEP_LAST: last wins");
    json_decref(v);

    /* a key longer than jansson quotes, with escaped quotes and backslashes, nested */
    text = "[{\"k\": {\"a long key, \\\"quoted\\\" \\\\\": 1, \"x\": 2, "
           "\"a long key, \\\"quoted\\\" \\\\\": 3}}]";
    v = kiln_json_parse(text, strlen(text), 0, &err);
    key = kiln_json_duplicate_key(text, &err);
    CHECK(!v && key && strcmp(key, "a long key, \"quoted\" \\") == 0 && text[err.pos] == '"' &&
          err.end == strlen(text) - 6, "long duplicate key: %s (%s)", key ? key : "(null)",
          err.msg);
    free(key);
    v = kiln_json_parse("{\"a\":1,\"b\":{\"a\":2}}", 19, 0, &err);
    CHECK(v != NULL && kiln_json_duplicate_key("", &err) == NULL, "same key in two objects");
    json_decref(v);
}

static void test_json_escapes(void)
{
    const char *text = "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9\\u20AC \\ud83d\\ude00 raw \xc3\xa9\"";
    const char *want = "q\" b\\ s/ \b\f\n\r\t \xc3\xa9\xe2\x82\xac \xf0\x9f\x98\x80 raw \xc3\xa9";
    kiln_json_error err;
    json_t *v = kiln_json_parse(text, strlen(text), 0, &err);
    CHECK(v && strcmp(json_string_value(v), want) == 0, "escapes decode: %s", err.msg);
    json_decref(v);

    /* the writer's escaping round-trips, including control characters */
    const char *s = "line1\nline2 \"quoted\" back\\slash \x01\x1f\x7f tab\t \xe6\x97\xa5 \xf0\x9f\x98\x80";
    json_t *str = json_string(s);
    char *out = json_dumps(str, JSON_COMPACT | JSON_ENCODE_ANY);
    CHECK(out && strchr(out, '\n') == NULL && strstr(out, "\\u0001"), "controls escaped: %s",
          out ? out : "(null)");
    v = out ? kiln_json_parse(out, strlen(out), 0, &err) : NULL;
    CHECK(v && strcmp(json_string_value(v), s) == 0, "escape round trip");
    json_decref(v);
    json_decref(str);
    free(out);

    /* only UTF-8 is written */
    static const char *const bad[] = { "bad \xff byte", "\xc0\xaf", "\xed\xa0\x80",
                                       "\xf4\x90\x80\x80", "cut \xe2\x82" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        CHECK(!kiln_json_utf8_valid(bad[k]) && json_string(bad[k]) == NULL,
              "invalid UTF-8 #%zu refused", k);
    CHECK(kiln_json_utf8_valid(s) && kiln_json_utf8_valid(""), "valid UTF-8 accepted");
}

static void test_json_numbers(void)
{
    static const struct {
        const char *text;
        kiln_json_status status;
        bool is_int;
        int64_t i;
        double d;   /* the value, or (out of range) the value read with KILN_JSON_INT_AS_REAL */
    } cases[] = {
        { "0", KILN_JSON_OK, true, 0, 0.0 },
        { "-0", KILN_JSON_OK, true, 0, 0.0 },
        { "9223372036854775807", KILN_JSON_OK, true, INT64_MAX, 9223372036854775807.0 },
        { "-9223372036854775808", KILN_JSON_OK, true, INT64_MIN, -9223372036854775808.0 },
        { "9223372036854775808", KILN_JSON_RANGE, false, 0, 9223372036854775808.0 },
        { "-9223372036854775809", KILN_JSON_RANGE, false, 0, -9223372036854775809.0 },
        { "123456789012345678901234567890", KILN_JSON_RANGE, false, 0, 1.2345678901234568e29 },
        { "1e3", KILN_JSON_OK, false, 0, 1000.0 },
        { "4.0", KILN_JSON_OK, false, 0, 4.0 },
        { "1.5E-2", KILN_JSON_OK, false, 0, 0.015 },
        { "-12.25e+1", KILN_JSON_OK, false, 0, -122.5 },
        { "1e-400", KILN_JSON_OK, false, 0, 0.0 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const char *text = cases[k].text;
        kiln_json_error err;
        json_t *v = kiln_json_parse(text, strlen(text), 0, &err);
        CHECK(err.status == cases[k].status && (v != NULL) == (cases[k].status == KILN_JSON_OK),
              "%s: status %d: %s", text, (int)err.status, err.msg);
        if (!v) {
            CHECK(strstr(err.msg, "at byte 0: expected an integer within 64 bits"), "%s: %s",
                  text, err.msg);
            v = kiln_json_parse(text, strlen(text), KILN_JSON_INT_AS_REAL, &err);
            CHECK(v && json_is_real(v), "%s as a real: %s", text, err.msg);
        }
        CHECK(json_is_integer(v) == cases[k].is_int &&
              (!cases[k].is_int || json_integer_value(v) == cases[k].i), "%s: int", text);
        CHECK(v && check_close(json_number_value(v), cases[k].d, 1e-15), "%s: double %.17g",
              text, json_number_value(v));
        json_decref(v);
    }
    kiln_json_error err;
    CHECK(!kiln_json_parse("[1, 1e400]", 10, KILN_JSON_INT_AS_REAL, &err) &&
          err.status == KILN_JSON_RANGE && strstr(err.msg, "at byte 4: expected a real number"),
          "1e400: %s", err.msg);
}

/* n nested arrays: "[[[...]]]" */
static char *nested(int n)
{
    char *s = malloc(2 * (size_t)n + 1);
    memset(s, '[', (size_t)n);
    memset(s + n, ']', (size_t)n);
    s[2 * n] = '\0';
    return s;
}

static void test_json_depth(void)
{
    kiln_json_error err;
    char *s = nested(KILN_JSON_MAX_DEPTH);
    json_t *v = kiln_json_parse(s, strlen(s), 0, &err);
    CHECK(v != NULL, "depth %d accepted: %s", KILN_JSON_MAX_DEPTH, err.msg);
    json_decref(v);
    free(s);
    s = nested(KILN_JSON_MAX_DEPTH + 1);
    v = kiln_json_parse(s, strlen(s), 0, &err);
    CHECK(v == NULL && err.status == KILN_JSON_DEPTH && strstr(err.msg, "nested"),
          "depth %d rejected: %s", KILN_JSON_MAX_DEPTH + 1, err.msg);
    free(s);
    s = nested(1000000);
    v = kiln_json_parse(s, strlen(s), 0, &err);
    CHECK(v == NULL && err.status == KILN_JSON_DEPTH && strstr(err.msg, "at byte 2048"),
          "a million levels rejected early (jansson stops at 2048): %s", err.msg);
    free(s);
    const char *objs = "{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{}}}}}}";
    v = kiln_json_parse(objs, strlen(objs), 0, &err);
    CHECK(v != NULL, "nested objects");
    json_decref(v);
}

static void test_json_errors(void)
{
    static const char *const bad[] = {
        "", " ", "{", "}", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{1:2}", "{\"a\"}",
        "[1 2]", "1 2", "01", "-", "-a", "1.", ".5", "+1", "1e", "1e+", "tru", "nul", "True",
        "NaN", "Infinity", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"",
        "\"\\ud800x\"", "\"\\ud800\\u0041\"", "\"\\udc00\"", "\"\\u0000\"", "\"a\nb\"",
        "\"\t\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"", "'a'", "[1]x", "{\"a\":1}}", "\"\\", "{\"a\\u0000\":1}", "[\x7f]",
        "[1e400]", "{\"a\":1,\"a\":2}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        kiln_json_error err;
        json_t *v = kiln_json_parse(bad[k], strlen(bad[k]), 0, &err);
        CHECK(v == NULL && err.status != KILN_JSON_OK && strncmp(err.msg, "at byte ", 8) == 0 &&
              strstr(err.msg, "expected"), "bad JSON #%zu '%s' rejected: %s", k, bad[k],
              err.msg);
        json_decref(v);
    }
    static const struct { const char *text; size_t len; const char *want; } where[] = {
        { "[1,,2]", 6, "at byte 3: expected a value (object, array, string, number, true, "
          "false or null), found ','" },
        { "{\"a\":1}x", 8, "at byte 7: expected end of input after the value, found 'x'" },
        { "[1, 2", 5, "at byte 5: expected ',' or ']' in an array, found end of input" },
        { "\"abc", 4, "at byte 4: expected '\"' to close the string, found end of input" },
        { "[\"a\nb\"]", 7, "at byte 3: expected a string character (control characters must be "
          "escaped), found byte 0x0a" },
        { "[\"\xc3\x28\"]", 6, "at byte 2: expected valid UTF-8, found byte 0xc3" },
        { "[1]\0", 4, "at byte 3: expected end of input after the value, found byte 0x00" },
        { "[\0]", 3, "at byte 1: expected a value (object, array, string, number, true, false "
          "or null), found byte 0x00" },
        { "\"a\0b\"", 5, "at byte 2: expected a string character" },
        { "[\"\\u0000\"]", 10, "at byte 1: expected no \\u0000 (NUL is not supported in "
          "strings), found '\"\\u0000\"'" },
    };
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        kiln_json_error err;
        json_t *v = kiln_json_parse(where[k].text, where[k].len, 0, &err);
        CHECK(!v && strncmp(err.msg, where[k].want, strlen(where[k].want)) == 0,
              "error #%zu: '%s', expected '%s'", k, err.msg, where[k].want);
        json_decref(v);
    }
    json_t *v = kiln_json_parse("[1]xyz", 3, 0, NULL);
    CHECK(v != NULL, "len bounds the text");
    json_decref(v);
    CHECK(!kiln_json_parse("[1", 2, 0, NULL), "NULL err is allowed");
    kiln_json_error err;
    CHECK(!kiln_json_parse(NULL, 5, 0, &err) && err.status == KILN_JSON_SYNTAX, "NULL text");
}

/* ---- round trip ---- */

static const char *const spec_text =
    "# model spec\ninput 1 28 28\nconv2d conv1 32 3x3 pad=1   # \"quoted\" and back\\slash\n"
    "\tdense fc 10\n\xc3\xbc\xc3\xb1\xc3\xaf\xc3\xa7\xc3\xb8\xc3\xb0\xc3\xa9 \xe2\x80\x94 "
    "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n\x01 end\n";

typedef struct {
    float w[4 * 1 * 3 * 3];
    int32_t ids[5];
    uint8_t mask[3];
    float scale;
    int64_t big[2];
    uint16_t half[3];
    int8_t tiny[1];
} sample_data;

/* Fills data and describes it as 8 tensors in a mixed order (U8 first). */
static int make_sample(sample_data *d, kiln_st_tensor *t)
{
    for (int i = 0; i < 36; i++)
        d->w[i] = (float)i * 0.5f - 3.0f;
    for (int i = 0; i < 5; i++)
        d->ids[i] = -1000000 * i + 7;
    d->mask[0] = 0; d->mask[1] = 255; d->mask[2] = 17;
    d->scale = 3.25f;
    d->big[0] = INT64_MIN; d->big[1] = INT64_MAX;
    d->half[0] = 0x3C00; d->half[1] = 0xC000; d->half[2] = 0x7BFF;
    d->tiny[0] = -128;
    kiln_st_tensor list[] = {
        { "mask", KILN_DT_U8, 1, { 3 }, d->mask, 3 },
        { "conv1.weight", KILN_DT_F32, 4, { 4, 1, 3, 3 }, d->w, sizeof d->w },
        { "ids", KILN_DT_I32, 1, { 5 }, d->ids, sizeof d->ids },
        { "empty", KILN_DT_F32, 2, { 0, 4 }, NULL, 0 },
        { "scale", KILN_DT_F32, 0, { 0 }, &d->scale, 4 },
        { "big", KILN_DT_I64, 2, { 2, 1 }, d->big, sizeof d->big },
        { "half", KILN_DT_F16, 1, { 3 }, d->half, sizeof d->half },
        { "tiny \"odd\" name \xc3\xa9", KILN_DT_I8, 3, { 1, 1, 1 }, d->tiny, 1 },
    };
    memcpy(t, list, sizeof list);
    return (int)(sizeof list / sizeof list[0]);
}

/* Checks the opened file against the tensors and metadata it was written from. */
static void check_contents(const kiln_st_file *f, const kiln_st_tensor *t, int n,
                           const char *const *meta, const char *what)
{
    CHECK(kiln_st_count(f) == n, "%s: count %d", what, kiln_st_count(f));
    for (int i = 0; i < n && i < kiln_st_count(f); i++) {
        const kiln_st_tensor *r = kiln_st_at(f, i);
        CHECK(strcmp(r->name, t[i].name) == 0, "%s: tensor %d is %s", what, i, r->name);
        CHECK(r->dtype == t[i].dtype && r->ndim == t[i].ndim && r->nbytes == t[i].nbytes,
              "%s: %s dtype/ndim/nbytes", what, t[i].name);
        CHECK(memcmp(r->dims, t[i].dims, sizeof r->dims[0] * (size_t)r->ndim) == 0,
              "%s: %s dims", what, t[i].name);
        CHECK(r->nbytes == 0 || memcmp(r->data, t[i].data, r->nbytes) == 0, "%s: %s bytes",
              what, t[i].name);
        CHECK((uintptr_t)r->data % kiln_dtype_size(r->dtype) == 0, "%s: %s aligned", what,
              r->name);
        CHECK(kiln_st_find(f, t[i].name) == r, "%s: find %s", what, t[i].name);
    }
    CHECK(kiln_st_at(f, n) == NULL && kiln_st_at(f, -1) == NULL, "%s: at out of range", what);
    CHECK(kiln_st_find(f, "nope") == NULL && kiln_st_find(f, "") == NULL, "%s: find absent",
          what);
    int m = 0;
    for (; meta && meta[2 * m]; m++) {
        const char *v = kiln_st_meta(f, meta[2 * m]);
        CHECK(v && strcmp(v, meta[2 * m + 1]) == 0, "%s: meta %s", what, meta[2 * m]);
        CHECK(kiln_st_meta_key(f, m) && strcmp(kiln_st_meta_key(f, m), meta[2 * m]) == 0,
              "%s: meta key %d", what, m);
    }
    CHECK(kiln_st_meta_count(f) == m, "%s: meta count %d", what, kiln_st_meta_count(f));
    CHECK(kiln_st_meta(f, "absent") == NULL, "%s: absent meta", what);
}

/* Checks the raw layout: padded header, no gaps, each tensor aligned to its element size. */
static void check_layout(const char *path, const kiln_st_tensor *t, int n)
{
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | buf[i];
    CHECK(hlen % 8 == 0 && 8 + hlen <= len, "header length %llu is a multiple of 8",
          (unsigned long long)hlen);
    json_t *h = kiln_json_parse((const char *)buf + 8, (size_t)hlen, 0, NULL);
    CHECK(h != NULL, "header is JSON");
    size_t total = 0;
    uint64_t max_end = 0;
    for (int i = 0; h && i < n; i++) {
        const json_t *off = json_object_get(json_object_get(h, t[i].name), "data_offsets");
        int64_t b = json_integer_value(json_array_get(off, 0));
        int64_t e = json_integer_value(json_array_get(off, 1));
        size_t file_off = 8 + (size_t)hlen + (size_t)b;
        CHECK(file_off % kiln_dtype_size(t[i].dtype) == 0, "%s at file offset %zu is aligned",
              t[i].name, file_off);
        if (t[i].dtype == KILN_DT_F32 && i == 1)
            CHECK(file_off % 8 == 0, "first F32 tensor is 8-byte aligned (%zu)", file_off);
        total += t[i].nbytes;
        if ((uint64_t)e > max_end)
            max_end = (uint64_t)e;
    }
    CHECK(max_end == total && len == 8 + hlen + total, "data is contiguous: %zu bytes", len);
    json_decref(h);
    free(buf);
}

static void test_round_trip(void)
{
    sample_data d;
    kiln_st_tensor t[8];
    int n = make_sample(&d, t);
    const char *meta[] = { "spec", spec_text, "empty", "", "format", "pt", NULL };
    const char *path = temp_path("roundtrip");
    kiln_status st = kiln_st_write(path, t, n, meta);
    CHECK(st == KILN_OK, "write: %s", kiln_last_error());
    kiln_st_file *f = kiln_st_open(path);
    CHECK(f != NULL, "open: %s", kiln_last_error());
    if (f) {
        check_contents(f, t, n, meta, "file");
        CHECK(strcmp(kiln_st_path(f), path) == 0, "path kept");
        const kiln_st_tensor *w = kiln_st_find(f, "conv1.weight");
        CHECK(w && ((const float *)w->data)[35] == 14.5f, "float value read back");
        kiln_st_close(f);
    }
    check_layout(path, t, n);

    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    f = kiln_st_open_memory(buf, len, "mem.safetensors");
    memset(buf, 0xAB, len);   /* the reader holds its own copy */
    CHECK(f != NULL, "open_memory: %s", kiln_last_error());
    if (f) {
        check_contents(f, t, n, meta, "memory");
        CHECK(strcmp(kiln_st_path(f), "mem.safetensors") == 0, "memory name kept");
        kiln_st_close(f);
    }
    free(buf);

    /* rewriting replaces the file and leaves no temp file behind */
    d.scale = -1.0f;
    CHECK(kiln_st_write(path, t, n, NULL) == KILN_OK, "rewrite: %s", kiln_last_error());
    f = kiln_st_open(path);
    CHECK(f && kiln_st_meta_count(f) == 0 &&
          *(const float *)kiln_st_find(f, "scale")->data == -1.0f, "rewrite seen");
    kiln_st_close(f);
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.tmp", path);
    CHECK(!file_with_prefix_exists(prefix), "no temp files left");
    remove(path);

    /* no tensors at all */
    CHECK(kiln_st_write(path, NULL, 0, meta) == KILN_OK, "empty write: %s", kiln_last_error());
    f = kiln_st_open(path);
    CHECK(f && kiln_st_count(f) == 0 && kiln_st_meta(f, "format") &&
          kiln_st_find(f, "x") == NULL, "empty file opens");
    kiln_st_close(f);
    remove(path);
}

/* Every bad argument to the writer fails with KILN_ERR_ARG and creates no file. */
static void test_write_errors(void)
{
    sample_data d;
    kiln_st_tensor t[8];
    int n = make_sample(&d, t);
    const char *path = temp_path("badwrite");
    for (int k = 0; k < 9; k++) {
        kiln_st_tensor u[8];
        memcpy(u, t, sizeof u);
        const char *const *meta = NULL;
        static const char *const meta_null_value[] = { "k", NULL, NULL };
        static const char *const meta_dup[] = { "k", "1", "k", "2", NULL };
        static const char *const meta_bad_utf8[] = { "k", "\xc3(", NULL };
        switch (k) {
        case 0: u[1].nbytes -= 4; break;
        case 1: strcpy(u[2].name, u[1].name); break;
        case 2: u[1].ndim = 9; break;
        case 3: u[1].dims[2] = -1; break;
        case 4: strcpy(u[0].name, "__metadata__"); break;
        case 5: u[2].data = NULL; break;
        case 6: meta = meta_null_value; break;
        case 7: meta = meta_dup; break;
        case 8: meta = meta_bad_utf8; break;
        }
        kiln_status st = kiln_st_write(path, u, n, meta);
        CHECK(st == KILN_ERR_ARG && strstr(kiln_last_error(), path), "bad write %d: %d %s", k,
              st, kiln_last_error());
        CHECK(access(path, F_OK) != 0, "bad write %d created no file", k);
    }
    kiln_st_tensor u = t[1];
    memset(u.name, 'x', sizeof u.name);
    CHECK(kiln_st_write(path, &u, 1, NULL) == KILN_ERR_ARG, "unterminated name");
    u = t[1];
    strcpy(u.name, "bad \xff");
    CHECK(kiln_st_write(path, &u, 1, NULL) == KILN_ERR_ARG, "non-UTF-8 name");
    u = t[1];
    u.dtype = (kiln_dtype)99;
    CHECK(kiln_st_write(path, &u, 1, NULL) == KILN_ERR_ARG, "bad dtype");
    CHECK(kiln_st_write(path, t, -1, NULL) == KILN_ERR_ARG, "negative count");
    const char *nodir = "no_such_dir_kiln_test/x.safetensors";
    CHECK(kiln_st_write(nodir, t, n, NULL) == KILN_ERR_IO && strstr(kiln_last_error(), nodir),
          "missing directory: %s", kiln_last_error());
}

/* ---- corrupt files ---- */

static void test_truncation(void)
{
    sample_data d;
    kiln_st_tensor t[8];
    int n = make_sample(&d, t);
    const char *meta[] = { "spec", spec_text, NULL };
    const char *full = temp_path("full");
    const char *cut = temp_path("cut");
    CHECK(kiln_st_write(full, t, n, meta) == KILN_OK, "write: %s", kiln_last_error());
    size_t len;
    unsigned char *buf = read_bytes(full, &len);
    int bad = 0, cases = 0;
    for (size_t k = 0; k < len; k++) {
        write_bytes(cut, buf, k);
        kiln_error(KILN_OK, "%s", "");
        kiln_st_file *f = kiln_st_open(cut);
        cases++;
        if (f || !strstr(kiln_last_error(), cut)) {
            if (bad++ < 5)
                fprintf(stderr, "truncated to %zu: opened=%d msg='%s'\n", k, f != NULL,
                        kiln_last_error());
        }
        kiln_st_close(f);
    }
    CHECK(bad == 0, "%d of %d truncations did not fail cleanly", bad, cases);
    write_bytes(cut, buf, 3);
    expect_open_fails(cut, "3 bytes, expected at least 8", "3-byte file");
    write_bytes(cut, buf, 0);
    expect_open_fails(cut, "0 bytes", "empty file");
    write_bytes(cut, buf, len - 1);
    expect_open_fails(cut, "end past the data section", "one byte short");
    write_bytes(cut, buf, 20);
    expect_open_fails(cut, "truncated", "cut in the header");
    remove(cut);
    remove(full);
    free(buf);
}

/* Reads every byte of every tensor of an opened file (so ASan sees any bad pointer). */
static unsigned touch_all(const kiln_st_file *f)
{
    unsigned sum = 0;
    for (int i = 0; i < kiln_st_count(f); i++) {
        const kiln_st_tensor *t = kiln_st_at(f, i);
        for (size_t b = 0; b < t->nbytes; b++)
            sum += ((const unsigned char *)t->data)[b];
        sum += (unsigned)strlen(t->name);
    }
    return sum;
}

/* Replaces each header byte with several values; every result opens or fails cleanly. */
static void test_flips(void)
{
    sample_data d;
    kiln_st_tensor t[8];
    int n = make_sample(&d, t);
    const char *meta[] = { "spec", "a\nb \"c\" \\d \xc3\xa9", NULL };
    const char *path = temp_path("flip");
    CHECK(kiln_st_write(path, t, n, meta) == KILN_OK, "write: %s", kiln_last_error());
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    size_t hend = 8 + (size_t)buf[0] + ((size_t)buf[1] << 8);
    static const int repl[] = { -1, -2, '"', '{', '}', '[', ']', ',', ':', '0', '9', '-', ' ',
                                '\\', 0, 0x80, 0xff };
    int bad = 0, opened = 0, cases = 0;
    unsigned sink = 0;
    for (size_t pos = 0; pos < hend; pos++) {
        for (size_t r = 0; r < sizeof repl / sizeof repl[0]; r++) {
            unsigned char saved = buf[pos];
            buf[pos] = (unsigned char)(repl[r] == -1 ? saved ^ 0xFF
                                       : repl[r] == -2 ? saved ^ 0x01 : repl[r]);
            if (buf[pos] == saved)
                continue;
            kiln_error(KILN_OK, "%s", "");
            kiln_st_file *f = kiln_st_open_memory(buf, len, "flipped.safetensors");
            cases++;
            if (f) {
                opened++;
                sink += touch_all(f);
            } else if (!strstr(kiln_last_error(), "flipped.safetensors")) {
                if (bad++ < 5)
                    fprintf(stderr, "flip at %zu: msg='%s'\n", pos, kiln_last_error());
            }
            kiln_st_close(f);
            buf[pos] = saved;
        }
    }
    CHECK(bad == 0, "%d of %d flipped headers failed without naming the file", bad, cases);
    CHECK(opened < cases / 4, "most flips are rejected (%d of %d opened)", opened, cases);
    /* a few through real files too */
    for (size_t pos = 0; pos < hend; pos += 7) {
        buf[pos] ^= 0x55;
        write_bytes(path, buf, len);
        kiln_error(KILN_OK, "%s", "");
        kiln_st_file *f = kiln_st_open(path);
        CHECK(f || strstr(kiln_last_error(), path), "file flip at %zu: %s", pos,
              kiln_last_error());
        sink += touch_all(f);
        kiln_st_close(f);
        buf[pos] ^= 0x55;
    }
    (void)sink;
    remove(path);
    free(buf);
}

#define T_OK(name, dt, shape, b, e) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

/* Hand-crafted headers, one per check of the reader. */
static void test_crafted(void)
{
    static const struct { const char *tag, *header; size_t dlen; const char *want; } cases[] = {
        { "notjson", "{\"a\":", 0, "not valid JSON" },
        { "notjson2", "{\"a\":1}x", 0, "at byte 7" },
        { "empty_header", "", 0, "not valid JSON" },
        { "array", "[1,2]", 0, "expected a JSON object" },
        { "string", "\"abc\"", 0, "expected a JSON object" },
        { "meta_array", "{\"__metadata__\":[1]}", 0, "\"__metadata__\" is an array" },
        { "meta_num", "{\"__metadata__\":{\"a\":\"x\",\"b\":1}}", 0, "entry \"b\" is 1" },
        { "meta_obj", "{\"__metadata__\":{\"a\":{}}}", 0, "expected a string" },
        { "meta_twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice" },
        { "meta_dupkey", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "\"k\" twice" },
        { "entry_num", "{\"t\":5}", 0, "tensor \"t\": entry is 5, expected an object" },
        { "entry_arr", "{\"t\":[]}", 0, "entry is an array" },
        { "no_dtype", "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing \"dtype\"" },
        { "no_shape", "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
          "missing \"shape\"" },
        { "no_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
          "missing \"data_offsets\"" },
        { "dtype_num", "{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
          "\"dtype\" is 4, expected a string" },
        { "dtype_bf16", "{" T_OK("t", "BF16", "[1]", 0, 2) "}", 2,
          "unsupported dtype \"BF16\"" },
        { "dtype_lower", "{" T_OK("t", "f32", "[1]", 0, 4) "}", 4, "unsupported dtype" },
        { "shape_obj", "{\"t\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
          "\"shape\" is an object" },
        { "shape_neg", "{" T_OK("t", "F32", "[2,-2]", 0, 16) "}", 16,
          "\"shape\"[1] is -2, expected a non-negative integer" },
        { "shape_float", "{" T_OK("t", "F32", "[1.5]", 0, 4) "}", 4, "\"shape\"[0] is 1.5" },
        { "shape_str", "{" T_OK("t", "F32", "[\"2\"]", 0, 8) "}", 8, "\"shape\"[0] is \"2\"" },
        { "shape_big", "{" T_OK("t", "F32", "[9223372036854775808]", 0, 4) "}", 4,
          "\"shape\"[0] is 9.2233720368547758e+18" },
        { "shape_9d", "{" T_OK("t", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1,
          "has 9 dims, expected at most 8" },
        { "shape_overflow", "{" T_OK("t", "F32", "[4294967296,4294967296,16]", 0, 4) "}", 4,
          "overflow" },
        { "bytes_overflow", "{" T_OK("t", "I64", "[4611686018427387904]", 0, 8) "}", 8,
          "overflow" },
        { "offs_str", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\"}}", 4,
          "\"data_offsets\" is \"0,4\"" },
        { "offs_len", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
          "has 1 items, expected 2" },
        { "offs_neg", "{" T_OK("t", "F32", "[1]", -4, 0) "}", 4,
          "\"data_offsets\"[0] is -4" },
        { "offs_null", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,null]}}", 4,
          "\"data_offsets\"[1] is null" },
        { "offs_reversed", "{" T_OK("t", "F32", "[0]", 8, 4) "}", 8, "begin is after end" },
        { "offs_beyond", "{" T_OK("t", "F32", "[4]", 0, 16) "}", 8,
          "data_offsets [0, 16] end past the data section of 8 bytes" },
        { "offs_huge", "{" T_OK("t", "U8", "[1]", 9223372036854775806, 9223372036854775807)
          "}", 8, "end past the data section" },
        { "size_mismatch", "{" T_OK("conv1.weight", "F32", "[32,1,3,3]", 0, 100) "}", 128,
          "tensor \"conv1.weight\": data_offsets [0, 100] give 100 bytes, expected 1152 "
          "(F32 [32,1,3,3])" },
        { "overlap", "{" T_OK("a", "F32", "[4]", 0, 16) "," T_OK("b", "F32", "[4]", 8, 24) "}",
          24, "overlap" },
        { "overlap_same", "{" T_OK("a", "U8", "[4]", 0, 4) "," T_OK("b", "U8", "[4]", 0, 4) "}",
          8, "overlap" },
        { "overlap_inside", "{" T_OK("a", "U8", "[16]", 0, 16) "," T_OK("b", "U8", "[1]", 4, 5)
          "," T_OK("c", "U8", "[2]", 20, 22) "}", 24, "tensor \"b\": data_offsets [4, 5] overlap "
          "those of tensor \"a\" [0, 16]" },
        { "dup_name", "{" T_OK("a", "U8", "[4]", 0, 4) "," T_OK("a", "U8", "[4]", 4, 8) "}", 8,
          "tensor \"a\": appears twice" },
        { "long_name", "{" T_OK("nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
          "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", "U8", "[1]", 0, 1)
          "}", 1, "name is 128 bytes long, expected at most 127" },
        { "bad_utf8", "{\"__metadata__\":{\"a\":\"\xc3\x28\"}}", 0, "valid UTF-8" },
        { "ctl_in_string", "{\"__metadata__\":{\"a\":\"x\ny\"}}", 0, "control characters" },
        { "nul_escape", "{\"__metadata__\":{\"a\":\"\\u0000\"}}", 0, "NUL" },
        /* keys twice (the parser refuses them; the message says where it can tell) */
        { "dup_long_name", "{" T_OK("a_rather_long_tensor_name.weight", "U8", "[4]", 0, 4) ","
          T_OK("a_rather_long_tensor_name.weight", "U8", "[4]", 4, 8) "}", 8,
          "tensor \"a_rather_long_tensor_name.weight\": appears twice" },
        { "entry_dupkey", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"dtype\":\"F32\","
          "\"data_offsets\":[0,1]}}", 1, "tensor \"t\": entry has the key \"dtype\" twice" },
        { "dup_nested", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
          "\"extra\":{\"dtype\":1,\"dtype\":2}}}", 1, "at byte 71: found the key \"dtype\" twice "
          "in one object, expected distinct keys" },
        { "dup_then_syntax", "{\"a\":1,\"a\":2,}", 0, "not valid JSON: at byte 13" },
        /* numbers: integers past 64 bits name their field as before, others fail to parse */
        { "offs_big", "{" T_OK("t", "U8", "[1]", 0, 18446744073709551616) "}", 1,
          "\"data_offsets\"[1] is 1.8446744073709552e+19, expected a non-negative integer" },
        { "offs_real", "{" T_OK("t", "F32", "[1]", 0, 4.0) "}", 4,
          "\"data_offsets\"[1] is 4, expected a non-negative integer" },
        { "offs_exp", "{" T_OK("t", "F32", "[1]", 0, 4e0) "}", 4, "\"data_offsets\"[1] is 4," },
        { "offs_inf", "{" T_OK("t", "F32", "[1]", 0, 1e400) "}", 4,
          "expected a real number within the range of a double, found '1e400'" },
        { "big_unused", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],"
          "\"extra\":[99999999999999999999]}}", 1, "not valid JSON: at byte 61: expected an "
          "integer within 64 bits, found '99999999999999999999'" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        expect_bad_header(cases[k].tag, cases[k].header, cases[k].dlen, cases[k].want);

    /* nesting past the parser's limit inside metadata */
    char *deep = nested(KILN_JSON_MAX_DEPTH + 1);
    char deep_header[300];
    snprintf(deep_header, sizeof deep_header, "{\"__metadata__\":%s}", deep);
    expect_bad_header("deep", deep_header, 0, "nested");
    free(deep);

    /* a 127-byte name is fine */
    const char *ok127 = "{" T_OK("nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", "U8", "[1]", 0, 1) "}";
    const char *path = temp_path("name127");
    write_raw(path, ok127, "x", 1);
    kiln_st_file *f = kiln_st_open(path);
    CHECK(f && strlen(kiln_st_at(f, 0)->name) == 127, "127-byte name accepted: %s",
          kiln_last_error());
    kiln_st_close(f);

    /* the length prefix itself */
    const char *hdr = "{}";
    write_parts(path, 1000, hdr, 2, NULL, 0);
    expect_open_fails(path, "header length is 1000 bytes, but only 2 bytes follow", "long N");
    write_parts(path, 200u * 1024 * 1024, hdr, 2, NULL, 0);
    expect_open_fails(path, "100 MB", "N over 100 MB");
    write_parts(path, UINT64_MAX, hdr, 2, NULL, 0);
    expect_open_fails(path, "100 MB", "N = 2^64-1");
    remove(path);

    /* not a file */
    const char *dir = temp_path("dir");
    mkdir(dir, 0700);
    expect_open_fails(dir, "not a regular file", "directory");
    rmdir(dir);
    expect_open_fails(temp_path("missing"), "cannot open", "missing file");
    kiln_error(KILN_OK, "%s", "");
    CHECK(kiln_st_open_memory(NULL, 0, NULL) == NULL && strstr(kiln_last_error(), "<memory>"),
          "NULL buffer fails: %s", kiln_last_error());
}

/* Files as Python's safetensors writes them: no padding, any order, metadata anywhere. */
static void test_foreign(void)
{
    unsigned char data[3 + 8 + 4];
    data[0] = 1; data[1] = 2; data[2] = 3;
    float fv[2] = { 1.5f, -2.0f };
    memcpy(data + 3, fv, 8);   /* misaligned F32 data */
    int32_t iv = -7;
    memcpy(data + 11, &iv, 4);
    const char *header = "{ \"b\" : {\"dtype\":\"F32\", \"shape\":[2], \"data_offsets\":[3,11]},\n"
        "\"a\":{\"data_offsets\":[0,3],\"shape\":[3],\"dtype\":\"U8\",\"extra\":{\"x\":[1]}},"
        "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[11,11]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[11,15]},"
        "\"__metadata__\":{\"format\":\"pt\"}}";
    const char *path = temp_path("python");
    write_raw(path, header, data, sizeof data);
    kiln_st_file *f = kiln_st_open(path);
    CHECK(f != NULL, "foreign file opens: %s", kiln_last_error());
    if (!f)
        return;
    CHECK(kiln_st_count(f) == 4 && strcmp(kiln_st_at(f, 0)->name, "b") == 0 &&
          strcmp(kiln_st_at(f, 3)->name, "i") == 0, "header order kept");
    const kiln_st_tensor *b = kiln_st_find(f, "b");
    CHECK(b && (uintptr_t)b->data % 4 == 0, "misaligned F32 data is given aligned");
    CHECK(b && ((const float *)b->data)[0] == 1.5f && ((const float *)b->data)[1] == -2.0f,
          "F32 values");
    const kiln_st_tensor *a = kiln_st_find(f, "a");
    CHECK(a && memcmp(a->data, data, 3) == 0 && a->ndim == 1 && a->dims[0] == 3, "U8 tensor");
    const kiln_st_tensor *z = kiln_st_find(f, "z");
    CHECK(z && z->nbytes == 0 && z->ndim == 2 && z->dims[0] == 0, "empty tensor");
    CHECK(z && z->data && (uintptr_t)z->data % 4 == 0, "empty tensor at an odd offset has an "
          "aligned pointer");
    const kiln_st_tensor *i = kiln_st_find(f, "i");
    CHECK(i && i->ndim == 0 && *(const int32_t *)i->data == -7, "scalar I32");
    CHECK(kiln_st_meta(f, "format") && strcmp(kiln_st_meta(f, "format"), "pt") == 0,
          "metadata last");
    kiln_st_close(f);
    remove(path);
}

int main(void)
{
    test_json_values();
    test_json_duplicates();
    test_json_escapes();
    test_json_numbers();
    test_json_depth();
    test_json_errors();
    test_round_trip();
    test_write_errors();
    test_truncation();
    test_flips();
    test_crafted();
    test_foreign();
    return check_report();
}
