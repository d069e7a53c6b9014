/* Model spec text: parsing into a graph and serialising a graph back.
 *
 * One layer per line: `[name:] op [positional ...] [key=value ...]`, '#' starts a comment.
 *   input C [H W]            dense UNITS             conv2d UNITS KERNEL (stride= pad= dilation= groups= bias=0)
 *   maxpool2d K / avgpool2d K (stride= pad=)         global_avgpool   flatten
 *   relu  leaky_relu [SLOPE]  sigmoid  tanh  gelu  softmax  dropout [P]  batchnorm (eps= momentum=)
 *   add NAME... / concat NAME...  (with one name: the previous layer and NAME)
 * Every layer takes the previous one as input unless `in=NAME[,NAME...]` says otherwise.
 * Inference graphs may fuse an activation into dense, linear, conv2d, batchnorm or add: `act=relu`
 * (or leaky_relu with slope=, sigmoid, tanh, gelu).
 * Pairs (kernel, stride, pad, dilation) are N or HxW.
 * The N-d ops (docs/IR.md):
 *   input D0 [D1 ...] (dtype=f32|i32)   param AxBx.. (std=)   linear UNITS (bias=0)
 *   matmul A B   add/sub/mul/div A B (NumPy broadcasting)   layernorm / rmsnorm (eps=)
 *   softmax / log_softmax (axis=)   reshape AxBx.. (one -1)   transpose P0,P1,..
 *   slice axis= start= end= step=   concat NAME... axis=   silu  hard_swish  relu6
 *   embedding VOCAB WIDTH   attention heads= causal=0|1 (in=QKV or in=Q,K,V)
 *   mean / sum axes=A,B,.. keepdims=0|1   upsample scale=F[xF] | size=HxW (mode=nearest|bilinear
 *   |bicubic coord=half_pixel|asymmetric|align_corners|pytorch_half_pixel
 *   rounding=floor|half_down|half_up|ceil cubic_a=A exclude=0|1)
 *   conv_transpose2d UNITS KERNEL (stride= pad= dilation= out_pad= bias=0)
 *   pad pads=B0,..,E0,.. (value= mode=constant|reflect|edge)
 *   split axis= sizes=A,B,..  (one slice layer per part: NAME.0, NAME.1, ...)
 *   sqrt exp log abs neg reciprocal floor ceil round erf   clip lo= hi=   pow/min/max A B
 * Constants and shape arithmetic (folded when the graph is built: docs/IR.md, "Constants"):
 *   const [AxBx..] dtype=f32|i64|bool values=V,V,..  (no dims: a scalar; f32 values may be left
 *   out: zeros, or the model file's)   shape NAME   cast NAME dtype=   equal/less/greater A B
 *   where C A B   not   reshape in=X,S (S: an i64 const target shape, ONNX's 0 and -1)
 *   output NAME[,NAME...]   (a directive: declares the graph's outputs; default the last layer) */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "core/op_table.h"

typedef struct {
    const char *origin;
    int line;
} spec_pos;

