/* The training loop. Checkpoints hold parameters, running statistics, optimizer state, the
 * dropout generator and the data position; shuffles and augmentation derive from (seed, epoch)
 * and (seed, step), so a resumed run retraces the uninterrupted one bit for bit. */
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "core/error.h"
#include "core/graph.h"
#include "io/graph_file.h"
#include "train/trainer.h"

typedef struct {
    int64_t global_step;
    double loss_sum;        /* this epoch so far */
    int64_t correct, seen;
    double elapsed;         /* training seconds (evaluation excluded) before this process */
} train_state;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static kiln_status save_checkpoint(const kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape,
                                   const train_state *s, const kiln_train_config *cfg)
{
    float *bufs[2];
    int64_t *step;
    int nb = kiln_optim_state(opt, bufs, &step);
    kiln_st_tensor extra[2];
    memset(extra, 0, sizeof extra);
    for (int i = 0; i < nb; i++) {
        snprintf(extra[i].name, sizeof extra[i].name, "optimizer.state%d", i);
        extra[i].dtype = KILN_DT_F32;
        extra[i].ndim = 1;
        extra[i].dims[0] = (int64_t)g->n_params;
        extra[i].data = bufs[i];
        extra[i].nbytes = g->n_params * sizeof(float);
    }
    const uint64_t *r = kiln_tape_rng_state(tape);
    char gs[32], os[32], rng[80], ls[48], cs[64], el[48], seed[32], batch[16];
    snprintf(gs, sizeof gs, "%" PRId64, s->global_step);
    snprintf(os, sizeof os, "%" PRId64, *step);
    snprintf(rng, sizeof rng, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64, r[0], r[1], r[2], r[3]);
    snprintf(ls, sizeof ls, "%a", s->loss_sum);
    snprintf(cs, sizeof cs, "%" PRId64 " %" PRId64, s->correct, s->seen);
    snprintf(el, sizeof el, "%a", s->elapsed);
    snprintf(seed, sizeof seed, "%" PRIu64, cfg->seed);
    snprintf(batch, sizeof batch, "%d", cfg->batch);
    const char *meta[] = {"kiln.checkpoint.global_step", gs, "kiln.checkpoint.optimizer_step", os,
                          "kiln.checkpoint.rng", rng, "kiln.checkpoint.loss_sum", ls,
                          "kiln.checkpoint.correct_seen", cs, "kiln.checkpoint.elapsed", el,
                          "kiln.checkpoint.seed", seed, "kiln.checkpoint.batch", batch, NULL};
    return kiln_graph_save_with(g, cfg->checkpoint_path, meta, extra, nb);
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

static kiln_status load_checkpoint(kiln_graph_t *g, kiln_optim_t *opt, kiln_tape_t *tape, train_state *s,
                                   const kiln_train_config *cfg)
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
    if (g->n_params)
        memcpy(g->params, cg->params, g->n_params * sizeof(float));
    if (g->n_buffers)
        memcpy(g->buffers, cg->buffers, g->n_buffers * sizeof(float));
    float *bufs[2];
    int64_t *ostep;
    int nb = kiln_optim_state(opt, bufs, &ostep);
    for (int i = 0; i < nb; i++) {
        char name[32];
        snprintf(name, sizeof name, "optimizer.state%d", i);
        const kiln_st_tensor *t = kiln_st_find(f, name);
        if (!t || t->dtype != KILN_DT_F32 || t->nbytes != g->n_params * sizeof(float)) {
            kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected F32 [%zu] (the optimizer's state), found %s",
                       path, name, g->n_params, t ? "another dtype or size" : "no such tensor (another optimizer?)");
            goto done;
        }
        memcpy(bufs[i], t->data, t->nbytes);
    }
    uint64_t *r = kiln_tape_rng_state(tape), seed;
    int batch;
    if (meta_field(f, "kiln.checkpoint.global_step", "a step count", 1, "%" SCNd64, &s->global_step) ||
        meta_field(f, "kiln.checkpoint.optimizer_step", "a step count", 1, "%" SCNd64, ostep) ||
        meta_field(f, "kiln.checkpoint.rng", "64 hex digits", 4, "%16" SCNx64 "%16" SCNx64 "%16" SCNx64 "%16" SCNx64,
                   &r[0], &r[1], &r[2], &r[3]) ||
        meta_field(f, "kiln.checkpoint.loss_sum", "a hex float", 1, "%la", &s->loss_sum) ||
        meta_field(f, "kiln.checkpoint.correct_seen", "two counts", 2, "%" SCNd64 " %" SCNd64, &s->correct, &s->seen) ||
        meta_field(f, "kiln.checkpoint.elapsed", "a hex float", 1, "%la", &s->elapsed) ||
        meta_field(f, "kiln.checkpoint.seed", "the seed", 1, "%" SCNu64, &seed) ||
        meta_field(f, "kiln.checkpoint.batch", "the batch size", 1, "%d", &batch))
        goto done;
    if (seed != cfg->seed || batch != cfg->batch) {
        kiln_error(KILN_ERR_ARG, "%s: checkpoint was made with --seed %" PRIu64 " --batch %d; this run has "
                   "--seed %" PRIu64 " --batch %d", path, seed, batch, cfg->seed, cfg->batch);
        goto done;
    }
    if (s->global_step < 0 || s->seen < 0 || s->correct < 0) {
        kiln_error(KILN_ERR_FORMAT, "%s: negative step or counts in the checkpoint", path);
        goto done;
    }
    st = KILN_OK;
done:
    kiln_graph_free(cg);
    kiln_st_close(f);
    return st;
}

