/* Selective Backprop: the selection probability against hand-computed cases, the backpropagated
 * fraction on uniform losses, beta = 0 as exactly standard training, the queue (no example lost
 * or repeated within an epoch), checkpoint resume, and the scorer's weight refresh. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"

static const char *spec_text =
    "input 1 8 8\n"
    "conv1: conv2d 6 3 pad=1 bias=0\n"
    "bn1: batchnorm\n"
    "relu\n"
    "maxpool2d 2\n"
    "flatten\n"
    "drop: dropout 0.2\n"
    "fc1: dense 16\n"
    "relu\n"
    "fc2: dense 4\n";

enum { N = 700, CLASSES = 4 };

/* Learnable synthetic images: class k is bright in quadrant k, with noise and label noise so
 * losses spread. */
static void make_data(kiln_dataset *d)
{
    d->n = N;
    d->c = 1;
    d->h = d->w = 8;
    d->n_classes = CLASSES;
    d->images = malloc((size_t)N * 64);
    d->labels = malloc(N);
    kiln_rng r;
    kiln_rng_seed(&r, 42);
    for (int i = 0; i < N; i++) {
        int k = (int)kiln_rng_below(&r, CLASSES);
        for (int p = 0; p < 64; p++) {
            int q = (p / 8 >= 4) * 2 + (p % 8 >= 4);
            d->images[i * 64 + p] = (uint8_t)(kiln_rng_below(&r, 120) + (q == k ? 100 : 0));
        }
        d->labels[i] = (uint8_t)(kiln_rng_below(&r, 10) == 0 ? kiln_rng_below(&r, CLASSES) : (uint32_t)k);
    }
}

static kiln_graph_t *make_model(void)
{
    kiln_graph_t *g = kiln_spec_parse(spec_text, "test");
    if (g)
        kiln_graph_init_params(g, 7);
    return g;
}

static void test_probability(void)
{
    kiln_sb_selector_t *s = kiln_sb_selector_create(4, 1);
    CHECK(kiln_sb_probability(s, 1.0f) == 1.0, "empty history: P must be 1");
    float h[] = {3, 1, 4, 2};
    for (int i = 0; i < 4; i++)
        kiln_sb_record(s, h[i]);
    /* history {1,2,3,4}: share strictly below */
    CHECK(kiln_sb_probability(s, 2.5f) == 0.5, "P(2.5) = 2/4, got %g", kiln_sb_probability(s, 2.5f));
    CHECK(kiln_sb_probability(s, 2.0f) == 0.25, "P(2) = 1/4 (ties are not below), got %g", kiln_sb_probability(s, 2.0f));
    CHECK(kiln_sb_probability(s, 0.5f) == 0.0, "P(0.5) = 0, got %g", kiln_sb_probability(s, 0.5f));
    CHECK(kiln_sb_probability(s, 9.0f) == 1.0, "P(9) = 1, got %g", kiln_sb_probability(s, 9.0f));
    /* the oldest (3) is forgotten: {1,2,4,5} */
    kiln_sb_record(s, 5);
    float got[4];
    CHECK(kiln_sb_recorded(s, got) == 4 && got[0] == 1 && got[1] == 4 && got[2] == 2 && got[3] == 5,
          "history after 5 records must be 1 4 2 5 (oldest first), got %g %g %g %g", got[0], got[1], got[2], got[3]);
    CHECK(kiln_sb_probability(s, 3.0f) == 0.5, "P(3) over {1,2,4,5} = 2/4, got %g", kiln_sb_probability(s, 3.0f));
    kiln_sb_selector_free(s);

    s = kiln_sb_selector_create(8, 3);
    float h2[] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f};
    for (int i = 0; i < 8; i++)
        kiln_sb_record(s, h2[i]);
    CHECK(check_close(kiln_sb_probability(s, 0.45f), 0.125, 1e-12), "beta 3: (4/8)^3 = 0.125, got %g",
          kiln_sb_probability(s, 0.45f));
    CHECK(check_close(kiln_sb_probability(s, 0.75f), 343.0 / 512, 1e-12), "beta 3: (7/8)^3 = 343/512, got %g",
          kiln_sb_probability(s, 0.75f));
    CHECK(check_close(kiln_sb_probability(s, 0.25f), 1.0 / 64, 1e-12), "beta 3: (2/8)^3 = 1/64, got %g",
          kiln_sb_probability(s, 0.25f));
    kiln_sb_selector_free(s);

    s = kiln_sb_selector_create(8, 0);
    for (int i = 0; i < 8; i++)
        kiln_sb_record(s, h2[i]);
    CHECK(kiln_sb_probability(s, 0.0f) == 1.0 && kiln_sb_probability(s, 0.45f) == 1.0, "beta 0: P = 1 always");
    kiln_sb_selector_free(s);
    CHECK(kiln_sb_selector_create(0, 1) == NULL && kiln_sb_selector_create(4, -1) == NULL,
          "history 0 and negative beta must be refused");
}