static kiln_status spec_error(const spec_pos *p, int col, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kiln_status spec_error(const spec_pos *p, int col, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(KILN_ERR_FORMAT, "%s:%d:%d: %s", p->origin, p->line, col, msg);
}

typedef struct {
    const char *s;   /* token text (not terminated) */
    int len;
    int col;         /* 1-based column */
} token;

/* Parses one i64 (or bool: 0, 1, true, false) value. */
static bool parse_i64(const char *s, int len, bool boolean, int64_t *out)
{
    char buf[32];
    if (boolean && ((len == 4 && memcmp(s, "true", 4) == 0) || (len == 5 && memcmp(s, "false", 5) == 0))) {
        *out = len == 4;
        return true;
    }
    if (len <= 0 || len >= (int)sizeof buf)
        return false;
    memcpy(buf, s, (size_t)len);
    buf[len] = 0;
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (*end || errno || (boolean && v != 0 && v != 1))
        return false;
    *out = v;
    return true;
}

/* Parses one int within +-1e9. */
static bool parse_int(const char *s, int len, int *out)
{
    int64_t v;
    if (!parse_i64(s, len, false, &v) || v < -1000000000LL || v > 1000000000LL)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_float(const char *s, int len, float *out)
{
    char buf[48];
    if (len <= 0 || len >= (int)sizeof buf)
        return false;
    memcpy(buf, s, (size_t)len);
    buf[len] = 0;
    char *end;
    float v = strtof(buf, &end);
    if (*end || v != v)
        return false;
    *out = v;
    return true;
}

/* Parses "AxBxC..." (1..KILN_MAX_RANK ints, -1 allowed) into out; returns the count or -1. */
static int parse_dims(const char *s, int len, int *out)
{
    int n = 0;
    const char *end = s + len;
    while (s <= end && n < KILN_MAX_RANK) {
        const char *x = memchr(s, 'x', (size_t)(end - s));
        const char *e = x ? x : end;
        if (!parse_int(s, (int)(e - s), &out[n++]))
            return -1;
        if (!x)
            return n;
        s = x + 1;
    }
    return -1;
}

/* Parses "A,B,C" (up to max ints) into out; returns the count or -1. */
static int parse_list(const char *s, int len, int *out, int max)
{
    int n = 0;
    const char *end = s + len;
    while (n < max) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        const char *e = c ? c : end;
        if (!parse_int(s, (int)(e - s), &out[n++]))
            return -1;
        if (!c)
            return n;
        s = c + 1;
    }
    return -1;
}

/* Parses "N" or "HxW". */
static bool parse_pair(const char *s, int len, int out[2])
{
    const char *x = memchr(s, 'x', (size_t)len);
    if (!x)
        return parse_int(s, len, &out[0]) && (out[1] = out[0], true);
    return parse_int(s, (int)(x - s), &out[0]) && parse_int(x + 1, len - (int)(x - s) - 1, &out[1]);
}

/* Parses a dtype keyword (f32, i32, i64, bool); false if it is none of them. */
static bool parse_dtype(const char *s, int len, kiln_dtype *out)
{
    static const struct { const char *name; kiln_dtype dt; } names[] = {
        {"f32", KILN_DT_F32}, {"i32", KILN_DT_I32}, {"i64", KILN_DT_I64}, {"bool", KILN_DT_BOOL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((int)strlen(names[i].name) == len && memcmp(names[i].name, s, (size_t)len) == 0) {
            *out = names[i].dt;
            return true;
        }
    return false;
}

/* Parses a const's values= token (dtype dt, exactly numel of them) into a new array (caller frees);
 * NULL with the error set. */
static void *parse_values(const spec_pos *p, const token *t, const char *node, kiln_dtype dt, double numel)
{
    const char *s = t->s + 7, *end = t->s + t->len;   /* past "values=" */
    size_t count = 1;
    for (const char *c = s; c < end; c++)
        count += *c == ',';
    if ((double)count != numel) {
        spec_error(p, t->col, "%s: const: values= has %zu values, its shape holds %.0f", node, count, numel);
        return NULL;
    }
    size_t each = dt == KILN_DT_F32 ? sizeof(float) : sizeof(int64_t);
    char *v = malloc(count * each);
    if (!v) {
        kiln_error(KILN_ERR_NOMEM, "out of memory for the values of %s", node);
        return NULL;
    }
    for (size_t k = 0; k < count; k++) {
        const char *c = memchr(s, ',', (size_t)(end - s));
        const char *e = c ? c : end;
        bool ok = dt == KILN_DT_F32 ? parse_float(s, (int)(e - s), (float *)v + k)
                                    : parse_i64(s, (int)(e - s), dt == KILN_DT_BOOL, (int64_t *)v + k);
        if (!ok) {
            spec_error(p, t->col + (int)(s - t->s), "%s: const: value %zu, '%.*s', is not %s", node, k, (int)(e - s), s,
                       dt == KILN_DT_F32 ? "a number" : dt == KILN_DT_BOOL ? "0, 1, true or false" : "an integer");
            free(v);
            return NULL;
        }
        s = e + 1;
    }
    return v;
}

static kiln_op op_from(const token *t)
{
    for (int op = 0; op < KILN_OP_COUNT; op++) {
        const char *n = kiln_op_name((kiln_op)op);
        if ((int)strlen(n) == t->len && memcmp(n, t->s, (size_t)t->len) == 0)
            return (kiln_op)op;
    }
    return KILN_OP_COUNT;
}

/* Resolves a node name token to an id. */
static int name_to_id(const kiln_graph_t *g, const spec_pos *p, const char *s, int len, int col)
{
    char buf[KILN_NAME_LEN];
    if (len <= 0 || len >= KILN_NAME_LEN) {
        spec_error(p, col, "layer name of %d characters, expected 1 to %d", len, KILN_NAME_LEN - 1);
        return -1;
    }
    memcpy(buf, s, (size_t)len);
    buf[len] = 0;
    int id = kiln_graph_find(g, buf);
    if (id < 0)
        spec_error(p, col, "no earlier layer is named '%s'", buf);
    return id;
}

/* Parses `in=a,b,c` or positional names into ids. */
static int parse_names(const kiln_graph_t *g, const spec_pos *p, const token *t, int *ids, int n)
{
    const char *s = t->s, *end = t->s + t->len;
    while (s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *e = comma ? comma : end;
        if (n >= KILN_MAX_INPUTS) {
            spec_error(p, t->col + (int)(s - t->s), "more than %d inputs", KILN_MAX_INPUTS);
            return -1;
        }
        int id = name_to_id(g, p, s, (int)(e - s), t->col + (int)(s - t->s));
        if (id < 0)
            return -1;
        ids[n++] = id;
        s = comma ? comma + 1 : end;
    }
    return n;
}

static int tokenize(const char *line, int len, token *toks, int max)
{
    int n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len && isspace((unsigned char)line[i]))
            i++;
        if (i >= len || line[i] == '#')
            break;
        int start = i;
        while (i < len && !isspace((unsigned char)line[i]) && line[i] != '#')
            i++;
        toks[n++] = (token){line + start, i - start, start + 1};
    }
    return n;
}

/* Applies one key=value to attrs; returns false with an error set if it does not fit the op. */
static bool apply_key(kiln_op op, const spec_pos *p, const token *t, int eq, kiln_attrs *a)
{
    const char *k = t->s, *v = t->s + eq + 1;
    int kl = eq, vl = t->len - eq - 1, vcol = t->col + eq + 1;
    bool conv = op == KILN_OP_CONV2D || op == KILN_OP_CONV_TRANSPOSE2D, pool = op == KILN_OP_MAXPOOL2D || op == KILN_OP_AVGPOOL2D;
#define KEY(name) (kl == (int)strlen(name) && memcmp(k, name, (size_t)kl) == 0)
    bool ok;
    if ((conv || pool) && KEY("stride"))
        ok = parse_pair(v, vl, a->stride) && a->stride[0] > 0 && a->stride[1] > 0;
    else if ((conv || pool) && KEY("pad"))
        ok = parse_pair(v, vl, a->pad) && a->pad[0] >= 0 && a->pad[1] >= 0;
    else if ((conv || pool) && KEY("kernel"))
        ok = parse_pair(v, vl, a->kernel) && a->kernel[0] > 0 && a->kernel[1] > 0;
    else if (conv && KEY("dilation"))
        ok = parse_pair(v, vl, a->dilation) && a->dilation[0] > 0 && a->dilation[1] > 0;
    else if (conv && KEY("groups"))
        ok = parse_int(v, vl, &a->groups) && a->groups > 0;
    else if ((conv || op == KILN_OP_DENSE) && KEY("bias")) {
        int b;
        ok = parse_int(v, vl, &b) && (b == 0 || b == 1);
        a->no_bias = ok && b == 0;
    } else if ((conv || op == KILN_OP_DENSE) && KEY("units"))
        ok = parse_int(v, vl, &a->units) && a->units > 0;
    else if (op == KILN_OP_BATCHNORM && KEY("eps"))
        ok = parse_float(v, vl, &a->eps) && a->eps > 0;
    else if (op == KILN_OP_BATCHNORM && KEY("momentum"))
        ok = parse_float(v, vl, &a->momentum) && a->momentum > 0 && a->momentum <= 1;
    else if ((op == KILN_OP_LEAKY_RELU && KEY("slope")) || (op == KILN_OP_DROPOUT && KEY("p")) ||
             ((conv || op == KILN_OP_DENSE || op == KILN_OP_BATCHNORM || op == KILN_OP_ADD) && KEY("slope")))
        ok = parse_float(v, vl, &a->alpha);
    else if (op == KILN_OP_CONV_TRANSPOSE2D && KEY("out_pad"))
        ok = parse_pair(v, vl, a->out_pad) && a->out_pad[0] >= 0 && a->out_pad[1] >= 0;
    else if (op == KILN_OP_UPSAMPLE && KEY("size"))
        ok = parse_pair(v, vl, a->size) && a->size[0] > 0 && a->size[1] > 0;
    else if (op == KILN_OP_UPSAMPLE && KEY("scale")) {
        const char *x = memchr(v, 'x', (size_t)vl);
        ok = x ? parse_float(v, (int)(x - v), &a->scale[0]) && parse_float(x + 1, vl - (int)(x - v) - 1, &a->scale[1])
               : parse_float(v, vl, &a->scale[0]) && (a->scale[1] = a->scale[0], true);
        ok = ok && a->scale[0] > 0 && a->scale[1] > 0;
    } else if (op == KILN_OP_UPSAMPLE && KEY("mode")) {
        ok = (vl == 7 && memcmp(v, "nearest", 7) == 0) || (vl == 8 && memcmp(v, "bilinear", 8) == 0) ||
             (vl == 7 && memcmp(v, "bicubic", 7) == 0);
        a->mode = vl == 8 ? 1 : v[2] == 'c' ? 2 : 0;
    } else if (op == KILN_OP_UPSAMPLE && KEY("cubic_a")) {
        ok = parse_float(v, vl, &a->cubic_a);
    } else if (op == KILN_OP_UPSAMPLE && KEY("exclude")) {
        int e;
        ok = parse_int(v, vl, &e) && (e == 0 || e == 1);
        a->exclude = ok && e == 1;
    } else if (op == KILN_OP_UPSAMPLE && KEY("coord")) {
        static const char *const names[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
        ok = false;
        for (int c = 0; c < 4 && !ok; c++)
            if ((ok = vl == (int)strlen(names[c]) && memcmp(v, names[c], (size_t)vl) == 0))
                a->coord = c + 1;
    } else if (op == KILN_OP_UPSAMPLE && KEY("rounding")) {
        static const char *const names[] = {"floor", "half_down", "half_up", "ceil"};
        ok = false;
        for (int c = 0; c < 4 && !ok; c++)
            if ((ok = vl == (int)strlen(names[c]) && memcmp(v, names[c], (size_t)vl) == 0))
                a->rounding = c;
    } else if (op == KILN_OP_PAD && KEY("pads")) {
        int p[2 * KILN_MAX_RANK], n = parse_list(v, vl, p, 2 * KILN_MAX_RANK);
        ok = n > 0 && n % 2 == 0;
        for (int i = 0; ok && i < n / 2; i++) {
            a->pads[i] = p[i];
            a->pads[KILN_MAX_RANK + i] = p[n / 2 + i];
        }
    } else if (op == KILN_OP_CLIP && KEY("lo"))
        ok = parse_float(v, vl, &a->lo);
    else if (op == KILN_OP_CLIP && KEY("hi"))
        ok = parse_float(v, vl, &a->hi);
    else if (op == KILN_OP_PAD && KEY("mode")) {
        ok = (vl == 8 && memcmp(v, "constant", 8) == 0) || (vl == 7 && memcmp(v, "reflect", 7) == 0) ||
             (vl == 4 && memcmp(v, "edge", 4) == 0);
        a->mode = vl == 7 ? 1 : vl == 4 ? 2 : 0;
    } else if (op == KILN_OP_PAD && KEY("value"))
        ok = parse_float(v, vl, &a->value);
    else if ((op == KILN_OP_LAYERNORM || op == KILN_OP_RMSNORM) && KEY("eps"))
        ok = parse_float(v, vl, &a->eps) && a->eps > 0;
    else if ((op == KILN_OP_SOFTMAX || op == KILN_OP_LOG_SOFTMAX || op == KILN_OP_CONCAT || op == KILN_OP_SLICE) &&
             KEY("axis"))
        ok = parse_int(v, vl, &a->axis) && a->axis >= -KILN_MAX_RANK && a->axis < KILN_MAX_RANK;
    else if (op == KILN_OP_SLICE && KEY("start"))
        ok = parse_int(v, vl, &a->start);
    else if (op == KILN_OP_SLICE && KEY("end"))
        ok = parse_int(v, vl, &a->end);
    else if (op == KILN_OP_SLICE && KEY("step"))
        ok = parse_int(v, vl, &a->step) && a->step > 0;
    else if (op == KILN_OP_LINEAR && KEY("bias")) {
        int b;
        ok = parse_int(v, vl, &b) && (b == 0 || b == 1);
        a->no_bias = ok && b == 0;
    } else if (op == KILN_OP_PARAM && KEY("std"))
        ok = parse_float(v, vl, &a->std) && a->std >= 0;
    else if (op == KILN_OP_ATTENTION && KEY("heads"))
        ok = parse_int(v, vl, &a->heads) && a->heads > 0;
    else if (op == KILN_OP_ATTENTION && KEY("causal")) {
        int c;
        ok = parse_int(v, vl, &c) && (c == 0 || c == 1);
        a->causal = ok && c == 1;
    } else if ((op == KILN_OP_MEAN || op == KILN_OP_SUM) && KEY("axes")) {
        int ax[KILN_MAX_RANK], n = parse_list(v, vl, ax, KILN_MAX_RANK);
        ok = n > 0;
        a->axes = 0;
        for (int i = 0; ok && i < n; i++) {   /* -k counts from the end: bit 8 + k - 1 until resolved */
            ok = ax[i] >= -KILN_MAX_RANK && ax[i] < KILN_MAX_RANK;
            a->axes |= !ok ? 0 : ax[i] >= 0 ? 1u << ax[i] : 1u << (8 - ax[i] - 1);
        }
    } else if ((op == KILN_OP_MEAN || op == KILN_OP_SUM) && KEY("keepdims")) {
        int k;
        ok = parse_int(v, vl, &k) && (k == 0 || k == 1);
        a->keepdims = ok && k == 1;
    }
    else if ((conv || op == KILN_OP_DENSE || op == KILN_OP_LINEAR || op == KILN_OP_BATCHNORM || op == KILN_OP_ADD) &&
             KEY("act")) {
        token at = {v, vl, vcol};
        a->act = op_from(&at);
        ok = kiln_op_fusable_act(a->act);
    }
    else {
        spec_error(p, t->col, "unknown key '%.*s' for %s", kl, k, kiln_op_name(op));
        return false;
    }
#undef KEY
    if (!ok)
        spec_error(p, vcol, "bad value '%.*s' for %.*s", vl, v, kl, k);
    return ok;
}

/* `split axis=A sizes=a,b,.. [in=NAME]`: one slice layer per part, NAME.0, NAME.1, ... */
static kiln_status parse_split(kiln_graph_t *g, const spec_pos *p, const token *t, int n, const char *name)
{
    int axis = 0, sizes[64], n_sizes = 0, src = g->n - 1;
    for (int i = 1; i < n; i++) {
        const char *eq = memchr(t[i].s, '=', (size_t)t[i].len);
        int e = eq ? (int)(eq - t[i].s) : 0;
        const char *v = t[i].s + e + 1;
        int vl = t[i].len - e - 1;
        bool ok = eq != NULL;
        if (ok && e == 4 && memcmp(t[i].s, "axis", 4) == 0)
            ok = parse_int(v, vl, &axis);
        else if (ok && e == 5 && memcmp(t[i].s, "sizes", 5) == 0)
            ok = (n_sizes = parse_list(v, vl, sizes, 64)) > 0;
        else if (ok && e == 2 && memcmp(t[i].s, "in", 2) == 0)
            ok = (src = name_to_id(g, p, v, vl, t[i].col + 3)) >= 0;
        else
            ok = false;
        if (!ok)
            return spec_error(p, t[i].col, "split takes axis=, sizes=A,B,.. and in=; found '%.*s'", t[i].len, t[i].s);
    }
    if (!n_sizes || src < 0)
        return spec_error(p, t[0].col, "split needs sizes= and an earlier layer");
    char nm[KILN_NAME_LEN], first[KILN_NAME_LEN + 16];
    for (int k = 1; !name[0]; k++) {   /* split_K, the first K whose parts' names are free */
        snprintf(nm, sizeof nm, "split_%d", k);
        snprintf(first, sizeof first, "%s.0", nm);
        if (kiln_graph_find(g, first) < 0)
            break;
    }
    if (kiln_graph_split(g, src, axis, sizes, n_sizes, name[0] ? name : nm, NULL) < 0)
        return spec_error(p, t[0].col, "%s", kiln_last_error());
    return KILN_OK;
}

/* Parses one non-empty line and adds its layer. */
static kiln_status parse_line(kiln_graph_t *g, const spec_pos *p, token *t, int n)
{
    char name[KILN_NAME_LEN] = "";
    if (t[0].len > 1 && t[0].s[t[0].len - 1] == ':') {
        int nl = t[0].len - 1;
        if (nl >= KILN_NAME_LEN)
            return spec_error(p, t[0].col, "layer name longer than %d characters", KILN_NAME_LEN - 1);
        for (int i = 0; i < nl; i++)
            if (!isalnum((unsigned char)t[0].s[i]) && t[0].s[i] != '_' && t[0].s[i] != '.')
                return spec_error(p, t[0].col + i, "layer names use letters, digits, '_' and '.'");
        memcpy(name, t[0].s, (size_t)nl);
        t++;
        n--;
        if (n == 0)
            return spec_error(p, t[-1].col + t[-1].len, "expected an op after the layer name");
    }
    if (t[0].len == 6 && memcmp(t[0].s, "output", 6) == 0) {   /* the outputs directive */
        int ids[KILN_MAX_OUTPUTS], n_ids = 0;
        if (name[0])
            return spec_error(p, t[0].col, "'output' declares outputs and takes no layer name");
        for (int i = 1; i < n; i++) {
            const char *q = t[i].s, *end = t[i].s + t[i].len;
            while (q < end) {
                const char *comma = memchr(q, ',', (size_t)(end - q));
                const char *e = comma ? comma : end;
                if (n_ids >= KILN_MAX_OUTPUTS)
                    return spec_error(p, t[i].col, "more than %d outputs", KILN_MAX_OUTPUTS);
                int id = name_to_id(g, p, q, (int)(e - q), t[i].col + (int)(q - t[i].s));
                if (id < 0)
                    return KILN_ERR_FORMAT;
                ids[n_ids++] = id;
                q = comma ? comma + 1 : end;
            }
        }
        if (n_ids == 0)
            return spec_error(p, t[0].col, "'output' needs at least one layer name");
        if (kiln_graph_set_outputs(g, ids, n_ids) != KILN_OK)
            return spec_error(p, t[0].col, "%s", kiln_last_error());
        return KILN_OK;
    }
    if (t[0].len == 5 && memcmp(t[0].s, "split", 5) == 0)
        return parse_split(g, p, t, n, name);
    kiln_op op = op_from(&t[0]);
    if (op == KILN_OP_COUNT)
        return spec_error(p, t[0].col, "unknown op '%.*s'", t[0].len, t[0].s);
    if (g->n == 0 && op != KILN_OP_INPUT && op != KILN_OP_PARAM && op != KILN_OP_CONST)
        return spec_error(p, t[0].col, "the first layer must be 'input'");
    kiln_attrs a = {0};
    if (op == KILN_OP_CLIP) {   /* a bound left out is none */
        a.lo = -INFINITY;
        a.hi = INFINITY;
    }
    kiln_dtype dtype = KILN_DT_F32;
    int ids[KILN_MAX_INPUTS], n_ids = 0, pos = 0, dims[KILN_MAX_RANK] = {0};
    const kiln_op_def *def = kiln_op_def_of(op);
    /* positional arguments name the inputs (reshape's are its dims) */
    bool names = (def->max_inputs > 1 && op != KILN_OP_RESHAPE) || op == KILN_OP_SHAPE || op == KILN_OP_CAST;
    const token *values = NULL;   /* a const's values=, parsed once its shape and dtype are known */
    bool typed = false;
    for (int i = 1; i < n; i++) {
        const char *eq = memchr(t[i].s, '=', (size_t)t[i].len);
        if (eq) {
            int e = (int)(eq - t[i].s);
            if (e == 2 && memcmp(t[i].s, "in", 2) == 0) {
                token v = {t[i].s + 3, t[i].len - 3, t[i].col + 3};
                if ((n_ids = parse_names(g, p, &v, ids, 0)) < 0)
                    return KILN_ERR_FORMAT;
            } else if ((op == KILN_OP_INPUT || op == KILN_OP_CONST || op == KILN_OP_CAST) && e == 5 &&
                       memcmp(t[i].s, "dtype", 5) == 0) {
                const char *v = t[i].s + 6;
                int vl = t[i].len - 6;
                bool input = op == KILN_OP_INPUT;
                if (!parse_dtype(v, vl, &dtype) || (input ? dtype != KILN_DT_F32 && dtype != KILN_DT_I32
                                                          : dtype == KILN_DT_I32))
                    return spec_error(p, t[i].col + 6, "bad value '%.*s' for dtype, expected %s", vl, v,
                                      input ? "f32 or i32" : "f32, i64 or bool");
                a.dtype = dtype;
                typed = true;
            } else if (op == KILN_OP_CONST && e == 6 && memcmp(t[i].s, "values", 6) == 0) {
                values = &t[i];
            } else if (!apply_key(op, p, &t[i], e, &a)) {
                return KILN_ERR_FORMAT;
            }
            continue;
        }
        bool ok = true;
        switch (op) {
        case KILN_OP_INPUT:
            ok = pos < KILN_MAX_RANK && parse_int(t[i].s, t[i].len, &dims[pos]) && dims[pos] > 0;
            break;
        case KILN_OP_DENSE:
        case KILN_OP_LINEAR:
            ok = pos == 0 && parse_int(t[i].s, t[i].len, &a.units) && a.units > 0;
            break;
        case KILN_OP_CONV2D:
        case KILN_OP_CONV_TRANSPOSE2D:
            ok = pos < 2 && (pos == 0 ? parse_int(t[i].s, t[i].len, &a.units) && a.units > 0
                                      : parse_pair(t[i].s, t[i].len, a.kernel) && a.kernel[0] > 0 && a.kernel[1] > 0);
            break;
        case KILN_OP_MAXPOOL2D:
        case KILN_OP_AVGPOOL2D:
            ok = pos == 0 && parse_pair(t[i].s, t[i].len, a.kernel) && a.kernel[0] > 0 && a.kernel[1] > 0;
            break;
        case KILN_OP_LEAKY_RELU:
        case KILN_OP_DROPOUT:
            ok = pos == 0 && parse_float(t[i].s, t[i].len, &a.alpha);
            break;
        case KILN_OP_PARAM:
        case KILN_OP_RESHAPE:
            ok = pos == 0 && (a.rank = parse_dims(t[i].s, t[i].len, a.shape)) > 0;
            break;
        case KILN_OP_CONST:
            ok = pos == 0 && (a.rank = parse_dims(t[i].s, t[i].len, a.shape)) > 0;
            for (int d = 0; ok && d < a.rank; d++)
                ok = a.shape[d] > 0;
            break;
        case KILN_OP_TRANSPOSE:
            ok = pos == 0 && (a.rank = parse_list(t[i].s, t[i].len, a.perm, KILN_MAX_RANK)) > 0;
            break;
        case KILN_OP_EMBEDDING:
            ok = pos < 2 && parse_int(t[i].s, t[i].len, pos == 0 ? &a.vocab : &a.units) &&
                 (pos == 0 ? a.vocab : a.units) > 0;
            break;
        default:
            if (names) {
                if ((n_ids = parse_names(g, p, &t[i], ids, n_ids)) < 0)
                    return KILN_ERR_FORMAT;
            } else {
                ok = false;
            }
        }
        if (!ok)
            return spec_error(p, t[i].col, "unexpected argument '%.*s' for %s", t[i].len, t[i].s, kiln_op_name(op));
        pos++;
    }
    if (op == KILN_OP_INPUT) {
        if (pos < 1)
            return spec_error(p, t[0].col, "input takes 1 to %d dims, found none", KILN_MAX_RANK);
        if (kiln_graph_input_nd(g, name[0] ? name : NULL, dtype, pos, dims) < 0)
            return spec_error(p, t[0].col, "%s", kiln_last_error());
        return KILN_OK;
    }
    if ((op == KILN_OP_DENSE || op == KILN_OP_CONV2D || op == KILN_OP_LINEAR || op == KILN_OP_CONV_TRANSPOSE2D) &&
        a.units <= 0)
        return spec_error(p, t[0].col, "%s needs its output size", kiln_op_name(op));
    if ((op == KILN_OP_CONV2D || op == KILN_OP_CONV_TRANSPOSE2D) && a.kernel[0] <= 0)
        return spec_error(p, t[0].col, "%s needs a kernel size", kiln_op_name(op));
    if ((op == KILN_OP_MAXPOOL2D || op == KILN_OP_AVGPOOL2D) && a.kernel[0] <= 0)
        return spec_error(p, t[0].col, "%s needs a window size", kiln_op_name(op));
    if (op == KILN_OP_PARAM && a.rank <= 0)
        return spec_error(p, t[0].col, "%s needs a shape such as 50x64", kiln_op_name(op));
    if (op == KILN_OP_RESHAPE && a.rank <= 0 && n_ids != 2)
        return spec_error(p, t[0].col, "reshape needs a shape such as 50x64, or in=X,SHAPE");
    if (op == KILN_OP_CAST && !typed)
        return spec_error(p, t[0].col, "cast needs dtype=f32, i64 or bool");
    void *vals = NULL;
    if (op == KILN_OP_CONST) {
        const char *node = name[0] ? name : "const";
        double numel = 1;
        for (int d = 0; d < a.rank; d++)
            numel *= a.shape[d];
        if (!values && a.dtype != KILN_DT_F32)
            return spec_error(p, t[0].col, "%s: const: an %s constant needs values=", node, kiln_dtype_name(a.dtype));
        if (values && !(a.values = vals = parse_values(p, values, node, a.dtype, numel)))
            return KILN_ERR_FORMAT;
    }
    if (op == KILN_OP_TRANSPOSE && a.rank <= 0)
        return spec_error(p, t[0].col, "transpose needs a permutation such as 1,0");
    if (op == KILN_OP_EMBEDDING && pos != 2)
        return spec_error(p, t[0].col, "embedding needs VOCAB and WIDTH");
    if (op == KILN_OP_ATTENTION && a.heads <= 0)
        return spec_error(p, t[0].col, "attention needs heads=");
    if ((op == KILN_OP_MEAN || op == KILN_OP_SUM) && a.axes == 0)
        return spec_error(p, t[0].col, "%s needs axes=", kiln_op_name(op));
    if (op == KILN_OP_DROPOUT && pos == 0)
        a.alpha = 0.5f;
    if (names && def->min_inputs >= 2 && n_ids == 1) {   /* one name: the previous layer and it */
        ids[1] = ids[0];
        ids[0] = g->n - 1;
        n_ids = 2;
    }
    int id = kiln_graph_add(g, op, n_ids ? ids : NULL, n_ids, &a, name[0] ? name : NULL);
    free(vals);
    if (id < 0)
        return spec_error(p, t[0].col, "%s", kiln_last_error());
    return KILN_OK;
}

kiln_graph_t *kiln_spec_parse(const char *text, const char *origin)
{
    kiln_graph_t *g = kiln_graph_create();
    if (!g) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    spec_pos p = {origin ? origin : "<spec>", 0};
    const char *s = text;
    while (*s) {
        const char *nl = strchr(s, '\n');
        int len = nl ? (int)(nl - s) : (int)strlen(s);
        p.line++;
        token t[40];
        int n = tokenize(s, len, t, 40);
        if (n == 40) {
            spec_error(&p, 1, "too many words on one line (at most 39)");
            goto fail;
        }
        if (n > 0 && parse_line(g, &p, t, n) != KILN_OK)
            goto fail;
        s = nl ? nl + 1 : s + len;
    }
    if (g->n < 2) {
        kiln_error(KILN_ERR_FORMAT, "%s: a model needs an input and at least one layer, found %d",
                   p.origin, g->n);
        goto fail;
    }
    return g;
fail:
    kiln_graph_free(g);
    return NULL;
}

kiln_graph_t *kiln_spec_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kiln_error(KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                kiln_error(KILN_ERR_FORMAT, "%s: spec larger than 16 MiB", path);
                return NULL;
            }
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                kiln_error(KILN_ERR_NOMEM, "out of memory");
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, 4096, f);
        len += r;
        if (r < 4096)
            break;
    }
    fclose(f);
    buf[len] = 0;
    if (strlen(buf) != len) {
        free(buf);
        kiln_error(KILN_ERR_FORMAT, "%s: spec contains a NUL byte", path);
        return NULL;
    }
    kiln_graph_t *g = kiln_spec_parse(buf, path);
    free(buf);
    return g;
}

