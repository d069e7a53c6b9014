/* Post-training static quantisation: calibrate activation ranges on sample inputs, quantise
 * conv/dense weights per output channel, and pick the calibration whose int8 outputs agree best
 * with fp32 on the calibration set. */
#include <math.h>
#include "core/omp_compat.h"
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"
#include "infer/optimize.h"
#include "infer/runtime.h"
#include "ops/ops.h"

#define CALIB_BATCH 100
#define BINS 2048

typedef struct {
    double min, max;
    double *hist;   /* BINS over [min, max]; NULL when only min-max calibration is asked for */
} node_stats;

void kiln_qmodel_tie_views(const kiln_graph_t *g, kiln_qmodel *q)
{
    for (int i = 1; i < g->n; i++) {   /* in order: a pool of a pool takes the first one's */
        kiln_op op = g->nodes[i].op;
        if ((op == KILN_OP_MAXPOOL2D && q->int8[i]) || (op == KILN_OP_FLATTEN && q->elem_bytes[i] == 1))
            q->qp[i] = q->qp[g->nodes[i].inputs[0]];
    }
}

static bool fuse_pools = true;   /* kiln_quantize_fuse_pools */

bool kiln_quantize_fuse_pools(bool on)
{
    bool old = fuse_pools;
    fuse_pools = on;
    return old;
}

/* Fuses into int8 conv i (u8 output, relu or no activation) the 2x2 stride-2 max pool that is
 * its only reader: the conv then writes the pooled u8 output (kiln_qrequant.max4). */
static void fuse_pool(const kiln_graph_t *g, kiln_qmodel *q, int i)
{
    const kiln_node *nd = &g->nodes[i];
    if (!fuse_pools || nd->op != KILN_OP_CONV2D || !q->int8[i] || q->elem_bytes[i] != 1 ||
        (nd->a.act != KILN_OP_INPUT && nd->a.act != KILN_OP_RELU))
        return;
    int reader = 0, readers = 0;
    for (int c = i + 1; c < g->n; c++)
        for (int j = 0; j < g->nodes[c].n_inputs; j++)
            if (g->nodes[c].inputs[j] == i)
                reader = c, readers++;
    const kiln_node *p = &g->nodes[reader];
    if (readers == 1 && p->op == KILN_OP_MAXPOOL2D && q->int8[reader] && p->a.kernel[0] == 2 &&
        p->a.kernel[1] == 2 && p->a.stride[0] == 2 && p->a.stride[1] == 2 && p->a.pad[0] == 0 && p->a.pad[1] == 0 &&
        p->dims[1] == nd->dims[1] / 2 && p->dims[2] == nd->dims[2] / 2 && p->dims[1] > 0 && p->dims[2] > 0)
        q->pool_of[i] = reader;
}

/* Whether a view other than a flatten reads node i: u8 tensors are NHWC, which only a flatten
 * (and the dense weights reordered for it) knows how to look through. */
static bool reshaped(const kiln_graph_t *g, int i)
{
    for (int c = i + 1; c < g->n; c++)
        for (int j = 0; j < g->nodes[c].n_inputs; j++)
            if (g->nodes[c].inputs[j] == i && kiln_op_is_view(g->nodes[c].op) && g->nodes[c].op != KILN_OP_FLATTEN)
                return true;
    return false;
}

