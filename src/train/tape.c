/* Reverse-mode autodiff tape: forward keeps every activation and saved state; backward walks the
 * nodes in reverse, each consumer adding into its inputs' gradients. */
#include <math.h>
#include "core/omp_compat.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "kiln/kiln_train.h"
#include "core/op_table.h"
#include "ops/gemm.h"
#include "train/backward.h"

struct kiln_tape {
    kiln_graph_t *g;
    int max_batch, batch;
    float **act, **grad, **save;   /* per node */
    int32_t **argmax;              /* per maxpool node */
    bool *needs_grad;              /* per node: some parameter or the input depends on it */
    bool *fused;                   /* per node: a relu computed in place by its producer */
    bool *relu_out;                /* per node: applies the fused relu to its output */
    bool *relu_in_pool;            /* per node: a fused relu whose backward its max-pool does */
    int *pool_with;                /* per conv node: the 2x2 max-pool computed with it (conv + relu +
                                    * pool per image, in cache; its full output is never stored), or 0 */
    bool *pooled;                  /* per node: a max-pool its conv computes */
    float *work;                   /* shared temporary */
    float *dparams;
    int threads;                   /* threads the work space is sized for */
    kiln_rng rng;
    size_t bytes_per_example;
    double *fwd_s, *bwd_s;         /* per node seconds, when profiling */
    bool *shared;                  /* per node: act points at memory the tape does not own (inputs,
                                    * params, views, fused relus) */
};

/* Whether node i's activation is another's bytes: a view, or a relu computed in place by its
 * producer. */
static bool aliases_input(const kiln_tape_t *t, int i)
{
    return t->fused[i] || kiln_op_is_view(t->g->nodes[i].op);
}

void kiln_tape_free(kiln_tape_t *t)
{
    if (!t)
        return;
    const kiln_graph_t *g = t->g;
    for (int i = 0; t->g && i < t->g->n; i++) {
        if (t->act && t->shared && !t->shared[i])
            free(t->act[i]);
        bool alias = g->nodes[i].n_inputs > 0 && t->grad && t->grad[i] && t->grad[i] == t->grad[g->nodes[i].inputs[0]];
        if (t->grad && !alias)
            free(t->grad[i]);
        if (t->save)
            free(t->save[i]);
        if (t->argmax)
            free(t->argmax[i]);
    }
    free(t->act);
    free(t->grad);
    free(t->save);
    free(t->argmax);
    free(t->needs_grad);
    free(t->fused);
    free(t->relu_out);
    free(t->relu_in_pool);
    free(t->pool_with);
    free(t->pooled);
    free(t->work);
    free(t->dparams);
    free(t->fwd_s);
    free(t->bwd_s);
    free(t->shared);
    free(t);
}

static void *alloc_floats(size_t n)
{
    return n ? malloc(n * sizeof(float)) : NULL;
}

