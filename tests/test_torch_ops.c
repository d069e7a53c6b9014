/* Each N-d op's forward outputs and its input and parameter gradients against PyTorch on random
 * shapes (batch 1 to 3), and a whole pre-norm transformer block: tests/ref/torch_ops.py writes
 * the cases (spec text, inputs, parameters, outputs, output gradients R and PyTorch's gradients
 * of sum(out * R)) with Debian's python3-torch; this builds each graph from its spec, copies in
 * PyTorch's parameters by name, runs the tape forward in training mode and backward from R, and
 * compares: relative error max|a - b| / max|b| below 1e-4 forward, 1e-3 for gradients.
 * KILN_REF_SEED=N picks other random shapes (default 0). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "io/graph_file.h"
#include "kiln/kiln_train.h"

#define FWD_TOL 1e-4
#define GRAD_TOL 1e-3

/* max |a - b| / max |b|: the tensor's relative error (infinite if a holds a NaN or an infinity). */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* Worst errors of one op label over its cases. */
typedef struct {
    char label[32];
    int cases;
    double fwd, grad;
} op_stat;

static op_stat stats[64];
static int n_stats;

static op_stat *stat_of(const char *label)
{
    for (int i = 0; i < n_stats; i++)
        if (strcmp(stats[i].label, label) == 0)
            return &stats[i];
    if (n_stats == 64)
        return &stats[63];
    op_stat *s = &stats[n_stats++];
    snprintf(s->label, sizeof s->label, "%s", label);
    return s;
}

/* The reference tensor "<case>/<kind>/<name>" of dtype, with the leading dims (batch, dims...)
 * of a tensor of n elements; NULL (and a failed check) if absent or shaped otherwise. */
static const void *ref_tensor(const kiln_st_file *f, int c, const char *kind, const char *name, kiln_dtype dtype,
                              size_t n, const char *spec)
{
    char key[KILN_ST_NAME_MAX];
    snprintf(key, sizeof key, "%d/%s/%s", c, kind, name);
    const kiln_st_tensor *t = kiln_st_find(f, key);
    CHECK(t != NULL, "case %d: reference tensor %s is missing:\n%s", c, key, spec);
    if (!t)
        return NULL;
    CHECK(t->dtype == dtype && t->nbytes == n * 4, "case %d: reference tensor %s has %zu bytes, Kiln %zu:\n%s", c, key,
          t->nbytes, n * 4, spec);
    return t->dtype == dtype && t->nbytes == n * 4 ? t->data : NULL;
}

/* ref_tensor for a node's output (batch, dims...) ((dims...) when unbatched), checking the shape. */
static const void *ref_node_tensor(const kiln_st_file *f, int c, const char *kind, const char *name,
                                   const kiln_node *nd, int batch, const char *spec)
{
    const void *p = ref_tensor(f, c, kind, name, nd->dtype, nd->numel * (nd->batched ? (size_t)batch : 1), spec);
    char key[KILN_ST_NAME_MAX];
    snprintf(key, sizeof key, "%d/%s/%s", c, kind, name);
    const kiln_st_tensor *t = kiln_st_find(f, key);
    int lead = nd->batched ? 1 : 0;
    bool same = t && t->ndim == nd->rank + lead && (!lead || t->dims[0] == batch);
    for (int d = 0; same && d < nd->rank; d++)
        same = t->dims[d + lead] == nd->dims[d];
    CHECK(!p || same, "case %d: reference tensor %s is shaped otherwise than Kiln's %s:\n%s", c, key, nd->name, spec);
    return same ? p : NULL;
}

/* Spec text on one line, for messages. */
static void one_line(const char *spec, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; spec[i] && j + 3 < cap; i++) {
        if (spec[i] != '\n')
            out[j++] = spec[i];
        else if (spec[i + 1]) {
            out[j++] = ';';
            out[j++] = ' ';
        }
    }
    out[j] = 0;
}