kiln_status kiln_qmodel_layout(const kiln_graph_t *g, kiln_qmodel *q)
{
    int n = g->n;
    q->elem_bytes = malloc((size_t)n * sizeof(int));
    q->int8 = calloc((size_t)n, sizeof(bool));
    q->qp = calloc((size_t)n, sizeof(kiln_qparams));
    q->qw = calloc((size_t)n, sizeof(kiln_qweights));
    q->pool_of = calloc((size_t)n, sizeof(int));
    if (!q->elem_bytes || !q->int8 || !q->qp || !q->qw || !q->pool_of)
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    bool *cand = calloc((size_t)n, sizeof(bool));
    if (!cand)
        return kiln_error(KILN_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const kiln_node *nd = &g->nodes[i];
        cand[i] = (nd->op == KILN_OP_CONV2D && nd->a.groups == 1) || nd->op == KILN_OP_DENSE ||
                  nd->op == KILN_OP_MAXPOOL2D || nd->op == KILN_OP_LINEAR;
    }
    for (int i = 0; i < n; i++) {
        const kiln_node *nd = &g->nodes[i];
        q->elem_bytes[i] = 4;
        if (nd->op == KILN_OP_INPUT)
            continue;
        if (nd->op == KILN_OP_FLATTEN) {
            q->elem_bytes[i] = q->elem_bytes[nd->inputs[0]];
            continue;
        }
        if (kiln_op_is_view(nd->op)) {   /* (not a flatten: below) a view has its input's bytes */
            q->elem_bytes[i] = q->elem_bytes[nd->inputs[0]];
            continue;
        }
        if (nd->op == KILN_OP_MAXPOOL2D) {   /* u8 in, u8 out; fp32 when a reshape reads it */
            q->int8[i] = q->elem_bytes[nd->inputs[0]] == 1 && !reshaped(g, i);
            q->elem_bytes[i] = q->int8[i] ? 1 : 4;
            continue;
        }
        if (!cand[i])
            continue;
        q->int8[i] = true;
        if (nd->op == KILN_OP_LINEAR)   /* fp32 out: its readers (norms, attention, adds) are fp32 */
            continue;
        /* u8 output when every reader (looking through flattens) is int8-capable */
        bool all = i != n - 1, any = false;
        for (int c = i + 1; c < n; c++)
            for (int j = 0; j < g->nodes[c].n_inputs; j++) {
                int src = g->nodes[c].inputs[j];
                bool mine = src == i || (g->nodes[src].op == KILN_OP_FLATTEN && g->nodes[src].inputs[0] == i);
                if (mine && g->nodes[c].op != KILN_OP_FLATTEN) {
                    any = true;   /* a linear reads fp32 rows: it quantises them itself */
                    all = all && cand[c] && g->nodes[c].op != KILN_OP_LINEAR;
                }
            }
        q->elem_bytes[i] = all && any ? 1 : 4;
    }
    free(cand);
    for (int i = 1; i < n; i++)
        fuse_pool(g, q, i);
    return KILN_OK;
}

/* Runs the fp32 graph over the calibration set, calling visit for every node's output batch. */
typedef void (*visit_fn)(node_stats *st, const float *x, size_t n);

/* The range of x (NaNs ignored) into st, in 16 independent chains: one running min and max
 * would wait on each comparison's latency. */
static void visit_minmax(node_stats *st, const float *x, size_t n)
{
    float lo[16], hi[16];
    for (int l = 0; l < 16; l++)
        lo[l] = INFINITY, hi[l] = -INFINITY;
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 16; l++) {
            lo[l] = x[i + l] < lo[l] ? x[i + l] : lo[l];
            hi[l] = x[i + l] > hi[l] ? x[i + l] : hi[l];
        }
    for (int l = 0; i < n; i++, l++) {
        lo[l] = x[i] < lo[l] ? x[i] : lo[l];
        hi[l] = x[i] > hi[l] ? x[i] : hi[l];
    }
    for (int l = 0; l < 16; l++) {
        st->min = lo[l] < st->min ? lo[l] : st->min;
        st->max = hi[l] > st->max ? hi[l] : st->max;
    }
}

static void visit_hist(node_stats *st, const float *x, size_t n)
{
    double w = st->max - st->min;
    if (!(w > 0))
        return;
    for (size_t i = 0; i < n; i++) {
        int b = (int)((x[i] - st->min) / w * (BINS - 1));
        st->hist[b < 0 ? 0 : (b >= BINS ? BINS - 1 : b)] += 1;
    }
}

