/* Layer norm and RMS norm over the last axis (llm.c's layout: the training forward saves each
 * row's mean and reciprocal standard deviation for the backward). */
#include <math.h>
#include "ops/ops.h"
#include "ops/vec16.h"

size_t kiln_norm_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch)
{
    size_t rows = nd->numel / (size_t)nd->dims[nd->rank - 1] * (size_t)batch;
    return (nd->op == KILN_OP_LAYERNORM ? 2 : 1) * rows;
}

void kiln_norm_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    int d = nd->dims[nd->rank - 1];
    size_t rows = nd->numel / (size_t)d * (size_t)a->batch;
    const float *w = kiln_node_tensor(g, nd, 0);
    bool layer = nd->op == KILN_OP_LAYERNORM;
    const float *bias = layer ? kiln_node_tensor(g, nd, 1) : NULL;
    float eps = nd->a.eps;
    #pragma omp parallel for schedule(static) num_threads(a->threads) if (rows * (size_t)d > 65536)
    for (size_t r = 0; r < rows; r++) {
        const float *x = a->in[0] + r * d;
        float *y = a->out + r * d;
        /* (vector sums: lanes of partial sums, then a tree across them: ops/vec16.h) */
        float mean = layer ? kiln_row_sum(x, d) / (float)d : 0.0f, var = kiln_row_sum_dev(x, d, mean, 1);
        float rstd = 1.0f / sqrtf(var / (float)d + eps);
        if (layer) {
            #pragma omp simd
            for (int i = 0; i < d; i++)
                y[i] = (x[i] - mean) * rstd * w[i] + bias[i];
        } else {
            #pragma omp simd
            for (int i = 0; i < d; i++)
                y[i] = x[i] * rstd * w[i];
        }
        if (a->save) {
            if (layer) {
                a->save[2 * r] = mean;
                a->save[2 * r + 1] = rstd;
            } else {
                a->save[r] = rstd;
            }
        }
    }
}
