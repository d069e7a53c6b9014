/* The training loop. Shuffles and augmentation derive from (seed, epoch) and (seed, step), and
 * checkpoints hold the rest of the run's state, so a resumed run retraces the uninterrupted one
 * bit for bit. With Selective Backprop each incoming batch after the first epoch is scored by an
 * inference session; selected examples wait in a queue until a full batch is trained. */
#include <inttypes.h>
#include <math.h>
#include "core/omp_compat.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/error.h"
#include "core/graph.h"
#include "infer/runtime.h"
#include "train/trainer.h"

enum { CALIB = 512 };   /* training images the int8 scorer calibrates on and is checked against */

typedef struct {
    kiln_graph_t *g;
    const kiln_dataset *train;
    const kiln_train_config *cfg;
    kiln_tape_t *tape;
    kiln_optim_t *opt;
    int classes, B;                /* classes: the output's last axis */
    size_t numel, tnumel;          /* input values and targets per example (4 bytes each) */
    int out;                       /* the output node */
    kiln_loss_spec ls;             /* the loss on it */
    int64_t spe, total;
    float *x, *tmp, *dlogits, *each, *xs, *logits;
    int *y, *perm, *ys;
    kiln_run_state s;
    bool selective;
    kiln_sb_state sb;
    kiln_model_t *scorer;          /* inference copy of g, refreshed before it runs (fp32 scoring,
                                    * calibration) when the weights changed */
    kiln_session_t *session;
    int64_t scorer_version;        /* s.c.updates when the scorer was last refreshed; -1 never */
    kiln_model_t *qscorer;         /* int8 copy of g (through scorer's optimisation), calibrated once
                                    * per scoring epoch, requantised from g after every update */
    kiln_session_t *qsession;
    int64_t qscorer_version;
    float *calib_x, *calib_loss, *calib_qloss;   /* the calibration images and their losses */
    int *calib_y, n_calib;
    double win_loss;               /* sums since the last metrics line */
    int64_t win_correct, win_seen;
    float lr;
} trainer;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

kiln_status kiln_sb_state_init(kiln_sb_state *sb, const kiln_sb_config *cfg, int n, size_t numel, int batch,
                               int q_nodes)
{
    memset(sb, 0, sizeof *sb);
    sb->n = n;
    sb->numel = numel;
    sb->batch = batch;
    sb->q_epoch = -1;
    sb->q_rank = NAN;
    sb->q_nodes = q_nodes;
    sb->sel = kiln_sb_selector_create(cfg->history, cfg->beta);
    if (!sb->sel)
        return KILN_ERR_ARG;   /* the selector named the bad setting */
    sb->loss = malloc((size_t)n * sizeof(float));
    sb->loss_epoch = malloc((size_t)n * sizeof(int32_t));
    sb->qx = malloc((size_t)batch * numel * sizeof(float));
    sb->qy = malloc((size_t)batch * sizeof(int));
    sb->qidx = malloc((size_t)batch * sizeof(int));
    sb->q_scale = malloc(((size_t)q_nodes + 1) * sizeof(float));
    sb->q_zero = malloc(((size_t)q_nodes + 1) * sizeof(int32_t));
    if (!sb->loss || !sb->loss_epoch || !sb->qx || !sb->qy || !sb->qidx || !sb->q_scale || !sb->q_zero) {
        kiln_sb_state_free(sb);
        return kiln_error(KILN_ERR_NOMEM, "out of memory for selective backprop state");
    }
    for (int i = 0; i < n; i++) {
        sb->loss[i] = 0;
        sb->loss_epoch[i] = -1;
    }
    return KILN_OK;
}

void kiln_sb_state_free(kiln_sb_state *sb)
{
    kiln_sb_selector_free(sb->sel);
    free(sb->loss);
    free(sb->loss_epoch);
    free(sb->qx);
    free(sb->qy);
    free(sb->qidx);
    free(sb->q_scale);
    free(sb->q_zero);
    memset(sb, 0, sizeof *sb);
}

static kiln_status numeric_stop(const trainer *t, const char *what, float v)
{
    const char *ck = t->cfg->checkpoint_path;
    return kiln_error(KILN_ERR_NUMERIC, "%s became %s at global step %" PRId64 " (epoch %" PRId64 "); stopped%s%s",
                      what, isnan(v) ? "NaN" : "infinite", t->s.global_step + 1, t->s.global_step / t->spe + 1,
                      ck ? ", the last good checkpoint is " : "", ck ? ck : "");
}

