/* Training checkpoints: the model file plus optimizer state, generator, data position, counters
 * and (with Selective Backprop) the loss history, per-example losses and the queue. Everything a
 * resumed run needs to retrace the uninterrupted one bit for bit. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "io/graph_file.h"
#include "train/trainer.h"

enum { MAX_EXTRA = 10 };

static void extra_tensor(kiln_st_tensor *t, const char *name, kiln_dtype dt, int64_t n, const void *data)
{
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = 1;
    t->dims[0] = n;
    t->data = data;
    t->nbytes = (size_t)n * kiln_dtype_size(dt);
}

kiln_status kiln_checkpoint_save(const kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape, const kiln_run_state *s,
                                 const kiln_sb_state *sb, const kiln_train_config *cfg)
{
    float *bufs[2], *hist = NULL;
    int64_t *step;
    int nb = kiln_optim_state(opt, bufs, &step), ne = 0;
    kiln_st_tensor extra[MAX_EXTRA];
    for (int i = 0; i < nb; i++) {
        char name[32];
        snprintf(name, sizeof name, "optimizer.state%d", i);
        extra_tensor(&extra[ne++], name, KILN_DT_F32, (int64_t)g->n_params, bufs[i]);
    }
    char sbm[128] = "off", qs[64] = "none";
    if (sb) {
        int hn = kiln_sb_recorded(sb->sel, NULL);
        if (!(hist = malloc(((size_t)hn + 1) * sizeof(float))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory writing a checkpoint");
        kiln_sb_recorded(sb->sel, hist);
        extra_tensor(&extra[ne++], "selective.history", KILN_DT_F32, hn, hist);
        extra_tensor(&extra[ne++], "selective.loss", KILN_DT_F32, sb->n, sb->loss);
        extra_tensor(&extra[ne++], "selective.loss_epoch", KILN_DT_I32, sb->n, sb->loss_epoch);
        extra_tensor(&extra[ne++], "selective.queue_images", KILN_DT_F32, (int64_t)sb->qn * (int64_t)sb->numel, sb->qx);
        extra_tensor(&extra[ne++], "selective.queue_labels", KILN_DT_I32, sb->qn, sb->qy);
        extra_tensor(&extra[ne++], "selective.queue_indices", KILN_DT_I32, sb->qn, sb->qidx);
        extra_tensor(&extra[ne++], "selective.scorer_scale", KILN_DT_F32, sb->q_nodes, sb->q_scale);
        extra_tensor(&extra[ne++], "selective.scorer_zero", KILN_DT_I32, sb->q_nodes, sb->q_zero);
        snprintf(sbm, sizeof sbm, "%a %d %d %d %a", cfg->selective.beta, cfg->selective.history, cfg->selective.stale,
                 (int)cfg->selective.scorer, cfg->selective.min_rank_correlation);
        snprintf(qs, sizeof qs, "%d %d %a", sb->q_epoch, (int)sb->q_int8, sb->q_rank);
    }
    const uint64_t *r = kiln_tape_rng_state(tape);
    const kiln_train_counters *c = &s->c;
    char gs[32], os[32], rng[80], ls[48], cs[64], el[48], seed[32], batch[16], cn[256];
    snprintf(gs, sizeof gs, "%" PRId64, s->global_step);
    snprintf(os, sizeof os, "%" PRId64, *step);
    snprintf(rng, sizeof rng, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r[0], r[1], r[2], r[3]);
    snprintf(ls, sizeof ls, "%a", s->loss_sum);
    snprintf(cs, sizeof cs, "%" PRId64 " %" PRId64, s->correct, s->seen);
    snprintf(el, sizeof el, "%a", s->elapsed);
    snprintf(seed, sizeof seed, "%" PRIu64, cfg->seed);
    snprintf(batch, sizeof batch, "%d", cfg->batch);
    snprintf(cn, sizeof cn, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %a %a %a %a",
             c->examples, c->scored, c->scored_int8, c->selected, c->backpropagated, c->updates, c->score_s,
             c->forward_s, c->backward_s, c->update_s);
    const char *meta[] = {"kiln.checkpoint.global_step", gs, "kiln.checkpoint.optimizer_step", os,
                          "kiln.checkpoint.rng", rng, "kiln.checkpoint.loss_sum", ls,
                          "kiln.checkpoint.correct_seen", cs, "kiln.checkpoint.elapsed", el,
                          "kiln.checkpoint.seed", seed, "kiln.checkpoint.batch", batch,
                          "kiln.checkpoint.counters", cn, "kiln.checkpoint.selective", sbm,
                          "kiln.checkpoint.scorer", qs, NULL};
    kiln_status st = kiln_graph_save_with(g, cfg->checkpoint_path, meta, extra, ne);
    free(hist);
    return st;
}

/* Reads a required metadata field of a checkpoint with sscanf format fmt into out. */
static kiln_status meta_field(const kiln_st_file *f, const char *key, const char *what, int want, const char *fmt, ...)
{
    const char *v = kiln_st_meta(f, key);
    if (!v)
        return kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"%s\": expected %s, found nothing",
                          kiln_st_path(f), key, what);
    va_list ap;
    va_start(ap, fmt);
    int got = vsscanf(v, fmt, ap);
    va_end(ap);
    if (got != want)
        return kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"%s\": expected %s, found \"%.60s\"",
                          kiln_st_path(f), key, what, v);
    return KILN_OK;
}