/* On uniformly distributed losses E[P] = E[U^beta] = 1/(beta+1). */
static void test_uniform_fraction(void)
{
    const float betas[] = {0.5f, 1, 2, 3, 5};
    for (int b = 0; b < 5; b++) {
        kiln_sb_selector_t *s = kiln_sb_selector_create(1024, betas[b]);
        kiln_rng r, pick;
        kiln_rng_seed(&r, 100 + (uint64_t)b);
        kiln_rng_seed(&pick, 200 + (uint64_t)b);
        long kept = 0, n = 0;
        for (int i = 0; i < 200000; i++) {
            float loss = kiln_rng_uniform(&r);
            double p = kiln_sb_probability(s, loss);
            kiln_sb_record(s, loss);
            if (i < 1024)
                continue;   /* history filling */
            n++;
            kept += kiln_rng_uniform(&pick) < p;
        }
        double frac = (double)kept / n, want = 1.0 / (betas[b] + 1);
        printf("beta %.1f: backpropagated fraction %.4f, 1/(beta+1) = %.4f\n", betas[b], frac, want);
        CHECK(fabs(frac - want) <= 0.02, "beta %g: fraction %.4f not within 2 points of %.4f", betas[b], frac, want);
        kiln_sb_selector_free(s);
    }
}

typedef struct {
    int epochs;
    int *seen;                 /* [epochs x N] times each example was trained on in each epoch */
    int64_t batches, trained;
    int64_t selected_at_epoch_end[8], trained_at_epoch_end[8];
} log_t;

static void on_batch(const int *idx, int n, int epoch, void *user)
{
    log_t *l = user;
    for (int i = 0; i < n; i++)
        if (epoch >= 0 && epoch < l->epochs && idx[i] >= 0 && idx[i] < N)
            l->seen[epoch * N + idx[i]]++;
    l->batches++;
    l->trained += n;
}

static void on_progress(const kiln_progress *p, void *user)
{
    log_t *l = user;
    if (p->epoch_end && p->epoch <= 8) {
        l->selected_at_epoch_end[p->epoch - 1] = p->counters.selected;
        l->trained_at_epoch_end[p->epoch - 1] = p->counters.backpropagated;
    }
}

static kiln_train_config base_config(int epochs)
{
    kiln_train_config c = {0};
    c.epochs = epochs;
    c.batch = 32;
    c.seed = 3;
    c.opt.kind = KILN_OPT_MOMENTUM;
    c.opt.lr = 0.05f;
    c.opt.schedule = KILN_SCHED_COSINE;
    c.crop_pad = 1;
    c.flip = true;
    return c;
}

/* Trains a fresh model; returns it (caller frees) with the result in res. */
static kiln_graph_t *train(const kiln_dataset *d, const kiln_train_config *c, kiln_train_result *res)
{
    kiln_graph_t *g = make_model();
    kiln_status st = kiln_train(g, d, NULL, c, res);
    CHECK(st == KILN_OK, "training failed: %s", kiln_last_error());
    return g;
}