/* Appends printf output to a growable string. */
static void sb_printf(char **s, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void sb_printf(char **s, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = *s ? vsnprintf(*s + *len, *cap - *len, fmt, ap) : -1;
        va_end(ap);
        if (n >= 0 && *len + (size_t)n < *cap) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = (*cap ? *cap * 2 : 1024) + (n > 0 ? (size_t)n : 0);
        char *ns = realloc(*s, ncap);
        if (!ns)
            abort();
        *s = ns;
        *cap = ncap;
    }
}

static void pair_str(char *out, size_t n, const int v[2])
{
    if (v[0] == v[1])
        snprintf(out, n, "%d", v[0]);
    else
        snprintf(out, n, "%dx%d", v[0], v[1]);
}

char *kiln_graph_to_spec(const kiln_graph_t *g)
{
    char *s = NULL;
    size_t len = 0, cap = 0;
    sb_printf(&s, &len, &cap, "# kiln model spec\n");
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        const kiln_attrs *a = &nd->a;
        char k[32], st[32], pd[32], dl[32];
        pair_str(k, sizeof k, a->kernel);
        pair_str(st, sizeof st, a->stride);
        pair_str(pd, sizeof pd, a->pad);
        pair_str(dl, sizeof dl, a->dilation);
        if (nd->op == KILN_OP_INPUT) {   /* the first input of an f32 graph keeps the old form */
            if (strcmp(nd->name, "input") != 0)
                sb_printf(&s, &len, &cap, "%s: ", nd->name);
            sb_printf(&s, &len, &cap, "input");
            for (int d = 0; d < nd->rank; d++)
                sb_printf(&s, &len, &cap, " %d", nd->dims[d]);
            sb_printf(&s, &len, &cap, "%s\n", nd->dtype == KILN_DT_I32 ? " dtype=i32" : "");
            continue;
        }
        sb_printf(&s, &len, &cap, "%s: %s", nd->name, kiln_op_name(nd->op));
        switch (nd->op) {
        case KILN_OP_DENSE:
            sb_printf(&s, &len, &cap, " %d%s", a->units, a->no_bias ? " bias=0" : "");
            break;
        case KILN_OP_CONV2D:
            sb_printf(&s, &len, &cap, " %d %s stride=%s pad=%s dilation=%s groups=%d%s", a->units, k, st,
                      pd, dl, a->groups, a->no_bias ? " bias=0" : "");
            break;
        case KILN_OP_CONV_TRANSPOSE2D: {
            char op_[32];
            pair_str(op_, sizeof op_, a->out_pad);
            sb_printf(&s, &len, &cap, " %d %s stride=%s pad=%s dilation=%s out_pad=%s%s", a->units, k, st, pd, dl, op_,
                      a->no_bias ? " bias=0" : "");
            break;
        }
        case KILN_OP_UPSAMPLE:
            if (a->scale[0] > 0)   /* a scale decides the sampling ratio too: kept */
                sb_printf(&s, &len, &cap, " scale=%.9gx%.9g", a->scale[0], a->scale[1]);
            else
                sb_printf(&s, &len, &cap, " size=%dx%d", a->size[0], a->size[1]);
            sb_printf(&s, &len, &cap, " mode=%s", a->mode == 2 ? "bicubic" : a->mode ? "bilinear" : "nearest");
            if (a->coord >= 1 && a->coord <= 4)
                sb_printf(&s, &len, &cap, " coord=%s", a->coord == 1 ? "half_pixel" : a->coord == 2 ? "asymmetric"
                          : a->coord == 3 ? "align_corners" : "pytorch_half_pixel");
            if (a->cubic_a != 0.0f)
                sb_printf(&s, &len, &cap, " cubic_a=%.9g", a->cubic_a);
            if (a->exclude)
                sb_printf(&s, &len, &cap, " exclude=1");
            if (a->rounding >= 1 && a->rounding <= 3)
                sb_printf(&s, &len, &cap, " rounding=%s",
                          a->rounding == 1 ? "half_down" : a->rounding == 2 ? "half_up" : "ceil");
            break;
        case KILN_OP_PAD: {
            const kiln_node *x = &g->nodes[nd->inputs[0]];
            if (x->rank > 0)   /* a scalar has no axes to pad: no pads= (an empty list does not parse) */
                sb_printf(&s, &len, &cap, " pads=");
            for (int d = 0; d < 2 * x->rank; d++)
                sb_printf(&s, &len, &cap, "%s%d", d ? "," : "",
                          a->pads[d < x->rank ? d : KILN_MAX_RANK + d - x->rank]);
            if (a->value != 0)
                sb_printf(&s, &len, &cap, " value=%.9g", a->value);
            if (a->mode)
                sb_printf(&s, &len, &cap, " mode=%s", a->mode == 1 ? "reflect" : "edge");
            break;
        }
        case KILN_OP_MAXPOOL2D:
        case KILN_OP_AVGPOOL2D:
            sb_printf(&s, &len, &cap, " %s stride=%s pad=%s", k, st, pd);
            break;
        case KILN_OP_LEAKY_RELU:
        case KILN_OP_DROPOUT:
            sb_printf(&s, &len, &cap, " %.9g", a->alpha);
            break;
        case KILN_OP_BATCHNORM:
            sb_printf(&s, &len, &cap, " eps=%.9g momentum=%.9g", a->eps, a->momentum);
            break;
        case KILN_OP_LINEAR:
            sb_printf(&s, &len, &cap, " %d%s", a->units, a->no_bias ? " bias=0" : "");
            break;
        case KILN_OP_PARAM:
        case KILN_OP_RESHAPE:
            for (int d = 0; d < a->rank; d++)
                sb_printf(&s, &len, &cap, "%s%d", d ? "x" : " ", a->shape[d]);
            if (nd->op == KILN_OP_PARAM && a->std > 0)
                sb_printf(&s, &len, &cap, " std=%.9g", a->std);
            break;
        case KILN_OP_TRANSPOSE:
            for (int d = 0; d < a->rank; d++)
                sb_printf(&s, &len, &cap, "%s%d", d ? "," : " ", a->perm[d]);
            break;
        case KILN_OP_LAYERNORM:
        case KILN_OP_RMSNORM:
            sb_printf(&s, &len, &cap, " eps=%.9g", a->eps);
            break;
        case KILN_OP_SOFTMAX:
        case KILN_OP_LOG_SOFTMAX:
        case KILN_OP_CONCAT:
            if (a->axis)
                sb_printf(&s, &len, &cap, " axis=%d", a->axis);
            break;
        case KILN_OP_SLICE:
            sb_printf(&s, &len, &cap, " axis=%d start=%d end=%d step=%d", a->axis, a->start, a->end, a->step);
            break;
        case KILN_OP_EMBEDDING:
            sb_printf(&s, &len, &cap, " %d %d", a->vocab, a->units);
            break;
        case KILN_OP_CONST: {   /* i64/bool values in the spec (they decide shapes); f32 ones in the file */
            for (int d = 0; d < a->rank; d++)
                sb_printf(&s, &len, &cap, "%s%d", d ? "x" : " ", a->shape[d]);
            sb_printf(&s, &len, &cap, " dtype=%s", nd->dtype == KILN_DT_I64 ? "i64" : nd->dtype == KILN_DT_BOOL ? "bool"
                                                                                                             : "f32");
            const int64_t *v = kiln_const_ints(nd);
            for (size_t k = 0; nd->dtype != KILN_DT_F32 && k < nd->numel; k++)
                sb_printf(&s, &len, &cap, "%s%lld", k ? "," : " values=", (long long)v[k]);
            break;
        }
        case KILN_OP_CAST:
            sb_printf(&s, &len, &cap, " dtype=%s", a->dtype == KILN_DT_I64 ? "i64" : a->dtype == KILN_DT_BOOL ? "bool"
                                                                                                           : "f32");
            break;
        case KILN_OP_ATTENTION:
            sb_printf(&s, &len, &cap, " heads=%d%s", a->heads, a->causal ? " causal=1" : "");
            break;
        case KILN_OP_CLIP:
            sb_printf(&s, &len, &cap, " lo=%.9g hi=%.9g", a->lo, a->hi);
            break;
        case KILN_OP_MEAN:
        case KILN_OP_SUM: {
            sb_printf(&s, &len, &cap, " axes=");
            const char *sep = "";
            for (int d = 0; d < KILN_MAX_RANK; d++)
                if (a->axes >> d & 1) {
                    sb_printf(&s, &len, &cap, "%s%d", sep, d);
                    sep = ",";
                }
            if (a->keepdims)
                sb_printf(&s, &len, &cap, " keepdims=1");
            break;
        }
        default:
            break;
        }
        if (a->act == KILN_OP_LEAKY_RELU)
            sb_printf(&s, &len, &cap, " act=leaky_relu slope=%.9g", a->alpha);
        else if (a->act != KILN_OP_INPUT)
            sb_printf(&s, &len, &cap, " act=%s", kiln_op_name(a->act));
        bool implicit = (nd->n_inputs == 1 && nd->inputs[0] == i - 1) || nd->n_inputs == 0;
        if (!implicit) {
            sb_printf(&s, &len, &cap, " in=");
            for (int j = 0; j < nd->n_inputs; j++)
                sb_printf(&s, &len, &cap, "%s%s", j ? "," : "", g->nodes[nd->inputs[j]].name);
        }
        sb_printf(&s, &len, &cap, "\n");
    }
    if (g->n_outputs) {
        sb_printf(&s, &len, &cap, "output");
        for (int k = 0; k < g->n_outputs; k++)
            sb_printf(&s, &len, &cap, "%s%s", k ? "," : " ", g->nodes[g->outputs[k]].name);
        sb_printf(&s, &len, &cap, "\n");
    }
    return s;
}
