/* Backward of the shape and elementwise ops: broadcast add/sub/mul/div, concat, transpose,
 * slice, mean/sum, embedding, param, and views. A gradient flowing into a broadcast input is
 * summed over the axes it was broadcast along (the batch among them, for unbatched inputs). */
#include <math.h>
#include <string.h>
#include "ops/broadcast.h"
#include "train/backward.h"

/* The examples input j of nd holds in this pass. */
static size_t in_examples(const kiln_bwd_args *a, int j)
{
    return (size_t)a->in_batch[j];
}

/* dx (input j's gradient, written or added per a->acc[j]) += src summed onto input j's shape;
 * src has nd's shape. */
static void reduce_into(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a, int j,
                        const float *src, float sign)
{
    const kiln_node *x = &g->nodes[nd->inputs[j]];
    float *dx = a->dx[j];
    size_t n = x->numel * in_examples(a, j);
    if (n == nd->numel * (size_t)a->batch) {   /* no broadcast: one pass, no zeroing first */
        bool acc = a->acc[j];
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            dx[i] = acc ? dx[i] + sign * src[i] : sign * src[i];
        return;
    }
    if (!a->acc[j])
        memset(dx, 0, n * sizeof(float));
    kiln_bcast b;
    kiln_bcast_init(&b, nd->rank, nd->dims, (size_t)a->batch, x->rank, x->dims, in_examples(a, j));
    for (size_t k = 0; k < b.blocks; k++) {
        float *d = dx + kiln_bcast_offset(&b, k);
        const float *s = src + k * b.inner;
        for (size_t i = 0; i < b.inner; i++)
            d[i] += sign * s[i];
    }
}

/* Input j broadcast to nd's shape, into dst. */
static void expand(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a, int j, float *dst)
{
    const kiln_node *x = &g->nodes[nd->inputs[j]];
    kiln_bcast b;
    kiln_bcast_init(&b, nd->rank, nd->dims, (size_t)a->batch, x->rank, x->dims, in_examples(a, j));
    for (size_t k = 0; k < b.blocks; k++)
        memcpy(dst + k * b.inner, a->in[j] + kiln_bcast_offset(&b, k), b.inner * sizeof(float));
}

size_t kiln_binary_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int batch)
{
    bool two = nd->op == KILN_OP_POW || nd->op == KILN_OP_MIN || nd->op == KILN_OP_MAX;
    return nd->op == KILN_OP_MUL || nd->op == KILN_OP_DIV || two ? (two ? 2 : 1) * nd->numel * (size_t)batch : 0;
}

/* Input j's gradient of pow (two inputs) or min/max (any number: the first input holding the
 * result takes the gradient), through tmp (two output-sized arrays). */
static void pick_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a, int j, float *tmp)
{
    size_t n = nd->numel * (size_t)a->batch;
    float *mine = tmp, *other = tmp + n;
    expand(g, nd, a, j, mine);
    if (nd->op == KILN_OP_POW) {   /* y = u^v: du = dy v u^(v-1), dv = dy y log u */
        expand(g, nd, a, 1 - j, other);
        for (size_t i = 0; i < n; i++)
            mine[i] = j == 0 ? a->dy[i] * other[i] * powf(mine[i], other[i] - 1.0f)
                             : (a->out[i] == 0.0f ? 0.0f : a->dy[i] * a->out[i] * logf(other[i]));
    } else {
        for (size_t i = 0; i < n; i++)
            mine[i] = mine[i] == a->out[i] ? a->dy[i] : 0.0f;
        for (int k = 0; k < j; k++) {   /* an earlier input holding the result took it */
            expand(g, nd, a, k, other);
            for (size_t i = 0; i < n; i++)
                if (other[i] == a->out[i])
                    mine[i] = 0.0f;
        }
    }
    reduce_into(g, nd, a, j, mine, 1.0f);
}

void kiln_binary_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    size_t n = nd->numel * (size_t)a->batch;
    float *tmp = a->work;
    for (int j = 0; j < nd->n_inputs; j++) {
        if (!a->dx[j])
            continue;
        switch (nd->op) {
        case KILN_OP_ADD:
        case KILN_OP_SUB:
            reduce_into(g, nd, a, j, a->dy, nd->op == KILN_OP_SUB && j == 1 ? -1.0f : 1.0f);
            break;
        case KILN_OP_MUL:   /* d(a b) = b da + a db */
            expand(g, nd, a, 1 - j, tmp);
            for (size_t i = 0; i < n; i++)
                tmp[i] *= a->dy[i];
            reduce_into(g, nd, a, j, tmp, 1.0f);
            break;
        case KILN_OP_DIV:   /* y = a / b: da = dy / b, db = -dy y / b */
            expand(g, nd, a, 1, tmp);
            for (size_t i = 0; i < n; i++)
                tmp[i] = j == 0 ? a->dy[i] / tmp[i] : -a->dy[i] * a->out[i] / tmp[i];
            reduce_into(g, nd, a, j, tmp, 1.0f);
            break;
        case KILN_OP_POW: case KILN_OP_MIN: case KILN_OP_MAX:
            pick_backward(g, nd, a, j, tmp);
            break;
        default:
            break;
        }
    }
}