/* One metrics line: loss and accuracy over the steps since the previous line (window), the epoch
 * means so far, and at an epoch's end the test figures. */
static void write_metrics(FILE *m, const kiln_progress *p, double win_loss, double win_acc)
{
    if (!m)
        return;
    fprintf(m, "{\"epoch\":%d,\"step\":%" PRId64 ",\"global_step\":%" PRId64 ",\"loss\":%.6f,\"accuracy\":%.6f,"
            "\"epoch_loss\":%.6f,\"epoch_accuracy\":%.6f,\"lr\":%.6g,\"images_per_s\":%.1f,\"elapsed_s\":%.3f",
            p->epoch, p->step, p->global_step, win_loss, win_acc, p->loss, p->accuracy, p->lr, p->images_per_s,
            p->elapsed_s);
    if (p->epoch_end && !isnan(p->test_accuracy))
        fprintf(m, ",\"epoch_end\":true,\"test_loss\":%.6f,\"test_accuracy\":%.6f", p->test_loss, p->test_accuracy);
    else if (p->epoch_end)
        fprintf(m, ",\"epoch_end\":true");
    fprintf(m, "}\n");
    fflush(m);
}

kiln_status kiln_train(kiln_graph_t *g, const kiln_dataset *train, const kiln_dataset *test,
                       const kiln_train_config *cfg, kiln_train_result *res)
{
    const kiln_node *in = &g->nodes[0];
    int classes = (int)g->nodes[g->n - 1].numel, B = cfg->batch;
    if (B < 1 || cfg->epochs < 1)
        return kiln_error(KILN_ERR_ARG, "batch (%d) and epochs (%d) must be positive", B, cfg->epochs);
    if (in->numel != (size_t)train->c * train->h * train->w)
        return kiln_error(KILN_ERR_SHAPE, "model input %dx%dx%d does not match the images %dx%dx%d",
                          in->shape[0], in->shape[1], in->shape[2], train->c, train->h, train->w);
    if (classes < train->n_classes)
        return kiln_error(KILN_ERR_SHAPE, "model output has %d values, the dataset %d classes", classes,
                          train->n_classes);
    int64_t spe = (train->n + B - 1) / B, total = spe * cfg->epochs;
    kiln_tape_t *tape = kiln_tape_create(g, B, false, cfg->seed ^ 0x6b696c6e64726f70ULL);
    kiln_optim_t *opt = kiln_optim_create(&cfg->opt, g->n_params);
    float *x = malloc((size_t)B * in->numel * sizeof(float)), *tmp = malloc(in->numel * sizeof(float));
    float *dlogits = malloc((size_t)B * classes * sizeof(float));
    int *perm = malloc((size_t)train->n * sizeof(int)), *y = malloc((size_t)B * sizeof(int));
    FILE *metrics = NULL;
    kiln_status st = KILN_OK;
    train_state s = {0};
    if (res) {
        memset(res, 0, sizeof *res);
        res->test_loss = res->test_accuracy = NAN;
    }
    if (!tape || !opt || !x || !tmp || !dlogits || !perm || !y) {
        st = kiln_error(KILN_ERR_NOMEM, "out of memory setting up training");
        goto done;
    }
    bool profile = getenv("KILN_PROFILE") != NULL;
    if (profile)
        kiln_tape_profile(tape, true);
    if (cfg->resume_path && (st = load_checkpoint(g, opt, tape, &s, cfg)) != KILN_OK)
        goto done;
    if (s.global_step > total) {
        st = kiln_error(KILN_ERR_ARG, "checkpoint is at step %" PRId64 ", beyond this run's %" PRId64 " steps",
                        s.global_step, total);
        goto done;
    }
    if (cfg->metrics_path && !(metrics = fopen(cfg->metrics_path, cfg->resume_path ? "a" : "w"))) {
        st = kiln_error(KILN_ERR_IO, "%s: cannot open the metrics log for writing", cfg->metrics_path);
        goto done;
    }
    double t0 = now_s(), eval_s = 0;   /* eval_s: evaluation time since t0, not training */
    int64_t start_step = s.global_step, win_correct = 0, win_seen = 0, last_ckpt = s.global_step;
    double win_loss = 0;   /* sums since the last metrics line */
    kiln_progress p = {.epochs = cfg->epochs, .steps_per_epoch = spe, .total_steps = total};
    for (int epoch = (int)(s.global_step / spe); epoch < cfg->epochs; epoch++) {
        kiln_rng shuf;
        kiln_rng_seed(&shuf, cfg->seed * 0x9e3779b97f4a7c15ULL + (uint64_t)epoch);
        for (int i = 0; i < train->n; i++)
            perm[i] = i;
        kiln_rng_shuffle(&shuf, perm, train->n);
        for (int64_t step = s.global_step % spe; step < spe; step++) {
            int b = (int)(train->n - step * B < B ? train->n - step * B : B);
            kiln_dataset_gather(train, perm + step * B, b, x, y);
            if (cfg->crop_pad || cfg->flip) {
                kiln_rng aug;
                kiln_rng_seed(&aug, (cfg->seed << 20) ^ (uint64_t)s.global_step ^ 0xa5a5a5a5ULL);
                kiln_augment(x, b, train->c, train->h, train->w, cfg->crop_pad, cfg->flip, &aug, tmp);
            }
            const float *logits = kiln_tape_forward(tape, x, b, true);
            int correct;
            float loss = kiln_loss_softmax_ce(logits, y, b, classes, dlogits, &correct);
            if (!isfinite(loss)) {
                st = kiln_error(KILN_ERR_NUMERIC, "loss became %s at epoch %d step %" PRId64 " (global step %"
                                PRId64 "); stopped%s%s", isnan(loss) ? "NaN" : "infinite", epoch + 1, step + 1,
                                s.global_step + 1, cfg->checkpoint_path ? ", the last good checkpoint is " : "",
                                cfg->checkpoint_path ? cfg->checkpoint_path : "");
                goto done;
            }
            kiln_tape_backward(tape, dlogits);
            float lr = kiln_optim_lr(opt, s.global_step, total);
            float norm = kiln_optim_step(opt, g->params, kiln_tape_param_grads(tape), lr);
            if (!isfinite(norm)) {
                st = kiln_error(KILN_ERR_NUMERIC, "gradient norm became %s at global step %" PRId64 "; stopped%s%s",
                                isnan(norm) ? "NaN" : "infinite", s.global_step + 1,
                                cfg->checkpoint_path ? ", the last good checkpoint is " : "",
                                cfg->checkpoint_path ? cfg->checkpoint_path : "");
                goto done;
            }
            s.global_step++;
            s.loss_sum += (double)loss * b;
            s.correct += correct;
            s.seen += b;
            double el = now_s() - t0 - eval_s;
            p.epoch = epoch + 1;
            p.step = step + 1;
            p.global_step = s.global_step;
            p.loss = (float)(s.loss_sum / s.seen);
            p.accuracy = (float)s.correct / (float)s.seen;
            p.lr = lr;
            p.elapsed_s = s.elapsed + el;
            p.images_per_s = el > 0 ? (double)(s.global_step - start_step) * B / el : 0;
            p.eta_s = s.global_step > start_step ? el / (double)(s.global_step - start_step) *
                                                       (double)(total - s.global_step) : 0;
            p.epoch_end = step + 1 == spe;
            if (p.epoch_end) {
                p.test_loss = p.test_accuracy = NAN;
                double te = now_s();
                if (test) {
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
                s.loss_sum = 0;
                s.correct = s.seen = 0;
            }
            win_loss += (double)loss * b;
            win_correct += correct;
            win_seen += b;
            if (p.epoch_end || s.global_step % 100 == 0) {
                write_metrics(metrics, &p, win_loss / win_seen, (double)win_correct / win_seen);
                win_loss = 0;
                win_correct = win_seen = 0;
            }
            if (cfg->on_progress)
                cfg->on_progress(&p, cfg->user);
            bool ckpt = cfg->checkpoint_path && (cfg->checkpoint_every > 0 ? s.global_step % cfg->checkpoint_every == 0
                                                                            : p.epoch_end);
            if (ckpt) {
                s.elapsed += now_s() - t0 - eval_s;
                t0 = now_s();
                eval_s = 0;
                start_step = s.global_step;
                if ((st = save_checkpoint(g, opt, tape, &s, cfg)) != KILN_OK)
                    goto done;
                last_ckpt = s.global_step;
            }
            if (cfg->stop_after_steps > 0 && s.global_step >= cfg->stop_after_steps)
                goto finish;
        }
    }
finish:
    if (cfg->checkpoint_path && last_ckpt != s.global_step) {   /* the end state, too */
        s.elapsed += now_s() - t0 - eval_s;
        t0 = now_s();
        eval_s = 0;
        if ((st = save_checkpoint(g, opt, tape, &s, cfg)) != KILN_OK)
            goto done;
    }
    if (res) {
        res->train_loss = p.loss;
        res->train_accuracy = p.accuracy;
        res->steps = s.global_step;
        res->seconds = s.elapsed + (now_s() - t0 - eval_s);
        res->images_per_s = p.images_per_s;
        res->activation_bytes_per_example = kiln_tape_bytes_per_example(tape);
    }
    if (profile)
        kiln_tape_profile_print(tape, stderr);
done:
    if (metrics)
        fclose(metrics);
    kiln_tape_free(tape);
    kiln_optim_free(opt);
    free(x);
    free(tmp);
    free(dlogits);
    free(perm);
    free(y);
    return st;
}
