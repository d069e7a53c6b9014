/* Elementwise activation, softmax and dropout backward. */
#include <math.h>
#include "ops/fastmath.h"
#include "train/backward.h"

void kiln_activation_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    float *dx = a->dx[0];
    if (!dx)
        return;
    size_t n = nd->numel * (size_t)a->batch;
    const float *x = a->in[0], *y = a->out, *dy = a->dy;
    const float *mask = a->save;
    bool acc = a->acc[0];
    float alpha = nd->a.alpha;
    /* STORE writes or adds (never 0 * dx: dx may hold NaN garbage before its first write) */
#define STORE(expr) do { float v_ = (expr); dx[i] = acc ? dx[i] + v_ : v_; } while (0)
    switch (nd->op) {
    case KILN_OP_RELU:
        #pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++)
            STORE(y[i] > 0.0f ? dy[i] : 0.0f);
        break;
    case KILN_OP_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            STORE(x[i] > 0.0f ? dy[i] : alpha * dy[i]);
        break;
    case KILN_OP_SIGMOID:
        for (size_t i = 0; i < n; i++)
            STORE(dy[i] * y[i] * (1.0f - y[i]));
        break;
    case KILN_OP_TANH:
        for (size_t i = 0; i < n; i++)
            STORE(dy[i] * (1.0f - y[i] * y[i]));
        break;
    case KILN_OP_GELU:
        #pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + kiln_erf(x[i] * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * kiln_exp(-0.5f * x[i] * x[i]);
            STORE(dy[i] * (cdf + x[i] * pdf));
        }
        break;
    case KILN_OP_SILU:
        for (size_t i = 0; i < n; i++) {
            float sg = 1.0f / (1.0f + kiln_exp(-x[i]));
            STORE(dy[i] * sg * (1.0f + x[i] * (1.0f - sg)));
        }
        break;
    case KILN_OP_HARD_SWISH:   /* x (x + 3) / 6 inside [-3, 3] */
        for (size_t i = 0; i < n; i++)
            STORE(x[i] <= -3.0f ? 0.0f : x[i] >= 3.0f ? dy[i] : dy[i] * (2.0f * x[i] + 3.0f) * (1.0f / 6.0f));
        break;
    case KILN_OP_RELU6:
        for (size_t i = 0; i < n; i++)
            STORE(x[i] > 0.0f && x[i] < 6.0f ? dy[i] : 0.0f);
        break;
    case KILN_OP_DROPOUT:
        for (size_t i = 0; i < n; i++)
            STORE(alpha == 0.0f ? dy[i] : dy[i] * mask[i]);
        break;
    default:
        break;
    }
#undef STORE
}

void kiln_unary_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    (void)g;
    float *dx = a->dx[0];
    if (!dx)
        return;
    size_t n = nd->numel * (size_t)a->batch;
    const float *x = a->in[0], *y = a->out, *dy = a->dy;
    bool acc = a->acc[0];
    for (size_t i = 0; i < n; i++) {
        float d;
        switch (nd->op) {
        case KILN_OP_SQRT: d = dy[i] * 0.5f / y[i]; break;
        case KILN_OP_EXP: d = dy[i] * y[i]; break;
        case KILN_OP_LOG: d = dy[i] / x[i]; break;
        case KILN_OP_ABS: d = x[i] > 0.0f ? dy[i] : x[i] < 0.0f ? -dy[i] : 0.0f; break;
        case KILN_OP_NEG: d = -dy[i]; break;
        case KILN_OP_RECIPROCAL: d = -dy[i] * y[i] * y[i]; break;
        case KILN_OP_ERF: d = dy[i] * 1.12837916709551257f * expf(-x[i] * x[i]); break;
        case KILN_OP_CLIP: d = x[i] >= nd->a.lo && x[i] <= nd->a.hi ? dy[i] : 0.0f; break;
        default: d = 0.0f; break;   /* floor, ceil, round: flat almost everywhere */
        }
        dx[i] = acc ? dx[i] + d : d;
    }
}