/* Forward, backward and update on b examples (dataset indices idx); the first epoch of a
 * selective run also records their losses. */
static kiln_status train_batch(trainer *t, const float *x, const int *y, const int *idx, int b, int epoch)
{
    kiln_train_counters *c = &t->s.c;
    double t0 = now_s();
    const void *in[1] = {x};
    kiln_status st = kiln_tape_run(t->tape, in, b, true);
    if (st != KILN_OK)
        return st;
    const float *logits = kiln_tape_output(t->tape, 0);
    kiln_loss_stats ls;
    if (kiln_loss_eval(&t->ls, t->g, t->out, b, logits, y, NULL, t->dlogits, &ls) != KILN_OK && isfinite(ls.loss))
        return KILN_ERR_ARG;
    float loss = (float)ls.loss;
    int64_t correct = ls.correct;
    if (t->selective && epoch == 0) {
        kiln_loss_softmax_ce_each(logits, y, b, t->classes, t->each);
        for (int i = 0; i < b; i++) {
            kiln_sb_record(t->sb.sel, t->each[i]);
            t->sb.loss[idx[i]] = t->each[i];
            t->sb.loss_epoch[idx[i]] = 0;
        }
    }
    if (!isfinite(loss))
        return numeric_stop(t, "the loss", loss);
    double t1 = now_s();
    kiln_tape_backward(t->tape, t->dlogits);
    double t2 = now_s();
    t->lr = kiln_optim_lr(t->opt, t->s.global_step, t->total);
    float norm = kiln_optim_step(t->opt, t->g->params, kiln_tape_param_grads(t->tape), t->lr);
    if (!isfinite(norm))
        return numeric_stop(t, "the gradient norm", norm);
    c->forward_s += t1 - t0;
    c->backward_s += t2 - t1;
    c->update_s += now_s() - t2;
    c->backpropagated += b;
    c->updates++;
    t->s.loss_sum += (double)loss * b;
    t->s.correct += correct;
    t->s.seen += b;
    t->win_loss += (double)loss * b;
    t->win_correct += correct;
    t->win_seen += b;
    if (t->cfg->on_batch)
        t->cfg->on_batch(idx, b, epoch, t->cfg->user);
    return KILN_OK;
}

/* Brings the fp32 scorer to the current weights. */
static kiln_status refresh_scorer(trainer *t)
{
    if (t->scorer_version == t->s.c.updates)
        return KILN_OK;
    kiln_status st = kiln_model_update(t->scorer, t->g);
    if (st == KILN_OK)
        t->scorer_version = t->s.c.updates;
    return st;
}

/* Makes q (int8, of the current weights; may be NULL) the int8 scorer, with its session. */
static kiln_status adopt_qscorer(trainer *t, kiln_model_t *q)
{
    kiln_session_free(t->qsession);
    kiln_model_free(t->qscorer);
    t->qsession = NULL;
    t->qscorer = q;
    t->qscorer_version = t->s.c.updates;
    if (q)
        t->qsession = kiln_session_create(q, &(kiln_session_options){.max_batch = t->B, .threads = omp_get_max_threads()});
    return t->qsession ? KILN_OK : KILN_ERR_NOMEM;
}

/* Builds the int8 scorer from the recorded quantisation parameters and the current weights. */
static kiln_status build_qscorer(trainer *t)
{
    kiln_sb_state *sb = &t->sb;
    kiln_qparams *qp = malloc((size_t)sb->q_nodes * sizeof *qp);
    if (!qp)
        return kiln_error(KILN_ERR_NOMEM, "out of memory for the int8 scorer");
    for (int i = 0; i < sb->q_nodes; i++)
        qp[i] = (kiln_qparams){sb->q_scale[i], sb->q_zero[i]};
    kiln_model_t *q = kiln_model_quantize_with(t->scorer, qp, KILN_CALIBRATE_MINMAX);
    free(qp);
    return adopt_qscorer(t, q);
}

/* Losses of the calibration images under model m. */
static kiln_status calib_losses(trainer *t, kiln_session_t *sess, float *loss)
{
    for (int off = 0; off < t->n_calib; off += t->B) {
        int b = t->n_calib - off < t->B ? t->n_calib - off : t->B;
        kiln_status st = kiln_session_run(sess, t->calib_x + (size_t)off * t->numel, b, t->logits);
        if (st != KILN_OK)
            return st;
        kiln_loss_softmax_ce_each(t->logits, t->calib_y + off, b, t->classes, loss + off);
    }
    return KILN_OK;
}

