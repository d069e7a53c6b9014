/* Load-time graph optimisation for inference: batchnorm folded into the conv/dense before it,
 * dropout removed, activations fused into their producer. The result is a new graph with its own
 * (folded) parameters; flatten stays a node and the planner makes it a view. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"
#include "infer/optimize.h"


/* Folds eval-mode batchnorm (gamma, beta, mean, var, eps) into the conv/dense node p of g. */
static void fold_batchnorm(kiln_graph_t *g, kiln_node *p, const kiln_graph_t *src, const kiln_node *bn)
{
    int c = bn->dims[0];
    const float *gamma = kiln_node_tensor(src, bn, 0), *beta = kiln_node_tensor(src, bn, 1);
    const float *mean = kiln_node_tensor(src, bn, 2), *var = kiln_node_tensor(src, bn, 3);
    float *w = kiln_node_tensor(g, p, 0), *b = kiln_node_tensor(g, p, 1);
    size_t per = p->params[0].numel / (size_t)c;
    for (int k = 0; k < c; k++) {
        double scale = gamma[k] / sqrt((double)var[k] + bn->a.eps);
        for (size_t i = 0; i < per; i++)
            w[(size_t)k * per + i] = (float)(w[(size_t)k * per + i] * scale);
        b[k] = (float)((b[k] - mean[k]) * scale + beta[k]);
    }
}

void kiln_graph_optimize_weights(kiln_graph_t *g, const kiln_graph_t *src, const kiln_weight_origin *origin)
{
    for (int id = 1; id < g->n; id++) {
        kiln_node *nn = &g->nodes[id];
        if (!nn->n_params)
            continue;
        const kiln_node *nd = &src->nodes[origin[id].node];
        if (origin[id].transposed) {   /* a linear's weight (n x k) from a param (k x n) */
            const float *w = kiln_node_tensor(src, nd, 0);
            float *t = kiln_node_tensor(g, nn, 0);
            int k = nd->dims[0], n = nd->dims[1];
            for (int r = 0; r < k; r++)
                for (int c = 0; c < n; c++)
                    t[(size_t)c * k + r] = w[(size_t)r * n + c];
            continue;
        }
        for (int u = 0; u < nn->n_params; u++) {   /* tensors by name: a bias may be new */
            bool found = false;
            for (int t = 0; t < nd->n_params && !found; t++)
                if (strcmp(nd->params[t].name, nn->params[u].name) == 0) {
                    memcpy(kiln_node_tensor(g, nn, u), kiln_node_tensor(src, nd, t), nd->params[t].numel * sizeof(float));
                    found = true;
                }
            if (!found)
                memset(kiln_node_tensor(g, nn, u), 0, nn->params[u].numel * sizeof(float));
        }
        if (origin[id].batchnorm > 0)
            fold_batchnorm(g, nn, src, &src->nodes[origin[id].batchnorm]);
    }
}

kiln_op kiln_optimized_op(const kiln_graph_t *src, const kiln_node *nd)
{
    const kiln_node *in = nd->n_inputs ? &src->nodes[nd->inputs[0]] : NULL;
    if (nd->op == KILN_OP_LINEAR && in->rank == 1)
        return KILN_OP_DENSE;
    if (nd->op == KILN_OP_RESHAPE && in->rank == 3 && nd->rank == 1 && in->batched)
        return KILN_OP_FLATTEN;
    return nd->op;
}

/* Whether source node i is a matmul whose right operand is a 2-D param read by it alone (not an
 * output): a linear without bias over the left operand's last axis. */
static bool weight_matmul(const kiln_graph_t *src, int i, const int *consumers)
{
    const kiln_node *nd = &src->nodes[i];
    if (nd->op != KILN_OP_MATMUL)
        return false;
    const kiln_node *x = &src->nodes[nd->inputs[0]], *w = &src->nodes[nd->inputs[1]];
    return w->op == KILN_OP_PARAM && w->rank == 2 && consumers[nd->inputs[1]] == 1 && x->rank >= 2 &&
           nd->inputs[0] != nd->inputs[1];
}

