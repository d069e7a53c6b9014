/* Optimizers over one flat parameter vector (PyTorch semantics) and learning-rate schedules. */
#include <math.h>
#include "core/omp_compat.h"
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "kiln/kiln_train.h"

struct kiln_optim {
    kiln_optim_config c;
    size_t n;
    float *buf[2];      /* momentum buffer, or Adam's first and second moments */
    int n_bufs;
    int64_t step;       /* updates done */
};

kiln_optim_t *kiln_optim_create(const kiln_optim_config *cfg, size_t n)
{
    kiln_optim_t *o = calloc(1, sizeof *o);
    if (!o)
        goto nomem;
    o->c = *cfg;
    o->n = n;
    if (o->c.momentum == 0)
        o->c.momentum = 0.9f;
    if (o->c.beta1 == 0)
        o->c.beta1 = 0.9f;
    if (o->c.beta2 == 0)
        o->c.beta2 = 0.999f;
    if (o->c.eps == 0)
        o->c.eps = 1e-8f;
    if (o->c.gamma == 0)
        o->c.gamma = 0.1f;
    o->n_bufs = cfg->kind == KILN_OPT_SGD ? 0 : (cfg->kind >= KILN_OPT_ADAM ? 2 : 1);
    for (int i = 0; i < o->n_bufs; i++)
        if (!(o->buf[i] = calloc(n ? n : 1, sizeof(float))))
            goto nomem;
    return o;
nomem:
    kiln_optim_free(o);
    kiln_error(KILN_ERR_NOMEM, "out of memory for optimizer state");
    return NULL;
}

void kiln_optim_free(kiln_optim_t *o)
{
    if (!o)
        return;
    free(o->buf[0]);
    free(o->buf[1]);
    free(o);
}

int kiln_optim_state(kiln_optim_t *o, float **bufs, int64_t **step)
{
    bufs[0] = o->buf[0];
    bufs[1] = o->buf[1];
    *step = &o->step;
    return o->n_bufs;
}

float kiln_optim_lr(const kiln_optim_t *o, int64_t step, int64_t total)
{
    const kiln_optim_config *c = &o->c;
    double lr = c->lr;
    switch (c->schedule) {
    case KILN_SCHED_STEP:
        if (c->step_size > 0)
            lr *= pow(c->gamma, (double)(step / c->step_size));
        break;
    case KILN_SCHED_COSINE: {
        int64_t span = total - c->warmup_steps;
        double t = span > 0 ? (double)(step - c->warmup_steps) / (double)span : 1.0;
        t = t < 0 ? 0 : (t > 1 ? 1 : t);
        lr = c->min_lr + 0.5 * (c->lr - c->min_lr) * (1.0 + cos(M_PI * t));
        break;
    }
    default:
        break;
    }
    if (c->warmup_steps > 0 && step < c->warmup_steps)
        lr *= (double)(step + 1) / (double)c->warmup_steps;
    return (float)lr;
}

/* Sum of g[i0..i1) squared in double, in 8 interleaved partial sums (a fixed order that
 * vectorises; one running sum would serialise on the add latency). */
static double sum_squares(const float *g, size_t i0, size_t i1)
{
    double part[8] = {0};
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
        for (int j = 0; j < 8; j++)
            part[j] += (double)g[i + j] * g[i + j];
    for (int j = 0; i < i1; i++, j++)
        part[j] += (double)g[i] * g[i];
    double ss = 0;
    for (int j = 0; j < 8; j++)
        ss += part[j];
    return ss;
}

/* Updates p[i0..i1) from g scaled by scale; returns the sum of the unscaled g squared. */
static double update_range(kiln_optim_t *o, float *p, const float *g, float lr, float scale, bool first,
                           size_t i0, size_t i1)
{
    const kiln_optim_config *c = &o->c;
    float wd = c->weight_decay, mom = c->momentum;
    double ss = sum_squares(g, i0, i1);
    switch (c->kind) {
    case KILN_OPT_SGD:
        for (size_t i = i0; i < i1; i++) {
            p[i] -= lr * (g[i] * scale + wd * p[i]);
        }
        break;
    case KILN_OPT_MOMENTUM:
    case KILN_OPT_NESTEROV: {
        float *b = o->buf[0];
        bool nesterov = c->kind == KILN_OPT_NESTEROV;
        if (nesterov)
            for (size_t i = i0; i < i1; i++) {
                float d = g[i] * scale + wd * p[i];
                b[i] = first ? d : mom * b[i] + d;
                p[i] -= lr * (d + mom * b[i]);
            }
        else
            for (size_t i = i0; i < i1; i++) {
                float d = g[i] * scale + wd * p[i];
                b[i] = first ? d : mom * b[i] + d;
                p[i] -= lr * b[i];
            }
        break;
    }
    case KILN_OPT_ADAM:
    case KILN_OPT_ADAMW: {
        float *m = o->buf[0], *v = o->buf[1], b1 = c->beta1, b2 = c->beta2, eps = c->eps;
        float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
        float step_size = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
        bool decoupled = c->kind == KILN_OPT_ADAMW;
        for (size_t i = i0; i < i1; i++) {
            float d = g[i] * scale;
            if (decoupled)
                p[i] *= 1.0f - lr * wd;
            else
                d += wd * p[i];
            m[i] = b1 * m[i] + (1.0f - b1) * d;
            v[i] = b2 * v[i] + (1.0f - b2) * d * d;
            p[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
        }
        break;
    }
    }
    return ss;
}

float kiln_optim_step(kiln_optim_t *o, float *p, float *g, float lr)
{
    const kiln_optim_config *c = &o->c;
    size_t n = o->n;
    /* Threads take fixed contiguous ranges and their partial sums add in thread order, so the
     * result repeats bit for bit at a given thread count. Without clipping the norm comes from
     * the same pass as the update. */
    enum { MAX_PARTS = 64 };
    double part[MAX_PARTS] = {0};
    int nt = n > 65536 ? omp_get_max_threads() : 1;
    nt = nt > MAX_PARTS ? MAX_PARTS : nt;
    bool first = o->step == 0;
    o->step++;
    float scale = 1.0f;
    bool clip = c->clip_norm > 0;
    if (clip) {
        #pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num(), used = omp_get_num_threads();
            size_t i0 = n * (size_t)t / (size_t)used, i1 = n * (size_t)(t + 1) / (size_t)used;
            part[t] = sum_squares(g, i0, i1);
        }
        double ss = 0;
        for (int t = 0; t < nt; t++)
            ss += part[t];
        float norm = (float)sqrt(ss);
        scale = norm > c->clip_norm ? c->clip_norm / (norm + 1e-6f) : 1.0f;
    }
    #pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), used = omp_get_num_threads();
        size_t i0 = n * (size_t)t / (size_t)used, i1 = n * (size_t)(t + 1) / (size_t)used;
        part[t] = update_range(o, p, g, lr, scale, first, i0, i1);
    }
    double ss = 0;
    for (int t = 0; t < nt; t++)
        ss += part[t];
    return (float)sqrt(ss);
}