static kiln_status calibrate_pass(const kiln_graph_t *g, const void *calib, int n_calib, node_stats *st, visit_fn f)
{
    int n = g->n;
    float **act = calloc((size_t)n, sizeof(float *));
    size_t work_n = 16;
    for (int i = 1; i < n; i++) {
        size_t w = kiln_node_work_floats(g, i, omp_get_max_threads());
        work_n = w > work_n ? w : work_n;
    }
    float *work = malloc(work_n * sizeof(float));
    kiln_status s = KILN_OK;
    bool *owned = calloc((size_t)n, sizeof(bool));   /* act[i] is malloc'd: not a param or a view */
    for (int i = 1; act && owned && i < n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_PARAM)
            act[i] = kiln_node_tensor(g, nd, 0);
        else if (kiln_op_is_view(nd->op))
            act[i] = act[nd->inputs[0]];   /* (set again per batch below: the input's moves) */
        else if ((owned[i] = true), !(act[i] = malloc(nd->numel * CALIB_BATCH * sizeof(float))))
            s = KILN_ERR_NOMEM;
    }
    if (!act || !owned || !work || s != KILN_OK) {
        s = kiln_error(KILN_ERR_NOMEM, "out of memory for calibration");
        goto done;
    }
    for (int off = 0; off < n_calib; off += CALIB_BATCH) {
        int b = n_calib - off < CALIB_BATCH ? n_calib - off : CALIB_BATCH;
        act[0] = (float *)calib + (size_t)off * g->nodes[0].numel;   /* (4-byte elements) */
        for (int i = 1; i < n; i++) {   /* as a session runs them (session.c run_node) */
            const kiln_node *nd = &g->nodes[i];
            if (kiln_op_is_view(nd->op))
                act[i] = act[nd->inputs[0]];
            if (!owned[i])
                continue;
            kiln_fwd_args a = {.batch = nd->batched ? b : 1, .out = act[i], .work = work, .threads = omp_get_max_threads()};
            for (int j = 0; j < nd->n_inputs; j++) {
                a.in[j] = act[nd->inputs[j]];
                a.in_batch[j] = g->nodes[nd->inputs[j]].batched ? b : 1;
            }
            kiln_node_forward(g, i, &a);
        }
        for (int i = 0; i < n; i++)
            f(&st[i], act[i], g->nodes[i].numel * (size_t)(g->nodes[i].batched ? b : 1));
    }
done:
    for (int i = 1; act && owned && i < n; i++)
        if (owned[i])
            free(act[i]);
    free(owned);
    free(act);
    free(work);
    return s;
}

/* The value below which a fraction p of the histogrammed values lie. */
static double hist_quantile(const node_stats *st, double p)
{
    double total = 0, acc = 0;
    for (int b = 0; b < BINS; b++)
        total += st->hist[b];
    for (int b = 0; b < BINS; b++) {
        acc += st->hist[b];
        if (acc >= p * total)
            return st->min + (st->max - st->min) * (b + 1) / (BINS - 1);
    }
    return st->max;
}

static kiln_qparams range_params(double lo, double hi)
{
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    kiln_qparams qp = {.scale = (float)((hi - lo) / 255.0), .zero = 0};
    if (!(qp.scale > 0))
        qp.scale = 1.0f;
    long z = lround(-lo / qp.scale);
    qp.zero = (int)(z < 0 ? 0 : (z > 255 ? 255 : z));
    return qp;
}