kiln_graph_t *kiln_graph_optimize(const kiln_graph_t *src, kiln_optimize_stats *stats, kiln_weight_origin **origin_out)
{
    int n = src->n;
    /* origin[new id]: the source node whose tensors it takes and the batchnorm folded in */
    kiln_weight_origin *origin = calloc((size_t)n, sizeof *origin);
    int *map = malloc((size_t)n * sizeof(int)), *consumers = calloc((size_t)n, sizeof(int));
    /* whole[i]: node i's value is all that reads its new node so far (every node absorbed on the
     * way had a single consumer), so the new node may absorb one more */
    bool *whole = calloc((size_t)n, sizeof(bool));
    kiln_graph_t *g = kiln_graph_create();
    kiln_optimize_stats st = {0};
    if (!map || !consumers || !whole || !g || !origin) {
        kiln_error(KILN_ERR_NOMEM, "out of memory optimising the graph");
        goto fail;
    }
    int outs[KILN_MAX_OUTPUTS], n_outs = kiln_graph_outputs(src, outs);
    /* live[i]: an output depends on node i; the rest (an importer's unread nodes) is dropped */
    for (int k = 0; k < n_outs; k++)
        whole[outs[k]] = true;   /* (whole doubles as the live mark until the main pass) */
    for (int i = n - 1; i >= 0; i--)
        for (int j = 0; whole[i] && j < src->nodes[i].n_inputs; j++)
            whole[src->nodes[i].inputs[j]] = true;
    for (int i = 0; i < n; i++)
        for (int j = 0; whole[i] && j < src->nodes[i].n_inputs; j++)
            consumers[src->nodes[i].inputs[j]]++;
    for (int k = 0; k < n_outs; k++)
        consumers[outs[k]]++;   /* outputs are read by the caller */
    for (int i = 0; i < n; i++) {
        if (!whole[i] && src->nodes[i].op != KILN_OP_INPUT) {
            map[i] = -1;
            st.dead_removed++;
        }
        whole[i] = false;
    }
    for (int i = 0; i < n; i++) {
        const kiln_node *nd = &src->nodes[i];
        if (nd->op != KILN_OP_INPUT && consumers[i] == 0)
            continue;   /* dead (map[i] is -1) */
        if (nd->op == KILN_OP_INPUT) {
            if ((map[i] = kiln_graph_input_nd(g, nd->name, nd->dtype, nd->rank, nd->dims)) < 0)
                goto fail;
            whole[i] = true;
            continue;
        }
        if (nd->n_inputs == 0) {   /* a param (unless a linear made of its matmul takes it) */
            bool taken = false;
            for (int c = i + 1; c < n && !taken; c++)
                taken = src->nodes[c].n_inputs == 2 && src->nodes[c].inputs[1] == i && weight_matmul(src, c, consumers);
            if (taken) {
                map[i] = -1;
                continue;
            }
            if ((map[i] = kiln_graph_add(g, nd->op, NULL, 0, &nd->a, nd->name)) < 0)
                goto fail;
            whole[i] = true;
            origin[map[i]].node = i;
            continue;
        }
        int in0 = nd->inputs[0], p = map[in0];
        kiln_node *pn = &g->nodes[p];
        /* the producer may absorb this node only if this node is its sole consumer */
        bool sole = whole[in0] && consumers[in0] == 1 && nd->n_inputs == 1;
        whole[i] = sole;   /* for absorbed nodes; a node that makes a new node resets it below */
        if (nd->op == KILN_OP_DROPOUT) {
            map[i] = p;
            st.dropouts_removed++;
            continue;
        }
        if (nd->op == KILN_OP_BATCHNORM && sole && (pn->op == KILN_OP_CONV2D || pn->op == KILN_OP_DENSE) &&
            pn->a.act == KILN_OP_INPUT && !pn->a.no_bias) {
            origin[p].batchnorm = i;
            map[i] = p;
            st.batchnorms_folded++;
            continue;
        }
        if (kiln_op_fusable_act(nd->op) && sole && pn->a.act == KILN_OP_INPUT &&
            (pn->op == KILN_OP_CONV2D || pn->op == KILN_OP_DENSE || pn->op == KILN_OP_LINEAR ||
             pn->op == KILN_OP_BATCHNORM || pn->op == KILN_OP_ADD)) {
            pn->a.act = nd->op;
            pn->a.alpha = nd->a.alpha;
            map[i] = p;
            st.activations_fused++;
            continue;
        }
        if (weight_matmul(src, i, consumers)) {
            kiln_attrs la = nd->a;
            la.units = src->nodes[nd->inputs[1]].dims[1];
            la.no_bias = true;
            int id = kiln_graph_add(g, KILN_OP_LINEAR, &p, 1, &la, nd->name);
            if (id < 0)
                goto fail;
            map[i] = id;
            whole[i] = true;
            origin[id] = (kiln_weight_origin){.node = nd->inputs[1], .transposed = true};
            st.matmuls_to_linear++;
            continue;
        }
        kiln_attrs a = nd->a;
        int ins[KILN_MAX_INPUTS];
        for (int j = 0; j < nd->n_inputs; j++)
            ins[j] = map[nd->inputs[j]];
        kiln_op op = kiln_optimized_op(src, nd);
        /* a conv/dense about to absorb a batchnorm needs a bias to fold its shift into */
        bool gets_bn = false;
        for (int k = i + 1; k < n && (op == KILN_OP_CONV2D || op == KILN_OP_DENSE); k++)
            if (src->nodes[k].op == KILN_OP_BATCHNORM && src->nodes[k].inputs[0] == i && consumers[i] == 1)
                gets_bn = true;
        if (gets_bn)
            a.no_bias = false;
        int id = kiln_graph_add(g, op, ins, nd->n_inputs, &a, nd->name);
        if (id < 0)
            goto fail;
        map[i] = id;
        whole[i] = true;
        origin[id].node = i;
    }
    if (!src->n_outputs && map[n - 1] != g->n - 1) {
        /* the output was absorbed into an earlier node that is not last: impossible, since
         * absorbing requires a sole consumer and the output has the caller as one more */
        kiln_error(KILN_ERR_ARG, "internal: optimised output is not the last node");
        goto fail;
    }
    if (src->n_outputs) {
        for (int k = 0; k < n_outs; k++)
            outs[k] = map[outs[k]];
        if (kiln_graph_set_outputs(g, outs, n_outs) != KILN_OK)
            goto fail;
    }
    kiln_graph_optimize_weights(g, src, origin);
    if (stats)
        *stats = st;
    if (origin_out)
        *origin_out = origin;
    else
        free(origin);
    free(map);
    free(consumers);
    free(whole);
    return g;
fail:
    free(origin);
    free(map);
    free(consumers);
    free(whole);
    kiln_graph_free(g);
    return NULL;
}
