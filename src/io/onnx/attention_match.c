/* Recognising attention written out in ops (attention_match.h). Shapes are per example. */
#include <math.h>
#include "core/op_table.h"
#include "io/onnx/attention_match.h"

/* The scalar value of f32 const node id, or NAN if it is not one. */
static float scalar_const(const kiln_graph_t *g, int id)
{
    const kiln_node *c = &g->nodes[id];
    return c->op == KILN_OP_CONST && c->dtype == KILN_DT_F32 && c->numel == 1 ? kiln_node_tensor(g, c, 0)[0] : NAN;
}

/* Whether node id is transpose(perm) of reshape (t, h, d) of a (t, h * d) node; the source and
 * the split into *src, *h and *d. */
static bool heads_of(const kiln_graph_t *g, int id, int p0, int p1, int p2, int *src, int *h, int *d)
{
    const kiln_node *t = &g->nodes[id];
    if (t->op != KILN_OP_TRANSPOSE || t->rank != 3 || t->a.perm[0] != p0 || t->a.perm[1] != p1 || t->a.perm[2] != p2)
        return false;
    const kiln_node *r = &g->nodes[t->inputs[0]];
    if (r->op != KILN_OP_RESHAPE || r->rank != 3)
        return false;
    const kiln_node *x = &g->nodes[r->inputs[0]];
    if (x->rank != 2 || x->dims[0] != r->dims[0] || x->dims[1] != r->dims[1] * r->dims[2])
        return false;
    *src = r->inputs[0];
    *h = r->dims[1];
    *d = r->dims[2];
    return true;
}

/* Strips a multiplication by a scalar constant off node *id, multiplying *scale by it. */
static void strip_scale(const kiln_graph_t *g, int *id, double *scale)
{
    const kiln_node *n = &g->nodes[*id];
    if ((n->op == KILN_OP_MUL || n->op == KILN_OP_DIV) && n->n_inputs == 2) {
        float c = scalar_const(g, n->inputs[1]);
        if (isfinite(c) && c != 0.0f) {
            *scale *= n->op == KILN_OP_MUL ? c : 1.0 / c;
            *id = n->inputs[0];
        }
    }
}

/* Whether const node id is a causal mask over (t, t) scores: 0 on and below the diagonal, at
 * most -1e4 above it. */
static bool causal_mask(const kiln_graph_t *g, int id, int t)
{
    const kiln_node *c = &g->nodes[id];
    if (c->op != KILN_OP_CONST || c->dtype != KILN_DT_F32 || c->numel != (size_t)t * t || c->rank < 2 ||
        c->dims[c->rank - 1] != t || c->dims[c->rank - 2] != t)
        return false;
    const float *v = kiln_node_tensor(g, c, 0);
    for (int i = 0; i < t; i++)
        for (int j = 0; j < t; j++)
            if (j <= i ? v[i * t + j] != 0.0f : !(v[i * t + j] <= -1e4f))
                return false;
    return true;
}

/* Whether q, k and v are slices [0, w), [w, 2w), [2w, 3w) of one (t, 3w) node: *packed is it. */
static bool packed_of(const kiln_graph_t *g, int q, int k, int v, int *packed)
{
    const int ids[3] = {q, k, v};
    int src = -1;
    for (int j = 0; j < 3; j++) {
        const kiln_node *s = &g->nodes[ids[j]];
        if (s->op != KILN_OP_SLICE || (s->a.axis != 1 && s->a.axis != -1) || (s->a.step != 1 && s->a.step != 0))
            return false;
        const kiln_node *x = &g->nodes[s->inputs[0]];
        int w = s->dims[1];
        if ((src >= 0 && s->inputs[0] != src) || x->rank != 2 || x->dims[1] != 3 * w || s->a.start != j * w)
            return false;
        src = s->inputs[0];
    }
    *packed = src;
    return true;
}

bool kiln_attention_match_find(const kiln_graph_t *g, int p, int vt, kiln_attention_match *m)
{
    int v, h, d, q, k, hq, dq, hk, dk;
    double scale = 1.0;
    const kiln_node *sm = &g->nodes[p];
    if (!heads_of(g, vt, 1, 0, 2, &v, &h, &d) || sm->op != KILN_OP_SOFTMAX || sm->rank != 3 ||
        (sm->a.axis != 2 && sm->a.axis != -1))
        return false;
    int s = sm->inputs[0];
    bool causal = false;
    const kiln_node *add = &g->nodes[s];
    if (add->op == KILN_OP_ADD && add->n_inputs == 2 && causal_mask(g, add->inputs[1], add->dims[2])) {
        causal = true;
        s = add->inputs[0];
    }
    strip_scale(g, &s, &scale);
    const kiln_node *mm = &g->nodes[s];
    if (mm->op != KILN_OP_MATMUL || mm->a.act != KILN_OP_INPUT)
        return false;
    int qt = mm->inputs[0], kt = mm->inputs[1];
    strip_scale(g, &qt, &scale);
    strip_scale(g, &kt, &scale);
    if (!heads_of(g, qt, 1, 0, 2, &q, &hq, &dq) || !heads_of(g, kt, 1, 2, 0, &k, &hk, &dk) || hq != h || hk != h ||
        dq != d || dk != d)
        return false;
    if (fabs(scale * sqrt((double)d) - 1.0) > 1e-5)
        return false;
    int packed;
    *m = (kiln_attention_match){.q = q, .k = k, .v = v, .heads = h, .causal = causal};
    if (packed_of(g, q, k, v, &packed))
        *m = (kiln_attention_match){.q = packed, .k = -1, .v = -1, .heads = h, .causal = causal};
    return true;
}
