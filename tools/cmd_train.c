/* kiln train: train a model spec on a dataset with a live progress bar. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli.h"
#include "kiln/kiln_train.h"
#include "train/plot.h"
#include "train/trainer.h"

typedef struct {
    bool tty;
    bool quiet;
    bool selective;
    int last_pct;
} progress_view;

static void fmt_time(char *out, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7)
        snprintf(out, n, "--:--");
    else if (s >= 3600)
        snprintf(out, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(out, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

/* " backprop 31% (2345 of 12345, 6789 scored)" for selective runs, else ""; at an epoch's end
 * also the time split so far. */
static void fmt_selective(char *out, size_t n, const progress_view *v, const kiln_progress *p)
{
    const kiln_train_counters *c = &p->counters;
    out[0] = 0;
    if (!v->selective || !c->examples)
        return;
    int k = snprintf(out, n, " backprop %.0f%% (%lld of %lld, %lld scored)",
                     100.0 * (double)c->backpropagated / (double)c->examples, (long long)c->backpropagated,
                     (long long)c->examples, (long long)c->scored);
    if (p->epoch_end && k > 0 && (size_t)k < n)
        snprintf(out + k, n - (size_t)k, "; time: scoring %.1f s, forward %.1f s, backward %.1f s, update %.1f s",
                 c->score_s, c->forward_s, c->backward_s, c->update_s);
}

static void on_progress(const kiln_progress *p, void *user)
{
    progress_view *v = user;
    if (v->quiet)
        return;
    int pct = (int)(100 * p->step / p->steps_per_epoch);
    char eta[32], sb[192];
    fmt_time(eta, sizeof eta, p->eta_s);
    fmt_selective(sb, sizeof sb, v, p);
    if (v->tty) {
        if (p->step % 10 != 0 && !p->epoch_end)
            return;
        char bar[31];
        int fill = (int)(30 * p->step / p->steps_per_epoch);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %3d%% step %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %s%s",
                p->epoch, p->epochs, bar, pct, (long long)p->step, (long long)p->steps_per_epoch, p->loss,
                100 * p->accuracy, p->images_per_s, eta, sb);
    } else if (pct / 25 != v->last_pct / 25 && !p->epoch_end) {
        fprintf(stderr, "epoch %d/%d step %lld/%lld loss %.4f acc %.2f%% %.0f img/s ETA %s%s\n", p->epoch,
                p->epochs, (long long)p->step, (long long)p->steps_per_epoch, p->loss, 100 * p->accuracy,
                p->images_per_s, eta, sb);
    }
    v->last_pct = pct;
    if (p->epoch_end) {
        char test[64] = "no test set";
        if (!isnan(p->test_accuracy))
            snprintf(test, sizeof test, "test loss %.4f acc %.2f%%", p->test_loss, 100 * p->test_accuracy);
        fprintf(stderr, "%sepoch %d/%d done: train loss %.4f acc %.2f%% | %s | %.0f img/s, %.1f s%s\n",
                v->tty ? "\r\033[K" : "", p->epoch, p->epochs, p->loss, 100 * p->accuracy, test, p->images_per_s,
                p->elapsed_s, sb);
        v->last_pct = 0;
    }
}

static int parse_opt(const char *s, kiln_opt_kind *k)
{
    static const char *const names[] = {"sgd", "momentum", "nesterov", "adam", "adamw"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *k = (kiln_opt_kind)i;
            return 0;
        }
    fprintf(stderr, "kiln train: --opt: expected sgd, momentum, nesterov, adam or adamw, found '%s'\n", s);
    return -1;
}

static int parse_sched(const char *s, kiln_sched_kind *k)
{
    static const char *const names[] = {"constant", "step", "cosine"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *k = (kiln_sched_kind)i;
            return 0;
        }
    fprintf(stderr, "kiln train: --schedule: expected constant, step or cosine, found '%s'\n", s);
    return -1;
}

static int parse_scorer(const char *s, kiln_sb_scorer *k)
{
    static const char *const names[] = {"auto", "fp32", "int8"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *k = (kiln_sb_scorer)i;
            return 0;
        }
    fprintf(stderr, "kiln train: --sb-scorer: expected auto, fp32 or int8, found '%s'\n", s);
    return -1;
}

/* Replaces the extension of path (or appends) with ext. */
static char *with_ext(const char *path, const char *ext)
{
    size_t n = strlen(path);
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        n = (size_t)(dot - path);
    char *s = malloc(n + strlen(ext) + 1);
    if (s) {
        memcpy(s, path, n);
        strcpy(s + n, ext);
    }
    return s;
}

