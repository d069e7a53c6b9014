/* Optimizers, gradient clipping and schedules against PyTorch (tests/ref/torch_optim.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "io/safetensors.h"
#include "kiln/kiln_train.h"

enum { N = 37, T = 12, S = 40 };

static const float *get(const kiln_st_file *f, const char *name, size_t n)
{
    const kiln_st_tensor *t = kiln_st_find(f, name);
    CHECK(t && t->nbytes == n * sizeof(float), "reference tensor %s missing", name);
    return t && t->nbytes == n * sizeof(float) ? t->data : NULL;
}

static void check_traj(const kiln_st_file *f, const char *name, kiln_optim_config cfg)
{
    const float *p0 = get(f, "p0", N), *grads = get(f, "grads", (size_t)N * T), *ref = get(f, name, (size_t)N * T);
    if (!p0 || !grads || !ref)
        return;
    kiln_optim_t *o = kiln_optim_create(&cfg, N);
    float p[N], g[N];
    memcpy(p, p0, sizeof p);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        memcpy(g, grads + t * N, sizeof g);
        kiln_optim_step(o, p, g, cfg.lr);
        for (int i = 0; i < N; i++)
            worst = fmax(worst, fabs(p[i] - ref[t * N + i]) / fmax(1.0, fabs(ref[t * N + i])));
    }
    printf("%-14s max relative deviation from PyTorch over %d steps: %.2e\n", name, T, worst);
    CHECK(worst < 1e-5, "%s deviates from PyTorch by %.3e", name, worst);
    kiln_optim_free(o);
}

static void check_sched(const kiln_st_file *f, const char *name, kiln_optim_config cfg)
{
    const float *ref = get(f, name, S);
    if (!ref)
        return;
    kiln_optim_t *o = kiln_optim_create(&cfg, 1);
    double worst = 0;
    for (int s = 0; s < S; s++)
        worst = fmax(worst, fabs(kiln_optim_lr(o, s, S) - ref[s]));
    printf("%-20s max deviation from PyTorch over %d steps: %.2e\n", name, S, worst);
    CHECK(worst < 1e-6, "schedule %s deviates by %.3e", name, worst);
    kiln_optim_free(o);
}

int main(void)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cd %s/tests/ref && /usr/bin/python3 torch_optim.py \"%s/optim_ref.safetensors\"",
             src ? src : "..", getenv("KILN_BINARY_DIR") ? getenv("KILN_BINARY_DIR") : ".");
    int rc = system(cmd);
    CHECK(rc == 0, "reference generator failed (%d): is python3-torch installed?", rc);
    kiln_st_file *f = kiln_st_open("optim_ref.safetensors");
    CHECK(f != NULL, "%s", kiln_last_error());
    if (!f)
        return check_report();
    check_traj(f, "sgd", (kiln_optim_config){.kind = KILN_OPT_SGD, .lr = 0.1f});
    check_traj(f, "sgd_wd", (kiln_optim_config){.kind = KILN_OPT_SGD, .lr = 0.1f, .weight_decay = 0.01f});
    check_traj(f, "momentum", (kiln_optim_config){.kind = KILN_OPT_MOMENTUM, .lr = 0.05f, .momentum = 0.9f,
                                                  .weight_decay = 0.001f});
    check_traj(f, "nesterov", (kiln_optim_config){.kind = KILN_OPT_NESTEROV, .lr = 0.05f, .momentum = 0.9f});
    check_traj(f, "adam", (kiln_optim_config){.kind = KILN_OPT_ADAM, .lr = 0.01f, .weight_decay = 0.01f});
    check_traj(f, "adamw", (kiln_optim_config){.kind = KILN_OPT_ADAMW, .lr = 0.01f, .weight_decay = 0.1f});
    check_traj(f, "momentum_clip", (kiln_optim_config){.kind = KILN_OPT_MOMENTUM, .lr = 0.05f, .momentum = 0.9f,
                                                       .clip_norm = 0.5f});
    check_sched(f, "sched_step", (kiln_optim_config){.lr = 0.1f, .schedule = KILN_SCHED_STEP, .step_size = 7,
                                                     .gamma = 0.5f});
    check_sched(f, "sched_cosine", (kiln_optim_config){.lr = 0.1f, .schedule = KILN_SCHED_COSINE, .min_lr = 0.001f});
    check_sched(f, "sched_warmup_cosine", (kiln_optim_config){.lr = 0.1f, .schedule = KILN_SCHED_COSINE,
                                                              .warmup_steps = 5});
    kiln_st_close(f);
    remove("optim_ref.safetensors");
    return check_report();
}