/* At the first scoring of an epoch: calibrates an int8 scorer on the calibration images and
 * decides whether it scores this epoch (it must rank them as fp32 does). */
static kiln_status calibrate_scorer(trainer *t, int epoch)
{
    kiln_sb_state *sb = &t->sb;
    kiln_sb_scorer mode = t->cfg->selective.scorer;
    sb->q_epoch = epoch;
    sb->q_int8 = false;
    sb->q_rank = NAN;
    kiln_model_t *q = kiln_model_quantize(t->scorer, t->calib_x, t->n_calib, KILN_CALIBRATE_MINMAX);
    if (!q)
        return mode == KILN_SB_SCORER_INT8 ? KILN_ERR_NOMEM : KILN_OK;   /* auto: stay in fp32 */
    const kiln_qparams *qp = kiln_model_qparams(q);
    for (int i = 0; i < sb->q_nodes; i++) {   /* recorded: a resumed run rebuilds the scorer from them */
        sb->q_scale[i] = qp[i].scale;
        sb->q_zero[i] = qp[i].zero;
    }
    kiln_status st = adopt_qscorer(t, q);
    if (st == KILN_OK)
        st = calib_losses(t, t->session, t->calib_loss);
    if (st == KILN_OK)
        st = calib_losses(t, t->qsession, t->calib_qloss);
    if (st != KILN_OK)
        return st;
    sb->q_rank = (float)kiln_rank_correlation(t->calib_loss, t->calib_qloss, t->n_calib);
    float need = t->cfg->selective.min_rank_correlation > 0 ? t->cfg->selective.min_rank_correlation : 0.95f;
    sb->q_int8 = mode == KILN_SB_SCORER_INT8 || sb->q_rank >= need;
    return KILN_OK;
}

/* Per-example losses of the b examples in x (labels y) from the inference copy of the model:
 * int8 when this epoch's calibration chose it. */
static kiln_status score(trainer *t, const float *x, const int *y, int b, float *loss, int epoch)
{
    kiln_status st = KILN_OK;
    if (t->cfg->selective.scorer != KILN_SB_SCORER_FP32 && t->sb.q_epoch != epoch &&
        ((st = refresh_scorer(t)) != KILN_OK || (st = calibrate_scorer(t, epoch)) != KILN_OK))
        return st;
    kiln_session_t *sess = t->session;
    if (t->sb.q_int8) {   /* the int8 copy follows the training graph; the fp32 scorer rests */
        if (!t->qscorer && ((st = refresh_scorer(t)) != KILN_OK || (st = build_qscorer(t)) != KILN_OK))
            return st;   /* (after a resume) */
        if (t->qscorer_version != t->s.c.updates) {
            if ((st = kiln_model_requantize_graph(t->qscorer, t->scorer, t->g)) != KILN_OK)
                return st;
            t->qscorer_version = t->s.c.updates;
        }
        sess = t->qsession;
        t->s.c.scored_int8 += b;
    } else if ((st = refresh_scorer(t)) != KILN_OK) {
        return st;
    }
    if ((st = kiln_session_run(sess, x, b, t->logits)) != KILN_OK)
        return st;
    kiln_loss_softmax_ce_each(t->logits, y, b, t->classes, loss);
    return KILN_OK;
}

/* Whether example i's stored loss is fresh enough to reuse in epoch (stale variant). */
static bool loss_reusable(const trainer *t, int i, int epoch)
{
    int stale = t->cfg->selective.stale, from = t->sb.loss_epoch[i];
    return stale > 0 && from >= 0 && epoch - from <= stale;
}

/* One incoming batch of a selective epoch: losses (scored or reused), selection, queueing, and
 * training whenever the queue fills. */