int cmd_train(int argc, char **argv)
{
    static const char *const flags[] = {"json", "flip", "quiet", "selective-backprop", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln train SPEC.kiln [--data fashion-mnist|DIR|npy:X,Y[,TX,TY]|images:DIR|text:FILE] "
                        "[--context N] [--epochs N] [--batch N] "
                        "[--opt sgd|momentum|nesterov|adam|adamw] [--lr X] ... (see 'kiln help')\n");
        return 2;
    }
    kiln_train_config cfg = {0};
    cli_data data = cli_data_args(&a, "data", "fashion-mnist");
    cfg.epochs = (int)cli_int(&a, "epochs", 5, 1, 100000);
    cfg.batch = (int)cli_int(&a, "batch", 64, 1, 1 << 20);
    cfg.seed = (uint64_t)cli_int(&a, "seed", 0, 0, INT64_MAX);
    int threads = (int)cli_int(&a, "threads", 2, 1, 1024);
    if (parse_opt(cli_str(&a, "opt", "momentum"), &cfg.opt.kind) ||
        parse_sched(cli_str(&a, "schedule", "constant"), &cfg.opt.schedule))
        return 2;
    bool adam = cfg.opt.kind >= KILN_OPT_ADAM;
    cfg.opt.lr = (float)cli_float(&a, "lr", adam ? 0.001 : 0.01, 0, 1e9);
    cfg.opt.momentum = (float)cli_float(&a, "momentum", 0.9, 0, 1);
    cfg.opt.beta1 = (float)cli_float(&a, "beta1", 0.9, 0, 1);
    cfg.opt.beta2 = (float)cli_float(&a, "beta2", 0.999, 0, 1);
    cfg.opt.weight_decay = (float)cli_float(&a, "wd", 0, 0, 10);
    cfg.opt.clip_norm = (float)cli_float(&a, "clip", 0, 0, 1e9);
    cfg.opt.warmup_steps = cli_int(&a, "warmup", 0, 0, INT64_MAX);
    cfg.opt.step_size = cli_int(&a, "step-size", 0, 0, INT64_MAX);
    cfg.opt.gamma = (float)cli_float(&a, "gamma", 0.1, 0, 1);
    cfg.opt.min_lr = (float)cli_float(&a, "min-lr", 0, 0, 100);
    cfg.crop_pad = (int)cli_int(&a, "crop", 0, 0, 64);
    cfg.flip = cli_flag(&a, "flip");
    cfg.checkpoint_path = cli_str(&a, "checkpoint", NULL);
    cfg.checkpoint_every = cli_int(&a, "checkpoint-every", 0, 0, INT64_MAX);
    cfg.resume_path = cli_str(&a, "resume", NULL);
    cfg.stop_after_steps = cli_int(&a, "max-steps", 0, 0, INT64_MAX);
    cfg.steps = cli_int(&a, "steps", 0, 0, INT64_MAX);
    const char *loss = cli_str(&a, "loss", "mse");
    cfg.loss = KILN_LOSS_COUNT;
    for (int k = KILN_LOSS_BCE; k < KILN_LOSS_COUNT; k++)   /* float targets' loss */
        if (strcmp(loss, kiln_loss_name((kiln_loss_kind)k)) == 0)
            cfg.loss = (kiln_loss_kind)k;
    if (cfg.loss == KILN_LOSS_COUNT) {
        fprintf(stderr, "kiln train: --loss: expected mse, l1, huber or bce (for float targets), found '%s'\n", loss);
        return 2;
    }
    cfg.huber_delta = (float)cli_float(&a, "huber-delta", 1.0, 1e-6, 1e6);
    cfg.selective.enabled = cli_flag(&a, "selective-backprop");
    cfg.selective.beta = (float)cli_float(&a, "sb-beta", 3, 0, 1000);
    cfg.selective.history = (int)cli_int(&a, "sb-history", 1024, 1, 1 << 24);
    cfg.selective.stale = (int)cli_int(&a, "sb-stale", 0, 0, 100000);
    cfg.selective.min_rank_correlation = (float)cli_float(&a, "sb-min-rank", 0.95, -1, 1);
    if (parse_scorer(cli_str(&a, "sb-scorer", "auto"), &cfg.selective.scorer))
        return 2;
    uint64_t init_seed = (uint64_t)cli_int(&a, "init-seed", (int64_t)cfg.seed, 0, INT64_MAX);
    bool json = cli_flag(&a, "json");
    progress_view view = {.tty = isatty(2), .quiet = cli_flag(&a, "quiet"), .selective = cfg.selective.enabled};
    char *def_out = with_ext(a.pos[0], ".safetensors");
    const char *out = cli_str(&a, "out", def_out);
    char *def_metrics = with_ext(out, ".metrics.jsonl"), *def_plot = with_ext(out, ".svg");
    cfg.metrics_path = cli_str(&a, "metrics", def_metrics);
    const char *plot = cli_str(&a, "plot", def_plot);
    cli_check_unused(&a, "train");
    if (cfg.resume_path && !cfg.checkpoint_path)
        cfg.checkpoint_path = cfg.resume_path;
    cfg.on_progress = on_progress;
    cfg.user = &view;
    kiln_set_threads(threads);

    int rc = 1;
    kiln_dataset train = {0}, test = {0};
    kiln_graph_t *g = cli_load_model(a.pos[0], init_seed);
    if (!g || cli_load_data(&data, g, true, &train) || cli_load_data(&data, g, false, &test))
        goto done;
    if (!view.quiet && !json)
        kiln_graph_print(g, stderr);
    kiln_train_result res = {0};
    kiln_status st = kiln_train(g, &train, test.n ? &test : NULL, &cfg, &res);   /* n = 0: no test split */
    if (st != KILN_OK) {
        fprintf(stderr, "%skiln train: %s\n", view.tty ? "\n" : "", kiln_last_error());
        goto done;
    }
    char acc[32], epochs[16], lr[32], seed[32];
    snprintf(acc, sizeof acc, "%.6f", res.test_accuracy);
    snprintf(epochs, sizeof epochs, "%d", cfg.epochs);
    snprintf(lr, sizeof lr, "%g", cfg.opt.lr);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)cfg.seed);
    const char *meta[] = {"kiln.train.dataset", data.spec, "kiln.train.epochs", epochs, "kiln.train.optimizer",
                          cli_str(&a, "opt", "momentum"), "kiln.train.lr", lr, "kiln.train.seed", seed,
                          "kiln.train.test_accuracy", acc, NULL};
    if (kiln_graph_save(g, out, meta) != KILN_OK) {
        fprintf(stderr, "kiln train: %s\n", kiln_last_error());
        goto done;
    }
    kiln_curve curve;
    bool plotted = false;
    if (kiln_curve_load(cfg.metrics_path, a.pos[0], &curve) == KILN_OK) {
        plotted = kiln_plot_svg(plot, &curve, 1, "kiln train", false) == KILN_OK;
        kiln_curve_free(&curve);
    }
    if (!plotted)
        fprintf(stderr, "kiln train: warning: no plot written: %s\n", kiln_last_error());
    if (json) {
        printf("{\"command\":\"train\",\"model\":");
        cli_json_str(out);
        printf(",\"steps\":%lld,\"seconds\":%.3f,\"images_per_s\":%.1f,\"train_loss\":%.6f,\"train_accuracy\":%.6f,",
               (long long)res.steps, res.seconds, res.images_per_s, res.train_loss, res.train_accuracy);
        if (isnan(res.test_accuracy))
            printf("\"test_loss\":null,\"test_accuracy\":null,");
        else
            printf("\"test_loss\":%.6f,\"test_accuracy\":%.6f,", res.test_loss, res.test_accuracy);
        const kiln_train_counters *c = &res.counters;
        printf("\"activation_bytes_per_example\":%zu,", res.activation_bytes_per_example);
        printf("\"selective_backprop\":");
        if (cfg.selective.enabled)
            printf("{\"beta\":%g,\"history\":%d,\"stale\":%d,\"scorer\":\"%s\",\"min_rank_correlation\":%g},",
                   cfg.selective.beta, cfg.selective.history, cfg.selective.stale,
                   cli_str(&a, "sb-scorer", "auto"), cfg.selective.min_rank_correlation);
        else
            printf("null,");
        printf("\"scored_int8\":%lld,", (long long)c->scored_int8);
        printf("\"examples\":%lld,\"scored\":%lld,\"selected\":%lld,\"backpropagated\":%lld,"
               "\"fraction_backpropagated\":%.6f,\"updates\":%lld,\"time_s\":{\"score\":%.3f,\"forward\":%.3f,"
               "\"backward\":%.3f,\"update\":%.3f,\"other\":%.3f},\"metrics\":",
               (long long)c->examples, (long long)c->scored, (long long)c->selected, (long long)c->backpropagated,
               c->examples ? (double)c->backpropagated / (double)c->examples : 0.0, (long long)c->updates, c->score_s,
               c->forward_s, c->backward_s, c->update_s,
               res.seconds - c->score_s - c->forward_s - c->backward_s - c->update_s);
        cli_json_str(cfg.metrics_path);
        printf(",\"plot\":");
        if (plotted)
            cli_json_str(plot);
        else
            printf("null");
        printf("}\n");
    } else {
        char test[48] = "no test set";
        if (!isnan(res.test_accuracy))
            snprintf(test, sizeof test, "test accuracy %.2f%%", 100 * res.test_accuracy);
        printf("saved %s (%s, %lld steps, %.1f s training, %.0f img/s); metrics %s%s%s\n", out, test,
               (long long)res.steps, res.seconds, res.images_per_s, cfg.metrics_path, plotted ? ", plot " : "",
               plotted ? plot : "");
        const kiln_train_counters *c = &res.counters;
        if (cfg.selective.enabled)
            printf("selective backprop: %lld of %lld examples backpropagated (%.1f%%), %lld scored (%lld in int8), "
                   "%lld updates\n", (long long)c->backpropagated, (long long)c->examples,
                   c->examples ? 100.0 * (double)c->backpropagated / (double)c->examples : 0.0, (long long)c->scored,
                   (long long)c->scored_int8, (long long)c->updates);
        printf("time: scoring %.1f s, forward %.1f s, backward %.1f s, update %.1f s, other %.1f s\n", c->score_s,
               c->forward_s, c->backward_s, c->update_s,
               res.seconds - c->score_s - c->forward_s - c->backward_s - c->update_s);
    }
    rc = 0;
done:
    kiln_graph_free(g);
    kiln_dataset_free(&train);
    kiln_dataset_free(&test);
    free(def_out);
    free(def_metrics);
    free(def_plot);
    return rc;
}