/* Quantises node i's fp32 weights per output channel into qw's (allocated) w, w_scale, bias. */
static void quantize_values(const kiln_graph_t *g, int i, kiln_qweights *qw)
{
    const kiln_node *nd = &g->nodes[i];
    const float *w = kiln_node_tensor(g, nd, 0);
    const int k = qw->k, m = qw->m;   /* locals: stores through int8_t* could alias qw */
    const kiln_qkernel kind = kiln_qgemm_kernel();
    #pragma omp parallel for if ((size_t)m * k > 65536)
    for (int j = 0; j < m; j++) {
        qw->w_scale[j] = kiln_qgemm_quantize_row(kind, w + (size_t)j * k, k, qw->w + (size_t)j * k);
        qw->bias[j] = nd->a.no_bias ? 0.0f : kiln_node_tensor(g, nd, 1)[j];
    }
}

/* Quantises node i's weights per output channel and prepares them for the kernel. */
static kiln_status quantize_weights(const kiln_graph_t *g, int i, kiln_qmodel *q)
{
    const kiln_node *nd = &g->nodes[i];
    kiln_qweights *qw = &q->qw[i];
    qw->m = kiln_qweights_outputs(nd);
    qw->k = (int)(nd->params[0].numel / (size_t)qw->m);
    qw->w = malloc(nd->params[0].numel);
    qw->w_scale = malloc((size_t)qw->m * sizeof(float));
    qw->bias = calloc((size_t)qw->m, sizeof(float));
    if (!qw->w || !qw->w_scale || !qw->bias)
        return kiln_error(KILN_ERR_NOMEM, "out of memory quantising %s", nd->name);
    quantize_values(g, i, qw);
    return kiln_qweights_prepare(g, q, i);
}

kiln_model_t *kiln_model_quantize_with(const kiln_model_t *m, const kiln_qparams *qp, kiln_calibration method)
{
    if (m->q) {
        kiln_error(KILN_ERR_ARG, "the model is already quantised");
        return NULL;
    }
    kiln_model_t *qm = kiln_model_create_bare(m->g, false);
    if (!qm)
        return NULL;
    qm->stats = m->stats;
    kiln_qmodel *q = qm->q = calloc(1, sizeof *q);
    if (!q || kiln_qmodel_layout(qm->g, q) != KILN_OK)
        goto fail;
    q->kernel = kiln_qgemm_kernel();
    q->method = method;
    for (int i = 0; i < qm->g->n; i++)
        q->qp[i] = qp[i];
    kiln_qmodel_tie_views(qm->g, q);
    for (int i = 0; i < qm->g->n; i++)
        if (q->int8[i] && qm->g->nodes[i].op != KILN_OP_MAXPOOL2D && quantize_weights(qm->g, i, q) != KILN_OK)
            goto fail;
    return qm;
fail:
    kiln_model_free(qm);
    return NULL;
}

/* A quantised copy of fp32 model m with the given per-node ranges. */
static kiln_model_t *build(const kiln_model_t *m, const node_stats *st, kiln_calibration method)
{
    kiln_qparams *qp = malloc((size_t)m->g->n * sizeof *qp);
    if (!qp) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < m->g->n; i++) {
        double lo = st[i].min, hi = st[i].max;
        if (method == KILN_CALIBRATE_PERCENTILE) {
            lo = st[i].min < 0 ? hist_quantile(&st[i], 0.0001) : 0;
            hi = hist_quantile(&st[i], 0.9999);
        }
        qp[i] = range_params(lo, hi);
    }
    kiln_model_t *qm = kiln_model_quantize_with(m, qp, method);
    free(qp);
    return qm;
}

const kiln_qparams *kiln_model_qparams(const kiln_model_t *m)
{
    return m->q ? m->q->qp : NULL;
}

