/* Every loss against central finite differences of itself, on random shapes: cross-entropy over
 * a class axis of rank-1 to rank-3 outputs with an ignore index and per-target weights, BCE with
 * logits, MSE, L1, Huber; cross-entropy against the classic per-example loss; a two-head graph
 * trained on two weighted losses through the tape. */
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "core/rng.h"
#include "kiln/kiln_train.h"

static kiln_rng rng;
static float urand(void) { return 2.0f * kiln_rng_uniform(&rng) - 1.0f; }

static void check_loss(const char *spec, kiln_loss_spec ls, int batch, bool weighted)
{
    kiln_graph_t *g = kiln_spec_parse(spec, "loss");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    int out = g->n - 1;
    const kiln_node *o = &g->nodes[out];
    size_t n = o->numel * (size_t)batch, nt = kiln_loss_target_numel(&ls, g, out) * (size_t)batch;
    float *y = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float)), *w = malloc(nt * sizeof(float));
    void *t = malloc(nt * 4);
    int classes = ls.kind == KILN_LOSS_CE ? o->dims[ls.axis < 0 ? ls.axis + o->rank : ls.axis] : 0;
    for (size_t i = 0; i < n; i++)
        y[i] = 3.0f * urand();
    for (size_t i = 0; i < nt; i++) {
        w[i] = 0.5f + kiln_rng_uniform(&rng);
        if (ls.kind == KILN_LOSS_CE)
            ((int32_t *)t)[i] = i % 5 == 3 ? ls.ignore_index : (int32_t)kiln_rng_below(&rng, (uint32_t)classes);
        else
            ((float *)t)[i] = ls.kind == KILN_LOSS_BCE ? kiln_rng_uniform(&rng) : urand();
    }
    kiln_loss_stats st;
    CHECK(kiln_loss_eval(&ls, g, out, batch, y, t, weighted ? w : NULL, dy, &st) == KILN_OK, "%s", kiln_last_error());
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        float old = y[i], eps = 1e-2f;
        kiln_loss_stats p, m;
        y[i] = old + eps;
        kiln_loss_eval(&ls, g, out, batch, y, t, weighted ? w : NULL, NULL, &p);
        y[i] = old - eps;
        kiln_loss_eval(&ls, g, out, batch, y, t, weighted ? w : NULL, NULL, &m);
        y[i] = old;
        double num = (ls.weight > 0 ? ls.weight : 1.0) * (p.loss - m.loss) / (2 * eps);
        if (ls.kind == KILN_LOSS_L1 || ls.kind == KILN_LOSS_HUBER) {   /* skip kinks */
            double d = y[i] - ((float *)t)[i], delta = ls.delta > 0 ? ls.delta : 1.0;
            if (fabs(d) < 2 * eps || (ls.kind == KILN_LOSS_HUBER && fabs(fabs(d) - delta) < 2 * eps))
                continue;
        }
        if (!check_close(num, dy[i], 2e-3)) {
            if (bad < 3)
                fprintf(stderr, "  %s dy[%zu]: analytic %g numeric %g\n", kiln_loss_name(ls.kind), i, dy[i], num);
            bad++;
        }
    }
    CHECK(bad == 0, "%d %s gradients disagree (%s)", bad, kiln_loss_name(ls.kind), spec);
    if (ls.kind == KILN_LOSS_CE)
        CHECK(st.counted > 0 && st.counted < (int64_t)nt, "ce counted %lld of %zu targets with ignored ones",
              (long long)st.counted, nt);
    free(y), free(dy), free(w), free(t);
    kiln_graph_free(g);
}

/* Two heads, two losses with weights: the tape's gradients equal finite differences of the
 * weighted sum. */