kiln_tape_t *kiln_tape_create(kiln_graph_t *g, int max_batch, bool input_grad, uint64_t seed)
{
    if (max_batch < 1) {
        kiln_error(KILN_ERR_ARG, "batch must be at least 1, found %d", max_batch);
        return NULL;
    }
    kiln_tape_t *t = calloc(1, sizeof *t);
    int *consumers = NULL;
    size_t n = (size_t)g->n, work = 1;
    if (t)
        t->g = g;   /* before any failure: kiln_tape_free reads it */
    if (!t || !(t->shared = calloc(n, sizeof(bool))) || !(t->act = calloc(n, sizeof(float *))) || !(t->grad = calloc(n, sizeof(float *))) ||
        !(t->save = calloc(n, sizeof(float *))) || !(t->argmax = calloc(n, sizeof(int32_t *))) ||
        !(t->needs_grad = calloc(n, sizeof(bool))) || !(t->fused = calloc(n, sizeof(bool))) ||
        !(t->relu_out = calloc(n, sizeof(bool))) || !(t->relu_in_pool = calloc(n, sizeof(bool))) ||
        !(t->pool_with = calloc(n, sizeof(int))) || !(t->pooled = calloc(n, sizeof(bool))))
        goto nomem;
    kiln_gemm_init();
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].a.act != KILN_OP_INPUT) {
            kiln_tape_free(t);
            kiln_error(KILN_ERR_ARG, "%s: fused activations (act=) are an inference form; training needs the "
                       "activation as its own layer", g->nodes[i].name);
            return NULL;
        }
    consumers = calloc(2 * n, sizeof(int));
    if (!consumers)
        goto nomem;
    int *reader = consumers + n;   /* the last node reading each node */
    for (int i = 0; i < g->n; i++)
        for (int j = 0; j < g->nodes[i].n_inputs; j++) {
            consumers[g->nodes[i].inputs[j]]++;
            reader[g->nodes[i].inputs[j]] = i;
        }
    int outs[KILN_MAX_OUTPUTS], n_outs = kiln_graph_outputs(g, outs);
    for (int k = 0; k < n_outs; k++)   /* the caller reads each output: none is fused away or aliased */
        consumers[outs[k]]++;
    for (int i = 0; i < g->n; i++) {   /* conv -> relu -> 2x2 max-pool chains, each sole reader */
        const kiln_node *c = &g->nodes[i];
        if (c->op != KILN_OP_CONV2D || c->a.groups != 1 || consumers[i] != 1)
            continue;
        int r = reader[i], p = reader[r];
        const kiln_node *pn = &g->nodes[p];
        if (g->nodes[r].op == KILN_OP_RELU && consumers[r] == 1 && pn->op == KILN_OP_MAXPOOL2D &&
            pn->a.kernel[0] == 2 && pn->a.kernel[1] == 2 && pn->a.stride[0] == 2 && pn->a.stride[1] == 2 &&
            pn->a.pad[0] == 0 && pn->a.pad[1] == 0) {
            t->pool_with[i] = p;
            t->pooled[p] = true;
        }
    }
    t->max_batch = max_batch;
    t->threads = omp_get_max_threads();
    kiln_rng_seed(&t->rng, seed);
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_INPUT) {
            t->needs_grad[i] = input_grad && nd->dtype == KILN_DT_F32;
            continue;
        }
        bool ng = false;   /* trainable tensors, or an input that needs a gradient (not a const's buffer) */
        for (int p = 0; p < nd->n_params; p++)
            ng = ng || nd->params[p].trainable;
        for (int j = 0; j < nd->n_inputs; j++)
            ng = ng || t->needs_grad[nd->inputs[j]];
        t->needs_grad[i] = ng;
    }
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        size_t examples = nd->batched ? (size_t)max_batch : 1;
        size_t numel = nd->numel * examples;
        size_t save = kiln_node_save_floats(g, i, max_batch);
        int src = nd->n_inputs ? nd->inputs[0] : -1;
        kiln_op sop = src >= 0 ? g->nodes[src].op : KILN_OP_INPUT;
        /* a relu that alone consumes a conv/dense/batchnorm runs in place, fused into it: its
         * backward needs only its output, and the producer's backward never reads its own */
        t->fused[i] = nd->op == KILN_OP_RELU && consumers[src] == 1 &&
                      (sop == KILN_OP_CONV2D || sop == KILN_OP_DENSE || sop == KILN_OP_BATCHNORM);
        if (t->fused[i])
            t->relu_out[src] = true;
        bool view = kiln_op_is_view(nd->op);   /* the same bytes under another shape */
        t->shared[i] = t->fused[i] || view || nd->op == KILN_OP_INPUT || nd->op == KILN_OP_PARAM;
        if (nd->op == KILN_OP_PARAM) {
            t->act[i] = kiln_node_tensor(g, nd, 0);
            numel = 0;
        } else if (nd->op == KILN_OP_INPUT) {
            numel = 0;   /* the caller's buffer, given to each forward */
        } else if (t->fused[i] || view) {
            t->act[i] = t->act[src];
            numel = 0;
        } else if (t->pool_with[i]) {
            numel = 0;   /* computed per image and pooled at once: never stored */
            size_t pw = kiln_conv2d_pool_work_floats(g, nd, t->threads);
            work = pw > work ? pw : work;
        } else if (!(t->act[i] = alloc_floats(numel))) {
            goto nomem;
        }
        size_t gnum = nd->numel * examples;
        /* a fused relu read only by a max-pool: the pool's backward applies the relu mask and
         * writes straight into the producer's gradient */
        t->relu_in_pool[i] = t->fused[i] && consumers[i] == 1 && g->nodes[reader[i]].op == KILN_OP_MAXPOOL2D &&
                             t->needs_grad[src];
        if ((view && consumers[src] == 1 && t->needs_grad[src]) || t->relu_in_pool[i])
            t->grad[i] = t->grad[src];   /* its backward is then a no-op */
        else if (t->needs_grad[i]) {
            if (!(t->grad[i] = alloc_floats(gnum)))
                goto nomem;
            /* poisoned: a backward kernel that reads a gradient before writing it shows as NaN
             * in the gradient checks instead of passing on zeroed fresh pages */
            for (size_t k = 0; k < gnum; k++)
                t->grad[i][k] = NAN;
        }
        if (save && !(t->save[i] = alloc_floats(save)))
            goto nomem;
        if (nd->op == KILN_OP_MAXPOOL2D && !(t->argmax[i] = malloc(numel * sizeof(int32_t))))
            goto nomem;
        size_t w = kiln_node_work_floats(g, i, t->threads);
        size_t wb = kiln_node_backward_work_floats(g, i, max_batch, t->threads);
        work = w > work ? w : work;
        work = wb > work ? wb : work;
        t->bytes_per_example += numel / (size_t)max_batch * sizeof(float) + save / (size_t)max_batch * sizeof(float) +
                                (nd->op == KILN_OP_MAXPOOL2D ? nd->numel * sizeof(int32_t) : 0);
    }
    if (!(t->work = alloc_floats(work)) || !(t->dparams = alloc_floats(g->n_params ? g->n_params : 1)))
        goto nomem;
    memset(t->dparams, 0, (g->n_params ? g->n_params : 1) * sizeof(float));
    free(consumers);
    return t;