/* The 1-d tensor name of dtype dt and n elements (n < 0: any count up to -n), or NULL after an
 * error naming file, tensor, expected and found. */
static const kiln_st_tensor *find_1d(const kiln_st_file *f, const char *name, kiln_dtype dt, int64_t n, const char *what)
{
    const kiln_st_tensor *t = kiln_st_find(f, name);
    bool ok = t && t->dtype == dt && t->ndim == 1 && (n >= 0 ? t->dims[0] == n : t->dims[0] <= -n);
    if (!ok)
        kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected %s [%s%" PRId64 "] (%s), found %s", kiln_st_path(f),
                   name, kiln_dtype_name(dt), n >= 0 ? "" : "at most ", n >= 0 ? n : -n, what,
                   !t ? "no such tensor" : t->ndim != 1 ? "another rank" : t->dtype != dt ? kiln_dtype_name(t->dtype)
                                                                                          : "another length");
    return ok ? t : NULL;
}

static kiln_status load_selective(const kiln_st_file *f, kiln_sb_state *sb, const kiln_train_config *cfg)
{
    const char *path = kiln_st_path(f);
    const kiln_sb_config *sc = &cfg->selective;
    float beta, min_rank;
    int history, stale, scorer;
    char want[128];
    snprintf(want, sizeof want, "%a %d %d %d %a", sc->beta, sc->history, sc->stale, (int)sc->scorer,
             sc->min_rank_correlation);
    const char *v = kiln_st_meta(f, "kiln.checkpoint.selective");
    if (!v || sscanf(v, "%a %d %d %d %a", &beta, &history, &stale, &scorer, &min_rank) != 5 || beta != sc->beta ||
        history != sc->history || stale != sc->stale || scorer != (int)sc->scorer || min_rank != sc->min_rank_correlation)
        return kiln_error(KILN_ERR_ARG, "%s: __metadata__ \"kiln.checkpoint.selective\": expected \"%s\" (this run's "
                          "--sb-beta, --sb-history, --sb-stale, --sb-scorer, --sb-min-rank), found \"%.60s\"", path, want,
                          v ? v : "nothing");
    int q_epoch, q_int8;
    float q_rank;
    const char *qv = kiln_st_meta(f, "kiln.checkpoint.scorer");
    if (!qv || sscanf(qv, "%d %d %a", &q_epoch, &q_int8, &q_rank) != 3 || q_epoch < -1 || (q_int8 != 0 && q_int8 != 1))
        return kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"kiln.checkpoint.scorer\": expected \"EPOCH INT8 RANK\" "
                          "(epoch >= -1, int8 0 or 1), found \"%.60s\"", path, qv ? qv : "nothing");
    const kiln_st_tensor *qsc = find_1d(f, "selective.scorer_scale", KILN_DT_F32, sb->q_nodes, "scorer quantisation");
    const kiln_st_tensor *qz = find_1d(f, "selective.scorer_zero", KILN_DT_I32, sb->q_nodes, "scorer zero points");
    if (!qsc || !qz)
        return KILN_ERR_FORMAT;
    const float *scv = qsc->data;
    const int32_t *zv = qz->data;
    for (int i = 0; q_epoch >= 0 && i < sb->q_nodes; i++)
        if (!(scv[i] > 0) || !isfinite(scv[i]) || zv[i] < 0 || zv[i] > 255)
            return kiln_error(KILN_ERR_FORMAT, "%s: scorer quantisation of node %d: expected a finite scale > 0 and "
                              "a zero point in 0..255, found %g and %d", path, i, scv[i], zv[i]);
    const kiln_st_tensor *h = find_1d(f, "selective.history", KILN_DT_F32, -(int64_t)history, "the loss history");
    const kiln_st_tensor *l = find_1d(f, "selective.loss", KILN_DT_F32, sb->n, "each example's loss");
    const kiln_st_tensor *le = find_1d(f, "selective.loss_epoch", KILN_DT_I32, sb->n, "each loss's epoch");
    const kiln_st_tensor *qy = find_1d(f, "selective.queue_labels", KILN_DT_I32, -(int64_t)sb->batch, "queued labels");
    if (!h || !l || !le || !qy)
        return KILN_ERR_FORMAT;
    int qn = (int)qy->dims[0];
    const kiln_st_tensor *qi = find_1d(f, "selective.queue_indices", KILN_DT_I32, qn, "queued indices");
    const kiln_st_tensor *qx = find_1d(f, "selective.queue_images", KILN_DT_F32, (int64_t)qn * (int64_t)sb->numel,
                                       "queued images");
    if (!qi || !qx)
        return KILN_ERR_FORMAT;
    const int32_t *yi = qy->data, *ii = qi->data;
    for (int i = 0; i < qn; i++)
        if (ii[i] < 0 || ii[i] >= sb->n || yi[i] < 0)
            return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"selective.queue_indices\"[%d]: expected an example "
                              "index in 0..%d with a label >= 0, found %d (label %d)", path, i, sb->n - 1, ii[i], yi[i]);
    kiln_sb_selector_t *sel = kiln_sb_selector_create(sc->history, sc->beta);
    if (!sel)
        return KILN_ERR_NOMEM;
    kiln_sb_selector_free(sb->sel);
    sb->sel = sel;
    const float *hv = h->data;
    for (int64_t i = 0; i < h->dims[0]; i++)
        kiln_sb_record(sel, hv[i]);
    memcpy(sb->loss, l->data, l->nbytes);
    memcpy(sb->loss_epoch, le->data, le->nbytes);
    memcpy(sb->qx, qx->data, qx->nbytes);
    for (int i = 0; i < qn; i++) {
        sb->qy[i] = yi[i];
        sb->qidx[i] = ii[i];
    }
    sb->qn = qn;
    sb->q_epoch = q_epoch;
    sb->q_int8 = q_int8;
    sb->q_rank = q_rank;
    memcpy(sb->q_scale, qsc->data, qsc->nbytes);
    memcpy(sb->q_zero, qz->data, qz->nbytes);
    return KILN_OK;
}