void kiln_concat_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    size_t outer, inner;
    int n;
    kiln_axis_split(nd, nd->a.axis, &outer, &n, &inner);
    for (int j = 0; j < nd->n_inputs; j++)
        if (a->dx[j] && !a->acc[j])
            memset(a->dx[j], 0, g->nodes[nd->inputs[j]].numel * in_examples(a, j) * sizeof(float));
    for (int b = 0; b < a->batch; b++) {
        const float *src = a->dy + (size_t)b * nd->numel;
        for (size_t o = 0; o < outer; o++) {
            for (int j = 0; j < nd->n_inputs; j++) {
                const kiln_node *x = &g->nodes[nd->inputs[j]];
                size_t m = (size_t)x->dims[nd->a.axis] * inner;
                if (a->dx[j]) {
                    float *d = a->dx[j] + (in_examples(a, j) > 1 ? (size_t)b * x->numel : 0) + o * m;
                    for (size_t i = 0; i < m; i++)
                        d[i] += src[i];
                }
                src += m;
            }
        }
    }
}

void kiln_transpose_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    size_t xst[KILN_MAX_RANK], st[KILN_MAX_RANK], s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        xst[i] = s;
        s *= (size_t)x->dims[i];
    }
    int r = nd->rank;
    for (int i = 0; i < r; i++)
        st[i] = xst[nd->a.perm[i]];
    /* by rows of the output's last axis: row element t came from input offset off + t * last */
    int len = r ? nd->dims[r - 1] : 1;
    size_t last = r ? st[r - 1] : 1;
    bool acc = a->acc[0];
    for (int b = 0; b < a->batch; b++) {
        float *dst = a->dx[0] + (size_t)b * x->numel;
        const float *src = a->dy + (size_t)b * nd->numel;
        int idx[KILN_MAX_RANK] = {0};
        for (size_t o = 0; o < nd->numel; o += (size_t)len) {
            size_t off = 0;
            for (int i = 0; i < r - 1; i++)
                off += (size_t)idx[i] * st[i];
            float *d = dst + off;
            for (int t = 0; t < len; t++)
                d[t * last] = acc ? d[t * last] + src[o + t] : src[o + t];
            for (int i = r - 2; i >= 0; i--) {
                if (++idx[i] < nd->dims[i])
                    break;
                idx[i] = 0;
            }
        }
    }
}

void kiln_slice_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    size_t outer, inner;
    int n, len = x->dims[nd->a.axis];
    kiln_axis_split(nd, nd->a.axis, &outer, &n, &inner);
    if (!a->acc[0])
        memset(a->dx[0], 0, x->numel * (size_t)a->batch * sizeof(float));
    for (size_t r = 0; r < outer * (size_t)a->batch; r++) {
        float *dst = a->dx[0] + r * len * inner;
        const float *src = a->dy + r * n * inner;
        for (int i = 0; i < n; i++) {
            float *d = dst + (size_t)(nd->a.start + i * nd->a.step) * inner;
            for (size_t k = 0; k < inner; k++)
                d[k] += src[i * inner + k];
        }
    }
}

void kiln_reduce_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    if (!a->dx[0])
        return;
    int kd[KILN_MAX_RANK];
    size_t count = kiln_reduce_kept_dims(nd, x, kd);
    float scale = nd->op == KILN_OP_MEAN ? 1.0f / (float)count : 1.0f;
    kiln_bcast b;
    kiln_bcast_init(&b, x->rank, x->dims, (size_t)a->batch, x->rank, kd, (size_t)a->batch);
    for (size_t k = 0; k < b.blocks; k++) {
        const float *s = a->dy + kiln_bcast_offset(&b, k);
        float *d = a->dx[0] + k * b.inner;
        for (size_t i = 0; i < b.inner; i++)
            d[i] = a->acc[0] ? d[i] + scale * s[i] : scale * s[i];
    }
}

void kiln_embedding_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    const int32_t *idx = (const int32_t *)a->in[0];
    float *dw = a->dparams + nd->params[0].offset;
    int width = nd->a.units;
    size_t rows = nd->numel / (size_t)width * (size_t)a->batch;
    memset(dw, 0, nd->params[0].numel * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        if (idx[r] < 0 || idx[r] >= nd->a.vocab)
            continue;
        float *d = dw + (size_t)idx[r] * width;
        const float *s = a->dy + r * width;
        for (int i = 0; i < width; i++)
            d[i] += s[i];
    }
}

void kiln_param_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    memcpy(a->dparams + nd->params[0].offset, a->dy, nd->numel * sizeof(float));
}