static bool same_weights(const kiln_graph_t *a, const kiln_graph_t *b)
{
    size_t n = kiln_graph_param_count(a);
    return n == kiln_graph_param_count(b) &&
           memcmp(kiln_graph_params((kiln_graph_t *)a), kiln_graph_params((kiln_graph_t *)b), n * sizeof(float)) == 0;
}

static void test_beta_zero(const kiln_dataset *d)
{
    kiln_train_config c = base_config(3);
    kiln_train_result r0, r1;
    kiln_graph_t *std = train(d, &c, &r0);
    c.selective = (kiln_sb_config){.enabled = true, .beta = 0, .history = 64};
    kiln_graph_t *sel = train(d, &c, &r1);
    CHECK(same_weights(std, sel), "beta 0 must train exactly as standard training (same weights)");
    CHECK(r1.counters.backpropagated == 3 * N && r1.counters.scored == 2 * N && r1.counters.updates == r0.counters.updates,
          "beta 0: %lld backpropagated (want %d), %lld scored (want %d), %lld updates (standard %lld)",
          (long long)r1.counters.backpropagated, 3 * N, (long long)r1.counters.scored, 2 * N,
          (long long)r1.counters.updates, (long long)r0.counters.updates);
    kiln_graph_free(std);
    kiln_graph_free(sel);
}

static void check_queue(const kiln_dataset *d, int stale, kiln_sb_scorer scorer)
{
    enum { E = 5 };
    kiln_train_config c = base_config(E);
    c.selective = (kiln_sb_config){.enabled = true, .beta = 2, .history = 128, .stale = stale, .scorer = scorer};
    log_t l = {.epochs = E, .seen = calloc((size_t)E * N, sizeof(int))};
    c.on_batch = on_batch;
    c.on_progress = on_progress;
    c.user = &l;
    kiln_train_result r;
    kiln_graph_t *g = train(d, &c, &r);
    int repeats = 0, epoch0_missing = 0;
    for (int e = 0; e < E; e++)
        for (int i = 0; i < N; i++) {
            repeats += l.seen[e * N + i] > 1;
            epoch0_missing += e == 0 && l.seen[i] != 1;
        }
    CHECK(repeats == 0, "stale %d: %d examples trained more than once within an epoch", stale, repeats);
    CHECK(epoch0_missing == 0, "stale %d: the first epoch must train every example once (%d not)", stale, epoch0_missing);
    for (int e = 0; e < E; e++) {
        int64_t trained = 0;
        for (int i = 0; i < N; i++)
            trained += l.seen[e * N + i];
        int64_t sel = l.selected_at_epoch_end[e] - (e ? l.selected_at_epoch_end[e - 1] : 0);
        CHECK(trained == sel, "stale %d epoch %d: %lld selected but %lld trained (queue lost examples)", stale, e + 1,
              (long long)sel, (long long)trained);
        CHECK(l.trained_at_epoch_end[e] == l.selected_at_epoch_end[e], "stale %d epoch %d: counters disagree", stale,
              e + 1);
    }
    double frac = (double)(r.counters.backpropagated - N) / (double)((E - 1) * N);
    printf("stale %d, scorer %d: epochs 2..%d backpropagated %.1f%% of examples, %lld scored (%lld int8), %lld updates\n",
           stale, (int)scorer, E, 100 * frac, (long long)r.counters.scored, (long long)r.counters.scored_int8,
           (long long)r.counters.updates);
    if (scorer == KILN_SB_SCORER_INT8)
        CHECK(r.counters.scored_int8 == r.counters.scored, "int8 scorer: %lld of %lld scored in int8",
              (long long)r.counters.scored_int8, (long long)r.counters.scored);
    if (scorer == KILN_SB_SCORER_FP32)
        CHECK(r.counters.scored_int8 == 0, "fp32 scorer scored %lld in int8", (long long)r.counters.scored_int8);
    CHECK(frac > 0.15 && frac < 0.6, "beta 2: fraction %.3f far from about 1/3", frac);
    int64_t want_scored = 0;   /* stale s: scored in epoch e (0-based, e >= 1) iff (e - 0) % (s+1) == 0 */
    for (int e = 1; e < E; e++)
        want_scored += e % (stale + 1) == 0 ? N : 0;
    CHECK(r.counters.scored == want_scored, "stale %d: %lld scored, want %lld", stale, (long long)r.counters.scored,
          (long long)want_scored);
    CHECK(r.counters.examples == (int64_t)E * N, "examples %lld, want %d", (long long)r.counters.examples, E * N);
    free(l.seen);
    kiln_graph_free(g);
}

