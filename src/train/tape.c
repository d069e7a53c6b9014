/* Reverse-mode autodiff tape: forward keeps every activation and saved state; backward walks the
 * nodes in reverse, each consumer adding into its inputs' gradients. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "kiln/kiln_train.h"
#include "train/backward.h"

struct kiln_tape {
    kiln_graph_t *g;
    int max_batch, batch;
    float **act, **grad, **save;   /* per node */
    int32_t **argmax;              /* per maxpool node */
    bool *needs_grad;              /* per node: some parameter or the input depends on it */
    float *work;                   /* shared temporary */
    float *dparams;
    kiln_rng rng;
    size_t bytes_per_example;
};

void kiln_tape_free(kiln_tape_t *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->g->n; i++) {
        if (i > 0 && t->act)
            free(t->act[i]);
        if (t->grad)
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
    free(t->work);
    free(t->dparams);
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
    size_t n = (size_t)g->n, work = 1;
    if (!t || !(t->act = calloc(n, sizeof(float *))) || !(t->grad = calloc(n, sizeof(float *))) ||
        !(t->save = calloc(n, sizeof(float *))) || !(t->argmax = calloc(n, sizeof(int32_t *))) ||
        !(t->needs_grad = calloc(n, sizeof(bool))))
        goto nomem;
    t->g = g;
    t->max_batch = max_batch;
    kiln_rng_seed(&t->rng, seed);
    t->needs_grad[0] = input_grad;
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        bool ng = nd->n_params > 0;
        for (int j = 0; j < nd->n_inputs; j++)
            ng = ng || t->needs_grad[nd->inputs[j]];
        t->needs_grad[i] = ng;
    }
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        size_t numel = nd->numel * (size_t)max_batch;
        size_t save = kiln_node_save_floats(g, i, max_batch);
        if ((i > 0 && !(t->act[i] = alloc_floats(numel))) ||
            (t->needs_grad[i] && !(t->grad[i] = alloc_floats(numel))) ||
            (save && !(t->save[i] = alloc_floats(save))))
            goto nomem;
        if (nd->op == KILN_OP_MAXPOOL2D && !(t->argmax[i] = malloc(numel * sizeof(int32_t))))
            goto nomem;
        size_t w = kiln_node_work_floats(g, i, max_batch), wb = kiln_node_backward_work_floats(g, i, max_batch);
        work = w > work ? w : work;
        work = wb > work ? wb : work;
        t->bytes_per_example += (i > 0 ? nd->numel * sizeof(float) : 0) + save / (size_t)max_batch * sizeof(float) +
                                (nd->op == KILN_OP_MAXPOOL2D ? nd->numel * sizeof(int32_t) : 0);
    }
    if (!(t->work = alloc_floats(work)) || !(t->dparams = alloc_floats(g->n_params ? g->n_params : 1)))
        goto nomem;
    memset(t->dparams, 0, (g->n_params ? g->n_params : 1) * sizeof(float));
    return t;
nomem:
    kiln_tape_free(t);
    kiln_error(KILN_ERR_NOMEM, "out of memory for a batch-%d training tape", max_batch);
    return NULL;
}

const float *kiln_tape_forward(kiln_tape_t *t, const float *x, int batch, bool training)
{
    const kiln_graph_t *g = t->g;
    if (batch < 1 || batch > t->max_batch) {
        kiln_error(KILN_ERR_ARG, "batch %d outside 1..%d", batch, t->max_batch);
        return NULL;
    }
    t->batch = batch;
    t->act[0] = (float *)x;
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        kiln_fwd_args a = {.batch = batch, .training = training, .out = t->act[i], .work = t->work,
                           .save = t->save[i], .argmax = t->argmax[i], .rng = &t->rng};
        for (int j = 0; j < nd->n_inputs; j++)
            a.in[j] = t->act[nd->inputs[j]];
        kiln_node_forward(g, i, &a);
    }
    return t->act[g->n - 1];
}

void kiln_tape_backward(kiln_tape_t *t, const float *dout)
{
    const kiln_graph_t *g = t->g;
    int last = g->n - 1;
    bool written[g->n];
    memset(written, 0, sizeof written);
    memcpy(t->grad[last], dout, g->nodes[last].numel * (size_t)t->batch * sizeof(float));
    written[last] = true;
    for (int i = last; i > 0; i--) {
        const kiln_node *nd = &g->nodes[i];
        if (!t->needs_grad[i])
            continue;
        kiln_bwd_args a = {.batch = t->batch, .out = t->act[i], .dy = t->grad[i], .dparams = t->dparams,
                           .save = t->save[i], .argmax = t->argmax[i], .work = t->work};
        if (!written[i]) {   /* an unused branch: its gradient is zero */
            memset(t->grad[i], 0, nd->numel * (size_t)t->batch * sizeof(float));
            written[i] = true;
        }
        for (int j = 0; j < nd->n_inputs; j++) {
            int src = nd->inputs[j];
            a.in[j] = t->act[src];
            a.dx[j] = t->needs_grad[src] ? t->grad[src] : NULL;
            a.acc[j] = written[src];
            for (int k = 0; k < j; k++)   /* the same input twice: the second adds */
                if (nd->inputs[k] == src)
                    a.acc[j] = a.dx[j] != NULL;
        }
        kiln_node_backward(g, i, &a);
        for (int j = 0; j < nd->n_inputs; j++)
            if (a.dx[j])
                written[nd->inputs[j]] = true;
    }
    t->act[0] = NULL;
}

float *kiln_tape_param_grads(kiln_tape_t *t) { return t->dparams; }
const float *kiln_tape_input_grad(const kiln_tape_t *t) { return t->grad[0]; }
size_t kiln_tape_bytes_per_example(const kiln_tape_t *t) { return t->bytes_per_example; }
uint64_t *kiln_tape_rng_state(kiln_tape_t *t) { return t->rng.s; }