nomem:
    free(consumers);
    kiln_tape_free(t);
    kiln_error(KILN_ERR_NOMEM, "out of memory for a batch-%d training tape", max_batch);
    return NULL;
}

/* Examples node i holds in a pass over batch examples. */
static size_t examples_of(const kiln_node *nd, int batch)
{
    return nd->batched ? (size_t)batch : 1;
}

kiln_status kiln_tape_run(kiln_tape_t *t, const void *const *inputs, int batch, bool training)
{
    const kiln_graph_t *g = t->g;
    if (batch < 1 || batch > t->max_batch)
        return kiln_error(KILN_ERR_ARG, "batch %d outside 1..%d", batch, t->max_batch);
    t->batch = batch;
    int k = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == KILN_OP_INPUT) {
            if (!inputs[k])
                return kiln_error(KILN_ERR_ARG, "input %s: no data given", g->nodes[i].name);
            if (g->nodes[i].dtype == KILN_DT_I32 && kiln_graph_check_indices(g, i, inputs[k], batch) != KILN_OK)
                return KILN_ERR_ARG;
            t->act[i] = (float *)inputs[k++];
        }
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_INPUT || nd->op == KILN_OP_PARAM)
            continue;
        if (aliases_input(t, i)) {
            t->act[i] = t->act[nd->inputs[0]];
            continue;
        }
        if (t->pooled[i])
            continue;   /* written by its conv */
        if (t->pool_with[i]) {
            int p = t->pool_with[i];
            double t0 = t->fwd_s ? omp_get_wtime() : 0;
            kiln_conv2d_pool_forward(g, nd, &g->nodes[p], t->act[nd->inputs[0]], batch, t->act[p], t->argmax[p],
                                     t->work, t->threads);
            if (t->fwd_s)
                t->fwd_s[i] += omp_get_wtime() - t0;
            continue;
        }
        kiln_fwd_args a = {.batch = (int)examples_of(nd, batch), .training = training, .out = t->act[i],
                           .work = t->work, .relu = t->relu_out[i], .save = t->save[i], .threads = t->threads,
                           .argmax = t->argmax[i], .rng = &t->rng};
        for (int j = 0; j < nd->n_inputs; j++) {
            a.in[j] = t->act[nd->inputs[j]];
            a.in_batch[j] = (int)examples_of(&g->nodes[nd->inputs[j]], batch);
        }
        double t0 = t->fwd_s ? omp_get_wtime() : 0;
        kiln_node_forward(g, i, &a);
        if (t->fwd_s)
            t->fwd_s[i] += omp_get_wtime() - t0;
    }
    return KILN_OK;
}

const float *kiln_tape_output(const kiln_tape_t *t, int k)
{
    const kiln_graph_t *g = t->g;
    int n = g->n_outputs ? g->n_outputs : 1;
    if (k < 0 || k >= n)
        return NULL;
    return t->act[g->n_outputs ? g->outputs[k] : g->n - 1];
}

const float *kiln_tape_forward(kiln_tape_t *t, const float *x, int batch, bool training)
{
    const void *in[1] = {x};
    if (kiln_graph_input_count(t->g) != 1) {
        kiln_error(KILN_ERR_ARG, "the graph has %d inputs: use kiln_tape_run", kiln_graph_input_count(t->g));
        return NULL;
    }
    return kiln_tape_run(t, in, batch, training) == KILN_OK ? kiln_tape_output(t, 0) : NULL;
}

