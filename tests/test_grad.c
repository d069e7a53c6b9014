/* Every op's gradients (input and parameters) against central finite differences, on random
 * shapes. Forward passes for the differences run with the reference GEMM (double accumulation);
 * the loss L = sum(out * R) is accumulated in double. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "fd_check.h"
#include "core/graph.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"
#include "ops/gemm.h"
#include "ops/winograd.h"

static kiln_rng rng;

static int rnd(int lo, int hi) { return lo + (int)kiln_rng_below(&rng, (uint32_t)(hi - lo + 1)); }
static float urand(void) { return 2.0f * kiln_rng_uniform(&rng) - 1.0f; }

typedef struct {
    kiln_graph_t *g;
    kiln_tape_t *t;
    int batch;
    float *x, *r;
    size_t nin, nout;
    uint64_t rng0[4];
} gcase;

static double loss_at(gcase *c)
{
    memcpy(kiln_tape_rng_state(c->t), c->rng0, sizeof c->rng0);   /* same dropout mask each time */
    const float *y = kiln_tape_forward(c->t, c->x, c->batch, true);
    double s = 0;
    for (size_t i = 0; i < c->nout; i++)
        s += (double)y[i] * c->r[i];
    return s;
}

/* The loss of a case, for fd_compare. */
static double case_loss(void *c)
{
    return loss_at(c);
}

static void check_spec(const char *spec, int batch)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "grad-spec");
    CHECK(g != NULL, "spec failed: %s\n%s", kiln_last_error(), spec);
    if (!g)
        return;
    kiln_graph_init_params(g, kiln_rng_next(&rng));
    for (size_t i = 0; i < g->n_params; i++)   /* lively parameters, including batchnorm's */
        g->params[i] += 0.3f * urand();
    gcase c = {.g = g, .batch = batch};
    c.t = kiln_tape_create(g, batch, true, 42);
    c.nin = g->nodes[0].numel * (size_t)batch;
    c.nout = g->nodes[g->n - 1].numel * (size_t)batch;
    c.x = malloc(c.nin * sizeof(float));
    c.r = malloc(c.nout * sizeof(float));
    for (size_t i = 0; i < c.nin; i++)
        c.x[i] = urand();
    if (strstr(spec, "maxpool")) {
        /* distinct values spaced wider than the difference step, so no window has a near tie */
        for (size_t i = 0; i < c.nin; i++)
            c.x[i] = 0.02f * (float)i - 0.01f * (float)c.nin;
        for (size_t i = c.nin - 1; i > 0; i--) {
            size_t j = kiln_rng_below(&rng, (uint32_t)i + 1);
            float t = c.x[i];
            c.x[i] = c.x[j];
            c.x[j] = t;
        }
    }
    for (size_t i = 0; i < c.nout; i++)
        c.r[i] = urand();
    memcpy(c.rng0, kiln_tape_rng_state(c.t), sizeof c.rng0);
    bool old = kiln_gemm_use_reference(true);
    loss_at(&c);
    kiln_tape_backward(c.t, c.r);
    size_t np = g->n_params;
    float *dp = malloc((np ? np : 1) * sizeof(float)), *dx = malloc(c.nin * sizeof(float));
    memcpy(dp, kiln_tape_param_grads(c.t), np * sizeof(float));
    memcpy(dx, kiln_tape_input_grad(c.t), c.nin * sizeof(float));
    fd_compare(case_loss, &c, &rng, c.x, dx, c.nin, "input", spec);
    if (np)
        fd_compare(case_loss, &c, &rng, g->params, dp, np, "parameter", spec);
    kiln_gemm_use_reference(old);
    free(dp);
    free(dx);
    free(c.x);
    free(c.r);
    kiln_tape_free(c.t);
    kiln_graph_free(g);
}

static void check_losses(void)
{
    int b = 5, k = 7;
    float z[35], dz[35], t[35], dm[35];
    int y[5];
    for (int i = 0; i < b * k; i++) {
        z[i] = 3 * urand();
        t[i] = urand();
    }
    for (int i = 0; i < b; i++)
        y[i] = rnd(0, k - 1);
    kiln_loss_softmax_ce(z, y, b, k, dz, NULL);
    kiln_loss_mse(z, t, (size_t)(b * k), dm);
    int bad_ce = 0, bad_mse = 0;
    for (int i = 0; i < b * k; i++) {
        float old = z[i], eps = 1e-2f;
        z[i] = old + eps;
        double cp = kiln_loss_softmax_ce(z, y, b, k, NULL, NULL), mp = kiln_loss_mse(z, t, 35, NULL);
        z[i] = old - eps;
        double cm = kiln_loss_softmax_ce(z, y, b, k, NULL, NULL), mm = kiln_loss_mse(z, t, 35, NULL);
        z[i] = old;
        bad_ce += !check_close((cp - cm) / (2 * eps), dz[i], 1e-2);
        bad_mse += !check_close((mp - mm) / (2 * eps), dm[i], 1e-2);
    }
    CHECK(bad_ce == 0, "%d softmax cross-entropy gradients disagree", bad_ce);
    CHECK(bad_mse == 0, "%d MSE gradients disagree", bad_mse);
    /* stability: huge logits give a finite loss */
    float big[3] = {1e30f, -1e30f, 0}, dbig[3];
    int lab = 1;
    float l = kiln_loss_softmax_ce(big, &lab, 1, 3, dbig, NULL);
    CHECK(isfinite(l) && isfinite(dbig[0]) && isfinite(dbig[1]), "softmax CE overflowed: %g", l);
}

