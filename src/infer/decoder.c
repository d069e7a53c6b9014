/* Incremental decoding with a KV cache: a causal sequence model (one int32 token input of T
 * positions) run one position at a time. Every op but attention works on each position alone,
 * so the decoder rebuilds the graph for a single position (a param with T rows gives the current
 * position's row), and each causal attention keeps the keys and values of the past positions
 * (T x width each) and attends from the new query over them. Nothing a training forward keeps
 * is held: per step only one position's activations, planned into one small arena. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"
#include "infer/runtime.h"
#include "ops/fastmath.h"
#include "ops/ops.h"

struct kiln_decoder {
    const kiln_model_t *m;
    kiln_graph_t *g;            /* the model's graph for one position */
    int *src;                   /* per node of g: the model graph's node */
    int context, pos;           /* T, and positions filled */
    kiln_plan plan;
    float *arena, *work, *scores;
    float **k_cache, **v_cache; /* per attention node of g, else NULL: keys transposed per head (head
                                 * size x T rounded up to 64, zero past T; the rows the score kernel
                                 * reads), values T x width */
    int out;                    /* g's output node */
};

void kiln_decoder_free(kiln_decoder_t *d)
{
    if (!d)
        return;
    for (int i = 0; d->g && i < d->g->n; i++) {
        free(d->k_cache ? d->k_cache[i] : NULL);
        free(d->v_cache ? d->v_cache[i] : NULL);
    }
    free(d->k_cache);
    free(d->v_cache);
    kiln_plan_free(&d->plan);
    free(d->arena);
    free(d->work);
    free(d->scores);
    free(d->src);
    kiln_graph_free(d->g);
    free(d);
}

/* Positions of a cache row, rounded up to the score kernel's blocks of 64. */
static int padded(int t)
{
    return (t + 63) / 64 * 64;
}

/* Adds model node nd to the one-position graph; params with T leading rows keep one row. */
static int rebuild_node(kiln_decoder_t *d, const kiln_graph_t *mg, const kiln_node *nd, const int *map)
{
    kiln_graph_t *g = d->g;
    if (nd->op == KILN_OP_INPUT) {
        int one = 1;
        return kiln_graph_input_nd(g, nd->name, nd->dtype, 1, &one);
    }
    kiln_attrs a = nd->a;
    if (nd->op == KILN_OP_PARAM && a.rank >= 1 && a.shape[0] == d->context)
        a.shape[0] = 1;
    int ins[KILN_MAX_INPUTS];
    for (int j = 0; j < nd->n_inputs; j++)
        ins[j] = map[nd->inputs[j]];
    return kiln_graph_add(g, nd->op, ins, nd->n_inputs, &a, nd->name);
}

kiln_decoder_t *kiln_decoder_create(const kiln_model_t *m)
{
    const kiln_graph_t *mg = m->g;
    int ids[2];
    if (m->q || kiln_graph_inputs(mg, ids) != 1 || mg->nodes[ids[0]].dtype != KILN_DT_I32 ||
        mg->nodes[ids[0]].rank != 1 || kiln_graph_outputs(mg, NULL) != 1) {
        kiln_error(KILN_ERR_ARG, "decoding needs an fp32 model with one int32 token input of rank 1 and one output");
        return NULL;
    }
    kiln_decoder_t *d = calloc(1, sizeof *d);
    int *map = malloc((size_t)mg->n * sizeof(int));
    if (!d || !map || !(d->g = kiln_graph_create()) || !(d->src = malloc((size_t)mg->n * sizeof(int)))) {
        free(map);
        kiln_decoder_free(d);
        kiln_error(KILN_ERR_NOMEM, "out of memory for a decoder");
        return NULL;
    }
    d->m = m;
    d->context = mg->nodes[ids[0]].dims[0];
    for (int i = 0; i < mg->n; i++) {
        const kiln_node *nd = &mg->nodes[i];
        /* every tensor computed from the tokens must have the positions as its first axis */
        bool ok = !nd->batched || (nd->rank >= 1 && nd->dims[0] == d->context);
        ok = ok && (nd->op != KILN_OP_ATTENTION || (nd->a.causal && nd->n_inputs == 1));
        ok = ok && nd->op != KILN_OP_RESHAPE && nd->op != KILN_OP_TRANSPOSE && nd->op != KILN_OP_FLATTEN &&
             !(nd->op == KILN_OP_SLICE && nd->a.axis == 0) && !(nd->op == KILN_OP_CONCAT && nd->a.axis == 0) &&
             !((nd->op == KILN_OP_MEAN || nd->op == KILN_OP_SUM) && (nd->a.axes & 1)) &&
             !((nd->op == KILN_OP_SOFTMAX || nd->op == KILN_OP_LOG_SOFTMAX) && kiln_axis(nd->a.axis, nd->rank) == 0);
        if (!ok || (map[i] = rebuild_node(d, mg, nd, map)) < 0) {
            kiln_error(KILN_ERR_ARG, "%s (%s) mixes positions: this model cannot be decoded one position at a time "
                       "(only packed causal attention may)", nd->name, kiln_op_name(nd->op));
            free(map);
            kiln_decoder_free(d);
            return NULL;
        }
        d->src[map[i]] = i;
    }
    d->out = map[kiln_graph_output(mg)];
    free(map);
    kiln_graph_t *g = d->g;
    for (int i = 0; i < g->n; i++) {   /* the model's weights, by node and tensor */
        const kiln_node *nd = &g->nodes[i], *sn = &mg->nodes[d->src[i]];
        for (int t = 0; t < nd->n_params; t++)
            memcpy(kiln_node_tensor(g, nd, t), kiln_node_tensor(mg, sn, t), nd->params[t].numel * sizeof(float));
    }
    d->k_cache = calloc((size_t)g->n, sizeof(float *));
    d->v_cache = calloc((size_t)g->n, sizeof(float *));
    size_t work = 1;
    bool ok = d->k_cache && d->v_cache && kiln_plan_create(g, 1, NULL, &d->plan) == KILN_OK;
    for (int i = 0; ok && i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        size_t w = kiln_node_work_floats(g, i, 1);
        work = w > work ? w : work;
        if (nd->op != KILN_OP_ATTENTION)
            continue;
        size_t n = (size_t)d->context * nd->dims[1], nk = (size_t)padded(d->context) * nd->dims[1];
        ok = (d->k_cache[i] = calloc(nk, sizeof(float))) && (d->v_cache[i] = malloc(n * sizeof(float)));
    }
    ok = ok && (d->arena = aligned_alloc(64, (d->plan.arena_floats + 16) * sizeof(float))) &&
         (d->work = malloc(work * sizeof(float))) && (d->scores = malloc((size_t)padded(d->context) * sizeof(float)));
    if (!ok) {
        kiln_decoder_free(d);
        kiln_error(KILN_ERR_NOMEM, "out of memory for a decoder");
        return NULL;
    }
    return d;
}