/* Checks that int8 model qm and fp32 model m have the same structure (qm quantised from m). */
static kiln_status same_structure(const kiln_model_t *qm, const kiln_model_t *m, const char *who)
{
    const kiln_graph_t *src = m->g, *g = qm->g;
    if (!qm->q || m->q)
        return kiln_error(KILN_ERR_ARG, "%s: needs an int8 model and an fp32 one", who);
    if (g->n != src->n || g->n_params != src->n_params || g->n_buffers != src->n_buffers)
        return kiln_error(KILN_ERR_ARG, "%s: the models' structures differ", who);
    for (int i = 0; i < g->n; i++) {
        const kiln_node *a = &g->nodes[i], *b = &src->nodes[i];
        bool same = a->op == b->op && a->numel == b->numel && a->n_params == b->n_params;
        for (int u = 0; same && u < a->n_params; u++)
            same = a->params[u].numel == b->params[u].numel;
        if (!same)
            return kiln_error(KILN_ERR_ARG, "%s: the models differ at node %d", who, i);
    }
    return KILN_OK;
}

/* Quantises int8 node i of qm from src's node i and prepares it for the kernel; the reordering
 * scratch is allocated on the first call and kept. */
static kiln_status requantize_node(kiln_model_t *qm, const kiln_graph_t *src, int i)
{
    kiln_qmodel *q = qm->q;
    if (!q->repack) {
        size_t most = 1;
        for (int j = 0; j < qm->g->n; j++)
            if (q->qw[j].m && (size_t)q->qw[j].m * (size_t)q->qw[j].k > most)
                most = (size_t)q->qw[j].m * (size_t)q->qw[j].k;
        if (!(q->repack = malloc(most)))
            return kiln_error(KILN_ERR_NOMEM, "out of memory requantising");
    }
    quantize_values(src, i, &q->qw[i]);
    kiln_qweights_derive(qm->g, q, i, q->repack);
    return KILN_OK;
}

kiln_status kiln_model_requantize(kiln_model_t *qm, const kiln_model_t *m)
{
    kiln_status st = same_structure(qm, m, "kiln_model_requantize");
    if (st != KILN_OK)
        return st;
    const kiln_graph_t *src = m->g;
    kiln_graph_t *g = qm->g;
    /* int8 nodes quantise straight from m's tensors (their fp32 copies in qm are not read:
     * int8 execution and saving use qw); the other nodes' tensors are copied */
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (qm->q->qw[i].m) {
            if ((st = requantize_node(qm, src, i)) != KILN_OK)
                return st;
        } else {
            for (int u = 0; u < nd->n_params; u++)
                memcpy(kiln_node_tensor(g, nd, u), kiln_node_tensor(src, &src->nodes[i], u),
                       nd->params[u].numel * sizeof(float));
        }
    }
    if (g->n_buffers)
        memcpy(g->buffers, src->buffers, g->n_buffers * sizeof(float));
    return KILN_OK;
}

kiln_status kiln_model_requantize_graph(kiln_model_t *qm, const kiln_model_t *m, const kiln_graph_t *g)
{
    kiln_status st = same_structure(qm, m, "kiln_model_requantize_graph");
    if (st == KILN_OK)
        st = kiln_model_check_source(m, g, "kiln_model_requantize_graph");
    if (st != KILN_OK)
        return st;
    kiln_graph_optimize_weights(qm->g, g, m->origin);   /* qm's graph has m's structure */
    for (int i = 0; i < qm->g->n; i++)
        if (qm->q->qw[i].m && (st = requantize_node(qm, qm->g, i)) != KILN_OK)
            return st;
    return KILN_OK;
}