static void test_rank_correlation(void)
{
    float a[] = {1, 2, 3, 4, 5}, up[] = {10, 20, 30, 40, 50}, down[] = {5, 4, 3, 2, 1}, sw[] = {2, 1, 3, 4, 5};
    float ties[] = {1, 1, 2, 2, 3}, flat[] = {7, 7, 7, 7, 7};
    CHECK(kiln_rank_correlation(a, up, 5) == 1.0, "monotone: 1, got %g", kiln_rank_correlation(a, up, 5));
    CHECK(check_close(kiln_rank_correlation(a, down, 5), -1.0, 1e-12), "reversed: -1");
    /* one swap of the lowest two: rho = 1 - 6*2/(5*24) = 0.9 */
    CHECK(check_close(kiln_rank_correlation(a, sw, 5), 0.9, 1e-12), "one swap: 0.9, got %g",
          kiln_rank_correlation(a, sw, 5));
    /* ties get mean ranks: ranks 0.5 0.5 2.5 2.5 4 vs 0 1 2 3 4: rho = 9/sqrt(9*10) */
    CHECK(check_close(kiln_rank_correlation(a, ties, 5), 9.0 / sqrt(90.0), 1e-12), "ties: %g, want %g",
          kiln_rank_correlation(a, ties, 5), 9.0 / sqrt(90.0));
    CHECK(isnan(kiln_rank_correlation(a, flat, 5)) && isnan(kiln_rank_correlation(a, up, 1)),
          "constant or single inputs: NaN");
}

/* A selective run stopped mid-epoch (queue partly full) and resumed ends bit-identical. */
static void test_resume(const kiln_dataset *d, int stale, kiln_sb_scorer scorer)
{
    const char *dir = getenv("KILN_BINARY_DIR");
    char ck[1024];
    snprintf(ck, sizeof ck, "%s/selective_ck_%d_%d.safetensors", dir ? dir : ".", stale, (int)scorer);
    kiln_train_config c = base_config(4);
    c.selective = (kiln_sb_config){.enabled = true, .beta = 1, .history = 100, .stale = stale, .scorer = scorer};
    kiln_train_result r, rf;
    kiln_graph_t *full = train(d, &c, &rf);
    c.checkpoint_path = ck;
    c.checkpoint_every = 7;
    c.stop_after_steps = 22 * 2 + 9;   /* 22 steps per epoch: mid third epoch */
    kiln_graph_t *part = train(d, &c, &r);
    kiln_graph_free(part);
    c.stop_after_steps = 0;
    c.resume_path = ck;
    kiln_train_result rr;
    kiln_graph_t *resumed = train(d, &c, &rr);
    CHECK(same_weights(full, resumed), "stale %d scorer %d: resumed selective run differs from the uninterrupted one",
          stale, (int)scorer);
    CHECK(rr.counters.examples == rf.counters.examples && rr.counters.scored == rf.counters.scored &&
          rr.counters.scored_int8 == rf.counters.scored_int8 && rr.counters.backpropagated == rf.counters.backpropagated &&
          rr.counters.updates == rf.counters.updates,
          "stale %d scorer %d: resumed counters differ (scored %lld/%lld, int8 %lld/%lld, backprop %lld/%lld)", stale,
          (int)scorer, (long long)rr.counters.scored, (long long)rf.counters.scored, (long long)rr.counters.scored_int8,
          (long long)rf.counters.scored_int8, (long long)rr.counters.backpropagated,
          (long long)rf.counters.backpropagated);
    if (scorer == KILN_SB_SCORER_INT8)
        CHECK(rf.counters.scored_int8 > 0 && rf.counters.scored_int8 == rf.counters.scored, "int8 scorer unused");
    kiln_train_config other = c;
    other.selective.beta = 2;
    kiln_graph_t *g = make_model();
    CHECK(kiln_train(g, d, NULL, &other, &rr) != KILN_OK && strstr(kiln_last_error(), "sb-beta"),
          "resuming with another beta must be refused naming it: %s", kiln_last_error());
    kiln_graph_free(g);
    kiln_graph_free(full);
    kiln_graph_free(resumed);
    remove(ck);
}