void kiln_decoder_reset(kiln_decoder_t *d) { d->pos = 0; }
int kiln_decoder_position(const kiln_decoder_t *d) { return d->pos; }
int kiln_decoder_context(const kiln_decoder_t *d) { return d->context; }

/* Appends this position's key and value to the cache and attends from its query over every
 * cached position: out = softmax(q K^T / sqrt(dh)) V per head, by the training kernels' rows. */
static void attend(kiln_decoder_t *d, int id, const float *qkv, float *out)
{
    const kiln_node *nd = &d->g->nodes[id];
    int width = nd->dims[1], heads = nd->a.heads, dh = width / heads, n = d->pos + 1, tp = padded(d->context);
    float *kc = d->k_cache[id], *vc = d->v_cache[id], *s = d->scores, q[dh];
    float scale = 1.0f / sqrtf((float)dh);
    for (int h = 0; h < heads; h++)
        for (int e = 0; e < dh; e++)
            kc[((size_t)h * dh + e) * tp + d->pos] = qkv[width + h * dh + e];
    memcpy(vc + (size_t)d->pos * width, qkv + 2 * width, (size_t)width * sizeof(float));
    for (int h = 0; h < heads; h++) {
        for (int e = 0; e < dh; e++)
            q[e] = qkv[h * dh + e] * scale;
        kiln_attention_scores_row(q, kc + (size_t)h * dh * tp, dh, tp, n, s);
        float mx = s[0], sum = 0.0f;
        for (int j = 1; j < n; j++)
            mx = s[j] > mx ? s[j] : mx;
        for (int j = 0; j < n; j++)
            sum += (s[j] = kiln_exp(s[j] - mx));
        float inv = 1.0f / sum;
        for (int j = 0; j < n; j++)
            s[j] *= inv;
        kiln_attention_weighted_rows(s, n, vc + h * dh, width, dh, out + h * dh, false);
    }
}

kiln_status kiln_decoder_step(kiln_decoder_t *d, int32_t token, float *logits)
{
    const kiln_graph_t *g = d->g, *mg = d->m->g;
    if (d->pos >= d->context)
        return kiln_error(KILN_ERR_ARG, "the context of %d positions is full: reset the decoder", d->context);
    float *at[g->n];
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_PARAM) {   /* a param of T rows gives this position's */
            const kiln_node *sn = &mg->nodes[d->src[i]];
            const float *p = kiln_node_tensor(mg, sn, 0);
            at[i] = (float *)(sn->dims[0] == d->context && sn->rank >= 1 ? p + (size_t)d->pos * nd->numel : p);
        } else if (kiln_op_is_view(nd->op)) {
            at[i] = at[nd->inputs[0]];
        } else {
            at[i] = d->arena + d->plan.offset[i];
        }
    }
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_INPUT) {
            for (int j = 0; j < g->n; j++)
                if (g->nodes[j].op == KILN_OP_EMBEDDING && g->nodes[j].inputs[0] == i &&
                    (token < 0 || token >= g->nodes[j].a.vocab))
                    return kiln_error(KILN_ERR_ARG, "token %d outside the vocabulary 0..%d", token,
                                      g->nodes[j].a.vocab - 1);
            memcpy(at[i], &token, sizeof token);
            continue;
        }
        if (nd->op == KILN_OP_PARAM || kiln_op_is_view(nd->op))
            continue;
        if (nd->op == KILN_OP_ATTENTION) {
            attend(d, i, at[nd->inputs[0]], at[i]);
            continue;
        }
        kiln_fwd_args a = {.batch = 1, .out = at[i], .work = d->work, .threads = 1};
        for (int j = 0; j < nd->n_inputs; j++) {
            a.in[j] = at[nd->inputs[j]];
            a.in_batch[j] = 1;
        }
        kiln_node_forward(g, i, &a);
    }
    memcpy(logits, at[d->out], g->nodes[d->out].numel * sizeof(float));
    d->pos++;
    return KILN_OK;
}