static kiln_status selective_step(trainer *t, const int *idx, int b, int epoch)
{
    kiln_sb_state *sb = &t->sb;
    kiln_train_counters *c = &t->s.c;
    int ns = 0;
    for (int i = 0; i < b; i++)
        if (!loss_reusable(t, idx[i], epoch)) {
            memcpy(t->xs + (size_t)ns * t->numel, t->x + (size_t)i * t->numel, t->numel * sizeof(float));
            t->ys[ns++] = t->y[i];
        }
    if (ns) {
        double t0 = now_s();
        kiln_status st = score(t, t->xs, t->ys, ns, t->each, epoch);
        if (st != KILN_OK)
            return st;
        for (int i = 0, k = 0; i < b; i++)
            if (!loss_reusable(t, idx[i], epoch)) {
                sb->loss[idx[i]] = t->each[k++];
                sb->loss_epoch[idx[i]] = epoch;
            }
        c->score_s += now_s() - t0;
        c->scored += ns;
    }
    kiln_rng r;
    kiln_rng_seed(&r, (t->cfg->seed * 0x2545f4914f6cdd1dULL) ^ (uint64_t)t->s.global_step ^ 0x5e1ec7ULL);
    for (int i = 0; i < b; i++) {
        float loss = sb->loss[idx[i]];
        double p = kiln_sb_probability(sb->sel, loss);
        kiln_sb_record(sb->sel, loss);
        if (!(kiln_rng_uniform(&r) < p))
            continue;
        memcpy(sb->qx + (size_t)sb->qn * t->numel, t->x + (size_t)i * t->numel, t->numel * sizeof(float));
        sb->qy[sb->qn] = t->y[i];
        sb->qidx[sb->qn++] = idx[i];
        c->selected++;
        if (sb->qn == t->B) {
            sb->qn = 0;
            kiln_status st = train_batch(t, sb->qx, sb->qy, sb->qidx, t->B, epoch);
            if (st != KILN_OK)
                return st;
        }
    }
    return KILN_OK;
}

/* One metrics line: loss and accuracy over the trained examples since the previous line
 * (window), the epoch means so far, counters, and at an epoch's end the test figures. */
static void write_metrics(FILE *m, const kiln_progress *p, double win_loss, double win_acc)
{
    if (!m)
        return;
    const kiln_train_counters *c = &p->counters;
    fprintf(m, "{\"epoch\":%d,\"step\":%" PRId64 ",\"global_step\":%" PRId64, p->epoch, p->step, p->global_step);
    const char *keys[] = {"loss", "accuracy", "epoch_loss", "epoch_accuracy"};
    double vals[] = {win_loss, win_acc, p->loss, p->accuracy};
    for (int i = 0; i < 4; i++)
        if (isfinite(vals[i]))
            fprintf(m, ",\"%s\":%.6f", keys[i], vals[i]);
        else
            fprintf(m, ",\"%s\":null", keys[i]);
    fprintf(m, ",\"lr\":%.6g,\"images_per_s\":%.1f,\"elapsed_s\":%.3f,\"examples\":%" PRId64 ",\"scored\":%" PRId64
            ",\"backpropagated\":%" PRId64 ",\"fraction_backpropagated\":%.4f,\"updates\":%" PRId64
            ",\"score_s\":%.3f,\"forward_s\":%.3f,\"backward_s\":%.3f,\"update_s\":%.3f",
            p->lr, p->images_per_s, p->elapsed_s, c->examples, c->scored, c->backpropagated,
            c->examples ? (double)c->backpropagated / (double)c->examples : 0.0, c->updates, c->score_s, c->forward_s,
            c->backward_s, c->update_s);
    if (p->scorer_int8 >= 0)
        fprintf(m, ",\"scorer\":\"%s\",\"scored_int8\":%" PRId64, p->scorer_int8 ? "int8" : "fp32", c->scored_int8);
    if (isfinite(p->scorer_rank_correlation))
        fprintf(m, ",\"rank_correlation\":%.4f", p->scorer_rank_correlation);
    if (p->epoch_end && !isnan(p->test_accuracy))
        fprintf(m, ",\"epoch_end\":true,\"test_loss\":%.6f,\"test_accuracy\":%.6f", p->test_loss, p->test_accuracy);
    else if (p->epoch_end)
        fprintf(m, ",\"epoch_end\":true");
    fprintf(m, "}\n");
    fflush(m);
}