/* Top-1 agreement (and output error) of a model with reference outputs on the calibration set. */
static double agreement(const kiln_model_t *m, const void *calib, int n_calib, const float *ref, double *mse)
{
    const kiln_graph_t *g = m->g;
    const kiln_node *out = &g->nodes[g->n - 1];
    int size = (int)out->numel, classes = out->rank ? out->dims[out->rank - 1] : 1;   /* rows of the last axis */
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = CALIB_BATCH,
                                                                         .threads = omp_get_max_threads()});
    float *y = malloc((size_t)CALIB_BATCH * size * sizeof(float));
    long same = 0;
    double se = 0;
    for (int off = 0; s && y && off < n_calib; off += CALIB_BATCH) {
        int b = n_calib - off < CALIB_BATCH ? n_calib - off : CALIB_BATCH;
        kiln_session_run(s, (const float *)calib + (size_t)off * g->nodes[0].numel, b, y);
        for (int e = 0; e < b * (size / classes); e++) {
            const float *r = ref + (size_t)off * size + (size_t)e * classes, *z = y + (size_t)e * classes;
            int ar = 0, az = 0;
            for (int k = 0; k < classes; k++) {
                ar = r[k] > r[ar] ? k : ar;
                az = z[k] > z[az] ? k : az;
                se += (double)(r[k] - z[k]) * (r[k] - z[k]);
            }
            same += ar == az;
        }
    }
    kiln_session_free(s);
    free(y);
    *mse = se / ((double)n_calib * size);
    return (double)same / ((double)n_calib * (size / classes));
}

kiln_model_t *kiln_model_quantize(const kiln_model_t *m, const void *calib, int n_calib, kiln_calibration method)
{
    if (m->q) {
        kiln_error(KILN_ERR_ARG, "the model is already quantised");
        return NULL;
    }
    if (n_calib < 1) {
        kiln_error(KILN_ERR_ARG, "quantisation needs calibration inputs, given %d", n_calib);
        return NULL;
    }
    const kiln_graph_t *g = m->g;
    int n = g->n, classes = (int)g->nodes[n - 1].numel;   /* (the output's values per example) */
    node_stats *st = calloc((size_t)n, sizeof *st);
    float *ref = malloc((size_t)n_calib * classes * sizeof(float));
    kiln_model_t *best = NULL;
    if (!st || !ref)
        goto nomem;
    bool hist = method != KILN_CALIBRATE_MINMAX;   /* the percentile method needs the histogram */
    for (int i = 0; i < n; i++) {
        st[i].min = INFINITY;
        st[i].max = -INFINITY;
        if (hist && !(st[i].hist = calloc(BINS, sizeof(double))))
            goto nomem;
    }
    if (calibrate_pass(g, calib, n_calib, st, visit_minmax) != KILN_OK ||
        (hist && calibrate_pass(g, calib, n_calib, st, visit_hist) != KILN_OK))
        goto done;
    if (method != KILN_CALIBRATE_AUTO) {   /* one candidate: nothing to compare */
        best = build(m, st, method);
        goto done;
    }
    /* fp32 reference outputs for choosing between calibrations */
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = CALIB_BATCH,
                                                                         .threads = omp_get_max_threads()});
    for (int off = 0; s && off < n_calib; off += CALIB_BATCH) {
        int b = n_calib - off < CALIB_BATCH ? n_calib - off : CALIB_BATCH;
        kiln_session_run(s, (const float *)calib + (size_t)off * g->nodes[0].numel, b, ref + (size_t)off * classes);
    }
    kiln_session_free(s);
    double best_agree = -1, best_mse = INFINITY;
    for (int k = KILN_CALIBRATE_MINMAX; k <= KILN_CALIBRATE_PERCENTILE; k++) {
        kiln_model_t *qm = build(m, st, (kiln_calibration)k);
        if (!qm)
            goto done;
        double mse, agree = agreement(qm, calib, n_calib, ref, &mse);
        if (agree > best_agree || (agree == best_agree && mse < best_mse)) {
            kiln_model_free(best);
            best = qm;
            best_agree = agree;
            best_mse = mse;
        } else {
            kiln_model_free(qm);
        }
    }
    goto done;
nomem:
    kiln_error(KILN_ERR_NOMEM, "out of memory for calibration statistics");
done:
    for (int i = 0; st && i < n; i++)
        free(st[i].hist);
    free(st);
    free(ref);
    return best;
}

const char *kiln_model_calibration(const kiln_model_t *m)
{
    if (!m->q)
        return NULL;
    return m->q->method == KILN_CALIBRATE_PERCENTILE ? "percentile" : "minmax";
}
