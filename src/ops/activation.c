/* Elementwise activations and softmax forward. */
#include <math.h>
#include "ops/fastmath.h"
#include "ops/ops.h"

/* The activation over one span (vectorised loops; x may be y). */
static void act_span(kiln_op op, float alpha, const float *x, float *y, size_t n)
{
    switch (op) {
    case KILN_OP_RELU:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case KILN_OP_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case KILN_OP_SIGMOID:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + kiln_exp(-x[i]));
        break;
    case KILN_OP_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case KILN_OP_GELU:
        /* exact form, as PyTorch's default: x * Phi(x) */
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + kiln_erf(x[i] * 0.70710678118654752f));
        break;
    case KILN_OP_SILU:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] / (1.0f + kiln_exp(-x[i]));
        break;
    case KILN_OP_HARD_SWISH:   /* x * relu6(x + 3) / 6 (comparisons, not libm's fmaxf: they vectorise) */
        #pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float r = x[i] + 3.0f > 0.0f ? x[i] + 3.0f : 0.0f;
            y[i] = x[i] * (r < 6.0f ? r : 6.0f) * (1.0f / 6.0f);
        }
        break;
    case KILN_OP_RELU6:
        #pragma omp simd
        for (size_t i = 0; i < n; i++) {
            float r = x[i] > 0.0f ? x[i] : 0.0f;
            y[i] = r < 6.0f ? r : 6.0f;
        }
        break;
    default:
        break;
    }
}

void kiln_activation_forward(kiln_op op, float alpha, const float *x, float *y, size_t n)
{
    if (n <= 65536 || omp_get_max_threads() == 1) {   /* a parallel region costs microseconds */
        act_span(op, alpha, x, y, n);
        return;
    }
    #pragma omp parallel
    {
        size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t per = (n / nt + 15) / 16 * 16, lo = t * per < n ? t * per : n, hi = lo + per < n ? lo + per : n;
        act_span(op, alpha, x + lo, y + lo, hi - lo);
    }
}

void kiln_axis_split(const kiln_node *nd, int axis, size_t *outer, int *n, size_t *inner)
{
    int ax = axis < 0 ? axis + nd->rank : axis;
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < ax; i++)
        *outer *= (size_t)nd->dims[i];
    for (int i = ax + 1; i < nd->rank; i++)
        *inner *= (size_t)nd->dims[i];
    *n = nd->rank ? nd->dims[ax] : 1;
}

/* Softmax (or its log) over the axis at each position: rows of n values inner apart. */
void kiln_softmax_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    size_t outer, p;
    int c;
    kiln_axis_split(nd, nd->a.axis, &outer, &c, &p);
    bool log_out = nd->op == KILN_OP_LOG_SOFTMAX;
    size_t rows = outer * (size_t)a->batch;
    for (size_t r = 0; r < rows; r++) {
        const float *xb = a->in[0] + r * c * p;
        float *yb = a->out + r * c * p;
        for (size_t s = 0; s < p; s++) {
            float m = xb[s];
            for (int k = 1; k < c; k++)
                m = xb[k * p + s] > m ? xb[k * p + s] : m;
            float sum = 0.0f;
            if (log_out) {
                for (int k = 0; k < c; k++)
                    sum += kiln_exp(xb[k * p + s] - m);
                float lse = m + logf(sum);
                for (int k = 0; k < c; k++)
                    yb[k * p + s] = xb[k * p + s] - lse;
                continue;
            }
            for (int k = 0; k < c; k++) {
                yb[k * p + s] = kiln_exp(xb[k * p + s] - m);
                sum += yb[k * p + s];
            }
            float inv = 1.0f / sum;
            for (int k = 0; k < c; k++)
                yb[k * p + s] *= inv;
        }
    }
}

void kiln_activation_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    kiln_activation_forward(nd->op, nd->a.alpha, a->in[0], a->out, nd->numel * (size_t)a->batch);
}