static kiln_status trainer_init(trainer *t, kiln_graph_t *g, const kiln_dataset *train, const kiln_train_config *cfg)
{
    memset(t, 0, sizeof *t);
    t->g = g;
    t->train = train;
    t->cfg = cfg;
    t->B = cfg->batch;
    int in;
    kiln_graph_inputs(g, &in);
    kiln_graph_outputs(g, &t->out);
    const kiln_node *o = &g->nodes[t->out];
    t->numel = g->nodes[in].numel;
    t->classes = o->rank ? o->dims[o->rank - 1] : 1;
    bool class_targets = train->target.numel == 0 || train->target.gathered == KILN_DT_I32;
    t->tnumel = class_targets ? o->numel / (size_t)t->classes : o->numel;
    t->ls = (kiln_loss_spec){.kind = class_targets ? KILN_LOSS_CE : cfg->loss == KILN_LOSS_CE ? KILN_LOSS_MSE : cfg->loss,
                             .axis = -1, .ignore_index = -100,
                             .delta = cfg->huber_delta};
    t->spe = (train->n + t->B - 1) / t->B;
    t->total = cfg->steps > 0 ? cfg->steps : t->spe * cfg->epochs;
    t->selective = cfg->selective.enabled;
    t->scorer_version = -1;
    size_t B = (size_t)t->B;
    t->tape = kiln_tape_create(g, t->B, false, cfg->seed ^ 0x6b696c6e64726f70ULL);
    t->opt = kiln_optim_create(&cfg->opt, g->n_params);
    t->x = malloc(B * t->numel * sizeof(float));
    t->tmp = malloc(t->numel * sizeof(float));
    t->dlogits = malloc(B * o->numel * sizeof(float));
    t->each = malloc(B * sizeof(float));
    t->perm = malloc((size_t)train->n * sizeof(int));
    t->y = malloc(B * t->tnumel * sizeof(int));
    if (!t->tape || !t->opt || !t->x || !t->tmp || !t->dlogits || !t->each || !t->perm || !t->y)
        return kiln_error(KILN_ERR_NOMEM, "out of memory setting up training");
    if (!t->selective)
        return KILN_OK;
    t->xs = malloc(B * t->numel * sizeof(float));
    t->ys = malloc(B * sizeof(int));
    t->logits = malloc(B * (size_t)t->classes * sizeof(float));
    t->scorer = kiln_model_create(g, true);
    t->session = t->scorer ? kiln_session_create(t->scorer, &(kiln_session_options){.max_batch = t->B,
                                                                                     .threads = omp_get_max_threads()})
                           : NULL;
    t->n_calib = train->n < CALIB ? train->n : CALIB;
    t->calib_x = malloc((size_t)t->n_calib * t->numel * sizeof(float));
    t->calib_y = malloc((size_t)t->n_calib * sizeof(int));
    t->calib_loss = malloc((size_t)t->n_calib * sizeof(float));
    t->calib_qloss = malloc((size_t)t->n_calib * sizeof(float));
    if (!t->xs || !t->ys || !t->logits || !t->scorer || !t->session || !t->calib_x || !t->calib_y || !t->calib_loss ||
        !t->calib_qloss)
        return kiln_error(KILN_ERR_NOMEM, "out of memory setting up the selective backprop scorer");
    for (int i = 0; i < t->n_calib; i++)   /* the first images, in file order */
        kiln_dataset_gather(train, &i, 1, t->calib_x + (size_t)i * t->numel, t->calib_y + i);
    return kiln_sb_state_init(&t->sb, &cfg->selective, train->n, t->numel, t->B, kiln_model_graph(t->scorer)->n);
}

static void trainer_free(trainer *t)
{
    kiln_tape_free(t->tape);
    kiln_optim_free(t->opt);
    kiln_session_free(t->session);
    kiln_model_free(t->scorer);
    kiln_session_free(t->qsession);
    kiln_model_free(t->qscorer);
    free(t->calib_x);
    free(t->calib_y);
    free(t->calib_loss);
    free(t->calib_qloss);
    kiln_sb_state_free(&t->sb);
    free(t->x);
    free(t->tmp);
    free(t->dlogits);
    free(t->each);
    free(t->perm);
    free(t->y);
    free(t->xs);
    free(t->ys);
    free(t->logits);
}

