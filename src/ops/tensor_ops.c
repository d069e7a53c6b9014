/* Forward kernels of the shape and elementwise ops: broadcast add/sub/mul/div, concat, transpose,
 * slice, mean/sum and the embedding gather. */
#include <math.h>
#include <string.h>
#include "ops/broadcast.h"
#include "ops/ops.h"

/* out op= x broadcast to out's shape; op is the node's (add for the first input: a copy). */
static void bcast_apply(const kiln_node *out, const kiln_fwd_args *a, const kiln_node *x, int j, kiln_op op,
                        bool first)
{
    const float *src = a->in[j];
    float *dst = a->out;
    if (!first && x->numel == 1 && a->in_batch[j] <= 1 && op != KILN_OP_POW) {   /* a scalar: one pass */
        size_t n = out->numel * (size_t)a->batch;
        float c = src[0];
        switch (op) {
        case KILN_OP_SUB: c = -c; /* fall through */
        case KILN_OP_ADD:
            #pragma omp simd
            for (size_t i = 0; i < n; i++)
                dst[i] += c;
            return;
        case KILN_OP_DIV:   /* a divide, not a multiply by 1/c: the same rounding as ONNX */
            #pragma omp simd
            for (size_t i = 0; i < n; i++)
                dst[i] /= c;
            return;
        case KILN_OP_MUL:
            #pragma omp simd
            for (size_t i = 0; i < n; i++)
                dst[i] *= c;
            return;
        default:
            break;
        }
    }
    kiln_bcast b;
    kiln_bcast_init(&b, out->rank, out->dims, (size_t)a->batch, x->rank, x->dims, (size_t)a->in_batch[j]);
    for (size_t k = 0; k < b.blocks; k++) {
        const float *s = src + kiln_bcast_offset(&b, k);
        float *d = dst + k * b.inner;
        size_t n = b.inner;
        if (first) {
            if (d != s)
                memmove(d, s, n * sizeof(float));
            continue;
        }
        switch (op) {
        case KILN_OP_SUB:
            for (size_t i = 0; i < n; i++)
                d[i] -= s[i];
            break;
        case KILN_OP_MUL:
            for (size_t i = 0; i < n; i++)
                d[i] *= s[i];
            break;
        case KILN_OP_DIV:
            for (size_t i = 0; i < n; i++)
                d[i] /= s[i];
            break;
        case KILN_OP_POW:
            for (size_t i = 0; i < n; i++)
                d[i] = s[i] == 2.0f ? d[i] * d[i] : powf(d[i], s[i]);
            break;
        case KILN_OP_MIN:   /* NaN wins, as NumPy's minimum */
            for (size_t i = 0; i < n; i++)
                d[i] = d[i] != d[i] || d[i] < s[i] ? d[i] : s[i];
            break;
        case KILN_OP_MAX:
            for (size_t i = 0; i < n; i++)
                d[i] = d[i] != d[i] || d[i] > s[i] ? d[i] : s[i];
            break;
        default:
            for (size_t i = 0; i < n; i++)
                d[i] += s[i];
        }
    }
}

void kiln_binary_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    /* input 0 first (in place when the planner put the output over it, which it does only when
     * their shapes agree), then every other input combined into it */
    for (int j = 0; j < nd->n_inputs; j++)
        bcast_apply(nd, a, &g->nodes[nd->inputs[j]], j, nd->op, j == 0);
}

void kiln_concat_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    size_t outer, inner;
    int n;
    kiln_axis_split(nd, nd->a.axis, &outer, &n, &inner);
    for (int b = 0; b < a->batch; b++) {
        float *dst = a->out + (size_t)b * nd->numel;
        for (size_t o = 0; o < outer; o++) {
            for (int j = 0; j < nd->n_inputs; j++) {
                const kiln_node *x = &g->nodes[nd->inputs[j]];
                size_t m = (size_t)x->dims[nd->a.axis] * inner;
                const float *src = a->in[j] + (a->in_batch[j] > 1 ? (size_t)b * x->numel : 0) + o * m;
                memcpy(dst, src, m * sizeof(float));
                dst += m;
            }
        }
    }
}

