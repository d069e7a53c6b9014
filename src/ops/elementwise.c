/* Forward of the elementwise math ops (sqrt, exp, log, abs, neg, reciprocal, floor, ceil, round,
 * erf, clip): libm's results, so an imported model's decomposed GELU or norm matches its source. */
#include <math.h>
#include "ops/ops.h"

float kiln_unary_value(kiln_op op, const kiln_attrs *a, float x)
{
    switch (op) {
    case KILN_OP_SQRT: return sqrtf(x);
    case KILN_OP_EXP: return expf(x);
    case KILN_OP_LOG: return logf(x);
    case KILN_OP_ABS: return fabsf(x);
    case KILN_OP_NEG: return -x;
    case KILN_OP_RECIPROCAL: return 1.0f / x;
    case KILN_OP_FLOOR: return floorf(x);
    case KILN_OP_CEIL: return ceilf(x);
    case KILN_OP_ROUND: return nearbyintf(x);   /* the default rounding mode: halves to even */
    case KILN_OP_ERF: return erff(x);
    case KILN_OP_CLIP: return x < a->lo ? a->lo : x > a->hi ? a->hi : x;   /* NaN stays NaN */
    default: return x;
    }
}

void kiln_unary_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    (void)g;
    size_t n = nd->numel * (size_t)a->batch;
    const float *x = a->in[0];
    float *y = a->out;
    switch (nd->op) {   /* the cheap ones as plain loops the compiler vectorises */
    case KILN_OP_SQRT:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        return;
    case KILN_OP_NEG:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = -x[i];
        return;
    case KILN_OP_RECIPROCAL:
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / x[i];
        return;
    case KILN_OP_CLIP: {
        float lo = nd->a.lo, hi = nd->a.hi;
        #pragma omp simd
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        return;
    }
    default:
        for (size_t i = 0; i < n; i++)
            y[i] = kiln_unary_value(nd->op, &nd->a, x[i]);
    }
}