kiln_status kiln_train(kiln_graph_t *g, const kiln_dataset *train, const kiln_dataset *test,
                       const kiln_train_config *cfg, kiln_train_result *res)
{
    int B = cfg->batch;
    if (B < 1 || cfg->epochs < 1)
        return kiln_error(KILN_ERR_ARG, "batch (%d) and epochs (%d) must be positive", B, cfg->epochs);
    kiln_status fit = kiln_dataset_check_model(train, g);
    if (fit != KILN_OK || (test && test->n > 0 && (fit = kiln_dataset_check_model(test, g)) != KILN_OK))
        return fit;
    int in_id;
    kiln_graph_inputs(g, &in_id);
    const kiln_node *in = &g->nodes[in_id];
    bool classic = in->dtype == KILN_DT_F32 && kiln_graph_numel(g, kiln_graph_output(g)) ==
                   (size_t)g->nodes[kiln_graph_output(g)].dims[g->nodes[kiln_graph_output(g)].rank - 1] &&
                   (train->target.numel <= 1) && (train->target.numel == 0 || train->target.gathered == KILN_DT_I32);
    if (cfg->selective.enabled && !classic)
        return kiln_error(KILN_ERR_ARG, "selective backprop scores one class per example: it needs an f32 input and "
                          "a vector of logits");
    if ((cfg->crop_pad || cfg->flip) && (in->rank != 3 || in->dtype != KILN_DT_F32))
        return kiln_error(KILN_ERR_ARG, "--crop and --flip need image inputs (c, h, w)");
    if (cfg->selective.enabled && (cfg->selective.history < 0 || cfg->selective.stale < 0))
        return kiln_error(KILN_ERR_ARG, "selective backprop: history (%d) and stale (%d) must not be negative",
                          cfg->selective.history, cfg->selective.stale);
    kiln_train_config c = *cfg;
    if (c.selective.enabled && c.selective.history == 0)
        c.selective.history = 1024;
    cfg = &c;
    trainer t;
    kiln_run_state *s = &t.s;
    FILE *metrics = NULL;
    if (res) {
        memset(res, 0, sizeof *res);
        res->test_loss = res->test_accuracy = NAN;
    }
    kiln_status st = trainer_init(&t, g, train, cfg);
    if (st != KILN_OK)
        goto done;
    bool profile = getenv("KILN_PROFILE") != NULL;
    if (profile)
        kiln_tape_profile(t.tape, true);
    if (cfg->resume_path &&
        (st = kiln_checkpoint_load(g, t.opt, t.tape, s, t.selective ? &t.sb : NULL, cfg)) != KILN_OK)
        goto done;
    int64_t spe = t.spe, total = t.total;
    if (s->global_step > total) {
        st = kiln_error(KILN_ERR_ARG, "checkpoint is at step %" PRId64 ", beyond this run's %" PRId64 " steps",
                        s->global_step, total);
        goto done;
    }
    if (cfg->metrics_path && !(metrics = fopen(cfg->metrics_path, cfg->resume_path ? "a" : "w"))) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot open the metrics log for writing", cfg->metrics_path);
        goto done;
    }
    double t0 = now_s(), eval_s = 0;   /* eval_s: evaluation time since t0, not training */
    int64_t start_step = s->global_step, last_ckpt = s->global_step;
    int epochs = (int)((total + spe - 1) / spe);   /* --steps may end inside an epoch */
    kiln_progress p = {.epochs = epochs, .steps_per_epoch = spe, .total_steps = total};
    t.lr = kiln_optim_lr(t.opt, s->global_step, total);
    for (int epoch = (int)(s->global_step / spe); epoch < epochs; epoch++) {
        kiln_rng shuf;
        kiln_rng_seed(&shuf, cfg->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)epoch);
        for (int i = 0; i < train->n; i++)
            t.perm[i] = i;
        kiln_rng_shuffle(&shuf, t.perm, train->n);
        for (int64_t step = s->global_step % spe; step < spe; step++) {
            int b = (int)(train->n - step * B < B ? train->n - step * B : B);
            const int *idx = t.perm + step * B;
            if ((st = kiln_dataset_gather_typed(train, idx, b, t.x, t.y)) != KILN_OK)
                goto done;
            if (cfg->crop_pad || cfg->flip) {
                kiln_rng aug;
                kiln_rng_seed(&aug, (cfg->seed << 20) ^ (uint64_t)s->global_step ^ 0xa5a5a5a5ULL);
                kiln_augment(t.x, b, train->c, train->h, train->w, cfg->crop_pad, cfg->flip, &aug, t.tmp);
            }
            s->c.examples += b;
            p.epoch_end = step + 1 == spe || s->global_step + 1 == total;
            if (!t.selective || epoch == 0) {
                s->c.selected += t.selective ? b : 0;
                st = train_batch(&t, t.x, t.y, idx, b, epoch);
            } else {
                st = selective_step(&t, idx, b, epoch);
                if (st == KILN_OK && p.epoch_end && t.sb.qn > 0) {   /* the epoch's last partial queue */
                    int qn = t.sb.qn;
                    t.sb.qn = 0;
                    st = train_batch(&t, t.sb.qx, t.sb.qy, t.sb.qidx, qn, epoch);
                }
            }
            if (st != KILN_OK)
                goto done;
            s->global_step++;
            double el = now_s() - t0 - eval_s;
            p.epoch = epoch + 1;
            p.step = step + 1;
            p.global_step = s->global_step;
            p.loss = s->seen ? (float)(s->loss_sum / s->seen) : NAN;
            p.accuracy = s->seen && t.ls.kind == KILN_LOSS_CE ? (float)s->correct / (float)(s->seen * t.tnumel) : NAN;
            p.lr = t.lr;
            p.elapsed_s = s->elapsed + el;
            p.images_per_s = el > 0 ? (double)(s->global_step - start_step) * B / el : 0;
            p.eta_s = s->global_step > start_step ? el / (double)(s->global_step - start_step) *
                                                        (double)(total - s->global_step) : 0;
            p.counters = s->c;
            p.scorer_int8 = !t.selective || epoch == 0 ? -1
                            : cfg->selective.scorer == KILN_SB_SCORER_FP32 ? 0
                            : t.sb.q_epoch == epoch ? t.sb.q_int8 : -1;
            p.scorer_rank_correlation = t.selective && t.sb.q_epoch == epoch ? t.sb.q_rank : NAN;
            if (p.epoch_end) {
                p.test_loss = p.test_accuracy = NAN;
                double te = now_s();
                if (test && test->n > 0) {
                    kiln_model_t *m = kiln_model_create(g, true);
                    st = m ? kiln_evaluate(m, test, 500, &p.test_loss, &p.test_accuracy) : KILN_ERR_NOMEM;
                    kiln_model_free(m);
                    if (st != KILN_OK)
                        goto done;
                }
                eval_s += now_s() - te;
                if (res) {
                    res->train_loss = p.loss;
                    res->train_accuracy = p.accuracy;
                    res->test_loss = p.test_loss;
                    res->test_accuracy = p.test_accuracy;
                }
                s->loss_sum = 0;
                s->correct = s->seen = 0;
            }
            if (p.epoch_end || s->global_step % 100 == 0) {
                write_metrics(metrics, &p, t.win_seen ? t.win_loss / t.win_seen : NAN,
                              t.win_seen && t.ls.kind == KILN_LOSS_CE ? (double)t.win_correct / (double)(t.win_seen * t.tnumel)
                                                                      : NAN);
                t.win_loss = 0;
                t.win_correct = t.win_seen = 0;
            }
            if (cfg->on_progress)
                cfg->on_progress(&p, cfg->user);
            bool ckpt = cfg->checkpoint_path && (cfg->checkpoint_every > 0 ? s->global_step % cfg->checkpoint_every == 0
                                                                            : p.epoch_end);
            if (ckpt) {
                s->elapsed += now_s() - t0 - eval_s;
                t0 = now_s();
                eval_s = 0;
                start_step = s->global_step;
                if ((st = kiln_checkpoint_save(g, t.opt, t.tape, s, t.selective ? &t.sb : NULL, cfg)) != KILN_OK)
                    goto done;
                last_ckpt = s->global_step;
            }
            if ((cfg->stop_after_steps > 0 && s->global_step >= cfg->stop_after_steps) || s->global_step >= total)
                goto finish;
        }
    }
finish:
    if (cfg->checkpoint_path && last_ckpt != s->global_step) {   /* the end state, too */
        s->elapsed += now_s() - t0 - eval_s;
        t0 = now_s();
        eval_s = 0;
        if ((st = kiln_checkpoint_save(g, t.opt, t.tape, s, t.selective ? &t.sb : NULL, cfg)) != KILN_OK)
            goto done;
    }
    if (res) {
        res->train_loss = p.loss;
        res->train_accuracy = p.accuracy;
        res->steps = s->global_step;
        res->seconds = s->elapsed + (now_s() - t0 - eval_s);
        res->images_per_s = p.images_per_s;
        res->activation_bytes_per_example = kiln_tape_bytes_per_example(t.tape);
        res->counters = s->c;
    }
    if (profile)
        kiln_tape_profile_print(t.tape, stderr);
done:
    if (metrics)
        fclose(metrics);
    trainer_free(&t);
    return st;
}