/* Strides of a per-example shape in C order. */
static void strides_of(const kiln_node *x, size_t *st)
{
    size_t s = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        st[i] = s;
        s *= (size_t)x->dims[i];
    }
}

void kiln_transpose_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    size_t xst[KILN_MAX_RANK], st[KILN_MAX_RANK];
    strides_of(x, xst);
    int r = nd->rank;
    for (int i = 0; i < r; i++)
        st[i] = xst[nd->a.perm[i]];   /* the input stride of output axis i */
    size_t inner = (size_t)nd->dims[r - 1], ist = st[r - 1];
    for (int b = 0; b < a->batch; b++) {
        const float *src = a->in[0] + (size_t)b * x->numel;
        float *dst = a->out + (size_t)b * nd->numel;
        int idx[KILN_MAX_RANK] = {0};
        for (size_t o = 0; o < nd->numel; o += inner) {
            size_t off = 0;
            for (int i = 0; i < r - 1; i++)
                off += (size_t)idx[i] * st[i];
            for (size_t k = 0; k < inner; k++)
                dst[o + k] = src[off + k * ist];
            for (int i = r - 2; i >= 0; i--) {   /* next output row */
                if (++idx[i] < nd->dims[i])
                    break;
                idx[i] = 0;
            }
        }
    }
}

void kiln_slice_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    size_t outer, inner;
    int n, len = x->dims[nd->a.axis];
    kiln_axis_split(nd, nd->a.axis, &outer, &n, &inner);
    for (size_t r = 0; r < outer * (size_t)a->batch; r++) {
        const float *src = a->in[0] + r * len * inner;
        float *dst = a->out + r * n * inner;
        for (int i = 0; i < n; i++)
            memcpy(dst + i * inner, src + (size_t)(nd->a.start + i * nd->a.step) * inner, inner * sizeof(float));
    }
}

size_t kiln_reduce_kept_dims(const kiln_node *nd, const kiln_node *x, int *kd)
{
    size_t count = 1;
    for (int i = 0; i < x->rank; i++) {
        bool red = nd->a.axes >> i & 1;
        kd[i] = red ? 1 : x->dims[i];
        count *= red ? (size_t)x->dims[i] : 1;
    }
    return count;
}

void kiln_reduce_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    /* the output as x's shape with reduced axes set to 1: every x element adds into one output */
    int kd[KILN_MAX_RANK];
    size_t count = kiln_reduce_kept_dims(nd, x, kd);
    kiln_bcast b;   /* from x's elements to the kept-dims output's */
    kiln_bcast_init(&b, x->rank, x->dims, (size_t)a->batch, x->rank, kd, (size_t)a->batch);
    memset(a->out, 0, nd->numel * (size_t)a->batch * sizeof(float));
    for (size_t k = 0; k < b.blocks; k++) {
        float *d = a->out + kiln_bcast_offset(&b, k);
        const float *s = a->in[0] + k * b.inner;
        for (size_t i = 0; i < b.inner; i++)
            d[i] += s[i];
    }
    if (nd->op == KILN_OP_MEAN) {
        float inv = 1.0f / (float)count;
        for (size_t i = 0; i < nd->numel * (size_t)a->batch; i++)
            a->out[i] *= inv;
    }
}

void kiln_embedding_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const int32_t *idx = (const int32_t *)a->in[0];
    const float *w = kiln_node_tensor(g, nd, 0);
    int width = nd->a.units, vocab = nd->a.vocab;
    size_t rows = nd->numel / (size_t)width * (size_t)a->batch;
    for (size_t r = 0; r < rows; r++) {
        float *dst = a->out + r * width;
        if (idx[r] < 0 || idx[r] >= vocab)   /* callers check indices first; never read outside */
            memset(dst, 0, (size_t)width * sizeof(float));
        else
            memcpy(dst, w + (size_t)idx[r] * width, (size_t)width * sizeof(float));
    }
}