int main(void)
{
    kiln_rng_seed(&rng, 1234);
    char spec[1024];
    for (int rep = 0; rep < 3; rep++) {
        int c = rnd(1, 4), h = rnd(5, 9), w = rnd(5, 9), b = rnd(1, 3);
        snprintf(spec, sizeof spec, "input %d\ndense %d\n", rnd(2, 9), rnd(1, 8));
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d\ndense %d bias=0\n", rnd(2, 9), rnd(1, 8));
        check_spec(spec, b);
        const char *convs[] = {"3 pad=1", "3 stride=2", "3x2 stride=2x1 pad=1x0", "3 dilation=2 pad=2",
                               "1", "2 stride=2 bias=0"};
        for (int i = 0; i < 6; i++) {
            snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d %s\n", c, h, w, rnd(1, 5), convs[i]);
            check_spec(spec, b);
        }
        int gch = 2 * rnd(1, 2);
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d 3 pad=1 groups=2\n", gch, h, w, 2 * rnd(1, 3));
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d 3 pad=1 groups=%d\n", gch, h, w, gch, gch);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\nmaxpool2d 2\n", c, h, w);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\nmaxpool2d 3 stride=2 pad=1\n", c, h, w);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\navgpool2d 3 stride=2 pad=1\n", c, h, w);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\nglobal_avgpool\n", c, h, w);
        check_spec(spec, b);
        const char *acts[] = {"relu", "leaky_relu 0.1", "sigmoid", "tanh", "gelu", "softmax", "dropout 0.3"};
        for (int i = 0; i < 7; i++) {
            snprintf(spec, sizeof spec, "input %d %d %d\n%s\n", c, h, w, acts[i]);
            check_spec(spec, b);
            snprintf(spec, sizeof spec, "input %d\n%s\n", rnd(2, 12), acts[i]);
            check_spec(spec, b);
        }
        snprintf(spec, sizeof spec, "input %d %d %d\nbatchnorm\n", c, h, w);
        check_spec(spec, b + 1);
        snprintf(spec, sizeof spec, "input %d\nbatchnorm\n", rnd(2, 6));
        check_spec(spec, 4);
        snprintf(spec, sizeof spec, "input %d %d %d\nflatten\ndense 3\n", c, h, w);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\na: conv2d %d 3 pad=1\ntanh\nconv2d %d 3 pad=1\nadd a\n", c, h,
                 w, c + 1, c + 1);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\na: conv2d 2 1\nb: conv2d 3 3 pad=1 in=input\nconcat a b\n",
                 c, h, w);
        check_spec(spec, b);
        snprintf(spec, sizeof spec, "input %d %d %d\na: sigmoid\nadd a a\n", c, h, w);
        check_spec(spec, b);
        /* relus fused into conv/dense/batchnorm, flatten sharing buffers */
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d 3 3 pad=1\nrelu\nbatchnorm\nrelu\nflatten\n"
                 "dense 5\nrelu\ndense 3\n", c, h, w);
        check_spec(spec, b + 1);
        /* a fused relu whose backward the max-pool after it applies */
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d 3 3 pad=1\nrelu\nmaxpool2d 2\nflatten\ndense 3\n", c, h, w);
        check_spec(spec, b);
        /* 3x3 stride-1 convolutions wide enough for Winograd (AVX-512 CPUs): the fused conv + relu
         * + pool forward, and the input gradient (reaching the 1x1 conv before), for each padding */
        snprintf(spec, sizeof spec, "input %d %d %d\nconv2d %d 1\nconv2d %d 3 pad=%d\nrelu\nmaxpool2d 2\nflatten\n"
                 "dense 3\n", c, h, w, rnd(8, 10), rnd(8, 10), rep % 3);
        if (kiln_f32_avx512()) {   /* where Winograd exists, these cases do run it */
            kiln_graph_t *wg = kiln_spec_parse(spec, "winograd");
            const kiln_node *conv = &wg->nodes[2], *in = &wg->nodes[1];
            CHECK(kiln_winograd_applies(conv, in) && kiln_winograd_dx_applies(conv, in),
                  "the Winograd case does not run by Winograd: %s", spec);
            kiln_graph_free(wg);
        }
        check_spec(spec, b);
        /* a relu that cannot be fused (its producer has two consumers) */
        snprintf(spec, sizeof spec, "input %d %d %d\na: conv2d 3 3 pad=1\nrelu\nadd a\n", c, h, w);
        check_spec(spec, b);
    }
    check_losses();
    return check_report();
}