kiln_status kiln_checkpoint_load(kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape, kiln_run_state *s,
                                 kiln_sb_state *sb, const kiln_train_config *cfg)
{
    const char *path = cfg->resume_path;
    kiln_st_file *f = kiln_st_open(path);
    if (!f)
        return KILN_ERR_IO;
    kiln_status st = KILN_ERR_FORMAT;
    kiln_graph_t *cg = kiln_graph_from_file(f);
    if (!cg)
        goto done;
    char *a = kiln_graph_to_spec(g), *b = kiln_graph_to_spec(cg);
    bool same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    if (!same || cg->n_params != g->n_params || cg->n_buffers != g->n_buffers) {
        kiln_error(KILN_ERR_FORMAT, "%s: the checkpoint's model spec differs from the model being trained", path);
        goto done;
    }
    float *bufs[2];
    int64_t *ostep;
    int nb = kiln_optim_state(opt, bufs, &ostep);
    const kiln_st_tensor *ot[2];
    for (int i = 0; i < nb; i++) {
        char name[32];
        snprintf(name, sizeof name, "optimizer.state%d", i);
        if (!(ot[i] = find_1d(f, name, KILN_DT_F32, (int64_t)g->n_params, "the optimizer's state; another optimizer?")))
            goto done;
    }
    uint64_t *r = kiln_tape_rng_state(tape), seed, rv[4];
    int batch;
    kiln_run_state ns = {0};
    int64_t ostep_v;
    kiln_train_counters *c = &ns.c;
    if (meta_field(f, "kiln.checkpoint.global_step", "a step count", 1, "%" SCNd64, &ns.global_step) ||
        meta_field(f, "kiln.checkpoint.optimizer_step", "a step count", 1, "%" SCNd64, &ostep_v) ||
        meta_field(f, "kiln.checkpoint.rng", "64 hex digits", 4, "%16" SCNx64 "%16" SCNx64 "%16" SCNx64 "%16" SCNx64,
                   &rv[0], &rv[1], &rv[2], &rv[3]) ||
        meta_field(f, "kiln.checkpoint.loss_sum", "a hex float", 1, "%la", &ns.loss_sum) ||
        meta_field(f, "kiln.checkpoint.correct_seen", "two counts", 2, "%" SCNd64 " %" SCNd64, &ns.correct, &ns.seen) ||
        meta_field(f, "kiln.checkpoint.elapsed", "a hex float", 1, "%la", &ns.elapsed) ||
        meta_field(f, "kiln.checkpoint.seed", "the seed", 1, "%" SCNu64, &seed) ||
        meta_field(f, "kiln.checkpoint.batch", "the batch size", 1, "%d", &batch) ||
        meta_field(f, "kiln.checkpoint.counters", "6 counts and 4 hex floats", 10,
                   "%" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %la %la %la %la",
                   &c->examples, &c->scored, &c->scored_int8, &c->selected, &c->backpropagated, &c->updates,
                   &c->score_s, &c->forward_s, &c->backward_s, &c->update_s))
        goto done;
    if (seed != cfg->seed || batch != cfg->batch) {
        kiln_error(KILN_ERR_ARG, "%s: checkpoint was made with --seed %" PRIu64 " --batch %d; this run has "
                   "--seed %" PRIu64 " --batch %d", path, seed, batch, cfg->seed, cfg->batch);
        goto done;
    }
    if (ns.global_step < 0 || ns.seen < 0 || ns.correct < 0 || c->examples < 0 || c->updates < 0) {
        kiln_error(KILN_ERR_FORMAT, "%s: negative step or counts in the checkpoint", path);
        goto done;
    }
    const char *sbv = kiln_st_meta(f, "kiln.checkpoint.selective");
    bool had_sb = sbv && strcmp(sbv, "off") != 0;
    if (had_sb != (sb != NULL)) {
        kiln_error(KILN_ERR_ARG, "%s: checkpoint was made %s --selective-backprop; this run is %s it", path,
                   had_sb ? "with" : "without", sb ? "with" : "without");
        goto done;
    }
    if (sb && (st = load_selective(f, sb, cfg)) != KILN_OK)
        goto done;
    /* every field checked: now change the run */
    if (g->n_params)
        memcpy(g->params, cg->params, g->n_params * sizeof(float));
    if (g->n_buffers)
        memcpy(g->buffers, cg->buffers, g->n_buffers * sizeof(float));
    for (int i = 0; i < nb; i++)
        memcpy(bufs[i], ot[i]->data, ot[i]->nbytes);
    *ostep = ostep_v;
    memcpy(r, rv, sizeof rv);
    *s = ns;
    st = KILN_OK;
done:
    kiln_graph_free(cg);
    kiln_st_close(f);
    return st;
}