/* Checks one output or gradient against PyTorch's, raising *worst to its relative error. */
static void compare(int c, const char *what, const float *kiln, const float *ref, size_t n, double tol, double *worst,
                    const char *spec)
{
    if (!kiln || !ref)
        return;
    double e = rel_err(kiln, ref, n);
    size_t at = 0;
    double d = -1;
    for (size_t i = 0; i < n && isfinite(d); i++)
        if (!isfinite(kiln[i]) || fabs((double)kiln[i] - ref[i]) > d)
            d = isfinite(kiln[i]) ? fabs((double)kiln[i] - ref[i]) : INFINITY, at = i;
    *worst = fmax(*worst, e);
    CHECK(e < tol, "case %d: %s differs from PyTorch: relative error %.3e (tolerance %.0e); worst at [%zu]: Kiln %.7g, "
          "PyTorch %.7g\n%s", c, what, e, tol, at, kiln[at], ref[at], spec);
}

static void check_case(const kiln_st_file *f, int c)
{
    char key[64], line[512];
    snprintf(key, sizeof key, "%d/spec", c);
    const char *spec = kiln_st_meta(f, key);
    snprintf(key, sizeof key, "%d/label", c);
    const char *label = kiln_st_meta(f, key);
    snprintf(key, sizeof key, "%d/batch", c);
    const char *bs = kiln_st_meta(f, key);
    CHECK(spec && label && bs, "case %d: metadata missing", c);
    if (!spec || !label || !bs)
        return;
    int batch = atoi(bs);
    one_line(spec, line, sizeof line);
    kiln_graph_t *g = kiln_spec_parse(spec, label);
    CHECK(g != NULL, "case %d: spec failed: %s\n%s", c, kiln_last_error(), spec);
    if (!g)
        return;
    /* PyTorch's parameters, by Kiln's tensor names; the file holds no others */
    int n_t = kiln_graph_tensors(g, NULL, 0), n_file = 0;
    kiln_st_tensor *ts = calloc((size_t)n_t + 1, sizeof *ts);
    kiln_graph_tensors(g, ts, n_t);
    for (int i = 0; i < n_t; i++) {
        const float *p = ref_tensor(f, c, "p", ts[i].name, KILN_DT_F32, ts[i].nbytes / 4, spec);
        if (p)
            memcpy((void *)ts[i].data, p, ts[i].nbytes);
    }
    snprintf(key, sizeof key, "%d/p/", c);
    for (int i = 0; i < kiln_st_count(f); i++)
        n_file += strncmp(kiln_st_at(f, i)->name, key, strlen(key)) == 0;
    CHECK(n_file == n_t, "case %d: PyTorch has %d parameter tensors, Kiln %d:\n%s", c, n_file, n_t, spec);
    /* inputs */
    int n_in = kiln_graph_inputs(g, NULL), outs[KILN_MAX_OUTPUTS], n_out = kiln_graph_outputs(g, outs);
    int *in_ids = malloc(sizeof(int) * (size_t)n_in);
    const void **x = calloc((size_t)n_in, sizeof *x);
    kiln_graph_inputs(g, in_ids);
    bool ok = true;
    for (int k = 0; k < n_in; k++) {
        const kiln_node *in = &g->nodes[in_ids[k]];
        x[k] = ref_node_tensor(f, c, "x", in->name, in, batch, spec);
        ok = ok && x[k];
    }
    kiln_tape_t *t = ok ? kiln_tape_create(g, batch, true, 0) : NULL;
    CHECK(!ok || t, "case %d: tape: %s", c, kiln_last_error());
    if (t) {
        kiln_status st = kiln_tape_run(t, x, batch, true);
        CHECK(st == KILN_OK, "case %d: forward failed: %s\n%s", c, kiln_last_error(), spec);
        ok = st == KILN_OK;
    } else
        ok = false;
    double fwd = 0, grad = 0;
    const float *r[KILN_MAX_OUTPUTS];
    for (int k = 0; ok && k < n_out; k++) {
        const kiln_node *o = &g->nodes[outs[k]];
        size_t n = o->numel * (o->batched ? (size_t)batch : 1);
        char name[16], what[96];
        snprintf(name, sizeof name, "%d", k);
        snprintf(what, sizeof what, "output %d (%s)", k, o->name);
        compare(c, what, kiln_tape_output(t, k), ref_node_tensor(f, c, "y", name, o, batch, spec), n, FWD_TOL, &fwd,
                spec);
        r[k] = ref_tensor(f, c, "r", name, KILN_DT_F32, n, spec);
        ok = ok && r[k];
    }
    if (ok) {
        kiln_tape_backward_outputs(t, r);
        for (int k = 0; k < n_in; k++) {
            const kiln_node *in = &g->nodes[in_ids[k]];
            if (in->dtype != KILN_DT_F32)
                continue;
            char what[96];
            snprintf(what, sizeof what, "gradient of input %s", in->name);
            const float *gx = kiln_tape_node_grad(t, in_ids[k]);
            CHECK(gx != NULL, "case %d: no gradient kept for input %s", c, in->name);
            compare(c, what, gx, ref_tensor(f, c, "dx", in->name, KILN_DT_F32, in->numel * (size_t)batch, spec),
                    in->numel * (size_t)batch, GRAD_TOL, &grad, spec);
        }
        const float *dp = kiln_tape_param_grads(t);
        for (int i = 0; i < n_t; i++) {
            char what[160];
            snprintf(what, sizeof what, "gradient of parameter %s", ts[i].name);
            size_t n = ts[i].nbytes / 4, off = (size_t)((const float *)ts[i].data - g->params);
            compare(c, what, dp + off, ref_tensor(f, c, "dp", ts[i].name, KILN_DT_F32, n, spec), n, GRAD_TOL, &grad,
                    spec);
        }
        printf("%3d %-18s batch %d  forward %.2e  gradients %.2e  %s\n", c, label, batch, fwd, grad, line);
        op_stat *s = stat_of(label);
        s->cases++;
        s->fwd = fmax(s->fwd, fwd);
        s->grad = fmax(s->grad, grad);
    }
    kiln_tape_free(t);
    free(x);
    free(in_ids);
    free(ts);
    kiln_graph_free(g);
}

