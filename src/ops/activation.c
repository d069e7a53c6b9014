/* Elementwise activations and softmax forward. */
#include <math.h>
#include "ops/ops.h"

void kiln_activation_forward(kiln_op op, float alpha, const float *x, float *y, size_t n)
{
    switch (op) {
    case KILN_OP_RELU:
        if (n > 65536) {   /* a parallel region costs microseconds: only for large tensors */
            #pragma omp parallel for simd schedule(static)
            for (size_t i = 0; i < n; i++)
                y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        } else {
            for (size_t i = 0; i < n; i++)
                y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        }
        break;
    case KILN_OP_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case KILN_OP_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case KILN_OP_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case KILN_OP_GELU:
        /* exact form, as PyTorch's default: x * Phi(x) */
        for (size_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    default:
        break;
    }
}

void kiln_softmax_forward(const kiln_node *nd, const float *x, int batch, float *y)
{
    int c = nd->dims[0];
    size_t p = (size_t)nd->dims[1] * nd->dims[2];
    for (int b = 0; b < batch; b++) {
        const float *xb = x + (size_t)b * c * p;
        float *yb = y + (size_t)b * c * p;
        for (size_t s = 0; s < p; s++) {
            float m = xb[s];
            for (int k = 1; k < c; k++)
                m = fmaxf(m, xb[k * p + s]);
            float sum = 0.0f;
            for (int k = 0; k < c; k++) {
                yb[k * p + s] = expf(xb[k * p + s] - m);
                sum += yb[k * p + s];
            }
            float inv = 1.0f / sum;
            for (int k = 0; k < c; k++)
                yb[k * p + s] *= inv;
        }
    }
}