static void check_two_heads(void)
{
    kiln_graph_t *g = kiln_spec_parse("input 6\nh: linear 8\ntanh\ncls: linear 4 in=tanh_1\nbox: linear 3 in=tanh_1\n"
                                      "output cls,box\n", "heads");
    CHECK(g != NULL, "%s", kiln_last_error());
    if (!g)
        return;
    kiln_graph_init_params(g, 3);
    int B = 3, outs[2];
    kiln_graph_outputs(g, outs);
    kiln_loss_spec ls[2] = {{.kind = KILN_LOSS_CE, .axis = -1, .ignore_index = -100, .weight = 1.0f},
                            {.kind = KILN_LOSS_HUBER, .weight = 0.5f}};
    float x[18], box_t[9];
    int32_t cls_t[3] = {1, 3, 0};
    for (int i = 0; i < 18; i++)
        x[i] = urand();
    for (int i = 0; i < 9; i++)
        box_t[i] = urand();
    const void *tg[2] = {cls_t, box_t};
    kiln_tape_t *t = kiln_tape_create(g, B, false, 1);
    float d0[12], d1[9];
    float *d[2] = {d0, d1};
    double total = 0;
    const float *y;
    for (int k = 0; k < 2; k++) {
        kiln_loss_stats st;
        if (k == 0)
            kiln_tape_forward(t, x, B, true);
        y = kiln_tape_output(t, k);
        kiln_loss_eval(&ls[k], g, outs[k], B, y, tg[k], NULL, d[k], &st);
        total += ls[k].weight * st.loss;
    }
    kiln_tape_backward_outputs(t, (const float *const *)d);
    const float *an = kiln_tape_param_grads(t);
    int bad = 0;
    for (size_t i = 0; i < g->n_params; i += 3) {
        float old = g->params[i], eps = 1e-2f;
        double l[2];
        for (int s = 0; s < 2; s++) {
            g->params[i] = old + (s ? -eps : eps);
            kiln_tape_forward(t, x, B, true);
            l[s] = 0;
            for (int k = 0; k < 2; k++) {
                kiln_loss_stats st;
                kiln_loss_eval(&ls[k], g, outs[k], B, kiln_tape_output(t, k), tg[k], NULL, NULL, &st);
                l[s] += ls[k].weight * st.loss;
            }
        }
        g->params[i] = old;
        bad += !check_close((l[0] - l[1]) / (2 * eps), an[i], 3e-3);
    }
    CHECK(bad == 0 && total > 0, "%d of the two-head gradients disagree", bad);
    kiln_tape_free(t);
    kiln_graph_free(g);
}

int main(void)
{
    kiln_rng_seed(&rng, 7);
    kiln_loss_spec ce = {.kind = KILN_LOSS_CE, .axis = -1, .ignore_index = -100};
    check_loss("input 7\nreshape 7\n", ce, 4, false);
    check_loss("input 5 9\nreshape 5x9\n", ce, 3, true);               /* per token, weighted */
    ce.axis = 0;
    check_loss("input 4 3 5\nreshape 4x3x5\n", ce, 2, false);            /* classes first: (c, h, w) maps */
    ce.axis = 1;
    ce.weight = 0.7f;
    check_loss("input 3 6 2\nreshape 3x6x2\n", ce, 2, true);
    const kiln_loss_kind kinds[] = {KILN_LOSS_BCE, KILN_LOSS_MSE, KILN_LOSS_L1, KILN_LOSS_HUBER};
    for (int k = 0; k < 4; k++) {
        kiln_loss_spec ls = {.kind = kinds[k], .delta = 0.6f};
        check_loss("input 3 4\nreshape 3x4\n", ls, 3, false);
        ls.weight = 2.0f;
        check_loss("input 5\nreshape 5\n", ls, 2, true);
    }
    /* ce over a vector equals the classic per-example loss */
    {
        kiln_graph_t *g = kiln_spec_parse("input 10\nreshape 10\n", "v");
        float z[30], d0[30], d1[30];
        int lab[3] = {2, 9, 0};
        for (int i = 0; i < 30; i++)
            z[i] = urand();
        kiln_loss_spec ls = {.kind = KILN_LOSS_CE, .axis = -1, .ignore_index = -100};
        kiln_loss_stats st;
        kiln_loss_eval(&ls, g, 1, 3, z, lab, NULL, d0, &st);
        float classic = kiln_loss_softmax_ce(z, lab, 3, 10, d1, NULL);
        double worst = 0;
        for (int i = 0; i < 30; i++)
            worst = fmax(worst, fabs(d0[i] - d1[i]));
        CHECK(fabs(st.loss - classic) < 1e-5 && worst < 1e-6, "ce %g vs classic %g (gradients %g apart)", st.loss,
              classic, worst);
        kiln_graph_free(g);
    }
    check_two_heads();
    return check_report();
}