int main(void)
{
    const char *src = getenv("KILN_SOURCE_DIR"), *bin = getenv("KILN_BINARY_DIR"), *seed = getenv("KILN_REF_SEED");
    char path[1024], cmd[4096];
    snprintf(path, sizeof path, "%s/torch_ops.safetensors", bin ? bin : ".");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/ref/torch_ops.py %s --seed %d", src ? src : "..", path,
             seed ? atoi(seed) : 0);
    int rc = system(cmd);
    CHECK(rc == 0, "PyTorch reference generator failed (%d): is python3-torch installed (scripts/setup-deps)?", rc);
    if (rc)
        return check_report();
    kiln_st_file *f = kiln_st_open(path);
    CHECK(f != NULL, "%s", kiln_last_error());
    if (!f)
        return check_report();
    const char *nc = kiln_st_meta(f, "cases");
    int n = nc ? atoi(nc) : 0;
    CHECK(n > 0, "no cases in %s", path);
    for (int c = 0; c < n; c++)
        check_case(f, c);
    printf("worst relative errors per op (tolerance %.0e forward, %.0e gradients):\n", FWD_TOL, GRAD_TOL);
    for (int i = 0; i < n_stats; i++)
        printf("  %-18s %2d cases  forward %.2e  gradients %.2e\n", stats[i].label, stats[i].cases, stats[i].fwd,
               stats[i].grad);
    kiln_st_close(f);
    remove(path);
    return check_report();
}