/* kiln_model_update gives the same outputs as a model made afresh from the changed graph. */
static void test_model_update(void)
{
    kiln_graph_t *g = make_model();
    kiln_model_t *m = kiln_model_create(g, true);
    float *p = kiln_graph_params(g);
    size_t n = kiln_graph_param_count(g);
    kiln_rng r;
    kiln_rng_seed(&r, 5);
    for (size_t i = 0; i < n; i++)
        p[i] += 0.3f * (kiln_rng_uniform(&r) - 0.5f);
    /* running statistics too: train-mode forward passes move them */
    kiln_tape_t *t = kiln_tape_create(g, 4, false, 1);
    float x[4 * 64];
    for (int i = 0; i < 4 * 64; i++)
        x[i] = kiln_rng_uniform(&r);
    kiln_tape_forward(t, x, 4, true);
    kiln_tape_free(t);
    CHECK(kiln_model_update(m, g) == KILN_OK, "update failed: %s", kiln_last_error());
    kiln_model_t *fresh = kiln_model_create(g, true);
    kiln_session_t *a = kiln_session_create(m, &(kiln_session_options){.max_batch = 4});
    kiln_session_t *b = kiln_session_create(fresh, &(kiln_session_options){.max_batch = 4});
    float ya[16], yb[16];
    kiln_session_run(a, x, 4, ya);
    kiln_session_run(b, x, 4, yb);
    CHECK(memcmp(ya, yb, sizeof ya) == 0, "updated model's outputs differ from a fresh model's");
    kiln_graph_t *other = kiln_spec_parse("input 1 8 8\nflatten\ndense 4\n", "other");
    CHECK(kiln_model_update(m, other) != KILN_OK, "updating from another structure must fail");
    kiln_graph_free(other);
    kiln_session_free(a);
    kiln_session_free(b);
    kiln_model_free(m);
    kiln_model_free(fresh);
    kiln_graph_free(g);
}

int main(void)
{
    kiln_set_threads(2);
    test_probability();
    test_uniform_fraction();
    test_model_update();
    kiln_dataset d = {0};
    make_data(&d);
    test_beta_zero(&d);
    test_rank_correlation();
    check_queue(&d, 0, KILN_SB_SCORER_FP32);
    check_queue(&d, 1, KILN_SB_SCORER_FP32);
    check_queue(&d, 2, KILN_SB_SCORER_FP32);
    check_queue(&d, 0, KILN_SB_SCORER_INT8);
    check_queue(&d, 1, KILN_SB_SCORER_AUTO);
    test_resume(&d, 0, KILN_SB_SCORER_FP32);
    test_resume(&d, 1, KILN_SB_SCORER_FP32);
    test_resume(&d, 0, KILN_SB_SCORER_INT8);
    test_resume(&d, 1, KILN_SB_SCORER_AUTO);
    kiln_dataset_free(&d);
    return check_report();
}