void kiln_tape_backward_outputs(kiln_tape_t *t, const float *const *douts)
{
    const kiln_graph_t *g = t->g;
    bool written[g->n];
    memset(written, 0, sizeof written);
    int n_out = g->n_outputs ? g->n_outputs : 1;
    for (int k = 0; k < n_out; k++) {
        int o = g->n_outputs ? g->outputs[k] : g->n - 1;
        size_t n = g->nodes[o].numel * examples_of(&g->nodes[o], t->batch);
        if (!douts[k] || !t->grad[o])
            continue;   /* an output without a loss, or one nothing trainable depends on */
        if (written[o])
            for (size_t e = 0; e < n; e++)
                t->grad[o][e] += douts[k][e];
        else
            memcpy(t->grad[o], douts[k], n * sizeof(float));
        written[o] = true;
    }
    for (int i = g->n - 1; i >= 0; i--) {
        const kiln_node *nd = &g->nodes[i];
        if (!t->needs_grad[i] || nd->op == KILN_OP_INPUT)
            continue;
        if (t->relu_in_pool[i]) {   /* done by the pool, into the shared buffer */
            written[nd->inputs[0]] = written[i];
            continue;
        }
        kiln_bwd_args a = {.batch = (int)examples_of(nd, t->batch), .out = t->act[i], .dy = t->grad[i],
                           .dparams = t->dparams, .save = t->save[i], .argmax = t->argmax[i], .work = t->work,
                           .threads = t->threads,
                           .relu_mask = nd->op == KILN_OP_MAXPOOL2D && t->relu_in_pool[nd->inputs[0]]};
        if (!written[i]) {   /* an unused branch: its gradient is zero */
            memset(t->grad[i], 0, nd->numel * examples_of(nd, t->batch) * sizeof(float));
            written[i] = true;
        }
        for (int j = 0; j < nd->n_inputs; j++) {
            int src = nd->inputs[j];
            a.in[j] = t->act[src];
            a.in_batch[j] = (int)examples_of(&g->nodes[src], t->batch);
            a.dx[j] = t->needs_grad[src] ? t->grad[src] : NULL;
            a.acc[j] = written[src];
            for (int k = 0; k < j; k++)   /* the same input twice: the second adds */
                if (nd->inputs[k] == src)
                    a.acc[j] = a.dx[j] != NULL;
        }
        double t0 = t->bwd_s ? omp_get_wtime() : 0;
        kiln_node_backward(g, i, &a);
        if (t->bwd_s)
            t->bwd_s[i] += omp_get_wtime() - t0;
        for (int j = 0; j < nd->n_inputs; j++)
            if (a.dx[j])
                written[nd->inputs[j]] = true;
    }
}

void kiln_tape_backward(kiln_tape_t *t, const float *dout)
{
    const float *d[1] = {dout};
    kiln_tape_backward_outputs(t, d);
}

float *kiln_tape_param_grads(kiln_tape_t *t) { return t->dparams; }
const float *kiln_tape_input_grad(const kiln_tape_t *t)
{
    for (int i = 0; i < t->g->n; i++)
        if (t->g->nodes[i].op == KILN_OP_INPUT)
            return t->grad[i];
    return NULL;
}

const float *kiln_tape_node_grad(const kiln_tape_t *t, int node)
{
    return node >= 0 && node < t->g->n ? t->grad[node] : NULL;
}
size_t kiln_tape_bytes_per_example(const kiln_tape_t *t) { return t->bytes_per_example; }
uint64_t *kiln_tape_rng_state(kiln_tape_t *t) { return t->rng.s; }

void kiln_tape_profile(kiln_tape_t *t, bool on)
{
    free(t->fwd_s);
    free(t->bwd_s);
    t->fwd_s = t->bwd_s = NULL;
    if (on) {
        t->fwd_s = calloc((size_t)t->g->n, sizeof(double));
        t->bwd_s = calloc((size_t)t->g->n, sizeof(double));
    }
}

void kiln_tape_profile_print(const kiln_tape_t *t, void *file)
{
    FILE *f = file;
    if (!t->fwd_s || !t->bwd_s)
        return;
    double tf = 0, tb = 0;
    for (int i = 0; i < t->g->n; i++) {
        tf += t->fwd_s[i];
        tb += t->bwd_s[i];
    }
    fprintf(f, "%-20s %-15s %10s %10s\n", "layer", "op", "forward s", "backward s");
    for (int i = 0; i < t->g->n; i++)
        fprintf(f, "%-20s %-15s %10.3f %10.3f\n", t->g->nodes[i].name, kiln_op_name(t->g->nodes[i].op),
                t->fwd_s[i], t->bwd_s[i]);
    fprintf(f, "%-20s %-15s %10.3f %10.3f\n", "total", "", tf, tb);
}
