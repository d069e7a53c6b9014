/* Batch normalisation forward: batch statistics in training, running statistics in eval. */
#include <math.h>
#include "ops/ops.h"

void kiln_batchnorm_forward(const kiln_graph_t *g, const kiln_node *nd, const float *x, int batch,
                            float *y, bool training, float *save)
{
    int c = nd->dims[0];
    size_t p = (size_t)nd->dims[1] * nd->dims[2];
    const float *gamma = kiln_node_tensor(g, nd, 0), *beta = kiln_node_tensor(g, nd, 1);
    float *rmean = kiln_node_tensor(g, nd, 2), *rvar = kiln_node_tensor(g, nd, 3);
    float mom = nd->a.momentum, eps = nd->a.eps;
    size_t count = (size_t)batch * p;
    #pragma omp parallel for schedule(static) if (count * c > 32768)
    for (int k = 0; k < c; k++) {
        float mean, invstd;
        if (training) {
            double s = 0, ss = 0;
            for (int b = 0; b < batch; b++) {
                const float *xs = x + ((size_t)b * c + k) * p;
                for (size_t i = 0; i < p; i++)
                    s += xs[i];
            }
            double m = s / (double)count;
            for (int b = 0; b < batch; b++) {
                const float *xs = x + ((size_t)b * c + k) * p;
                for (size_t i = 0; i < p; i++)
                    ss += ((double)xs[i] - m) * ((double)xs[i] - m);
            }
            double var = ss / (double)count;
            mean = (float)m;
            invstd = (float)(1.0 / sqrt(var + eps));
            double unbiased = count > 1 ? ss / (double)(count - 1) : var;
            rmean[k] = (1.0f - mom) * rmean[k] + mom * mean;
            rvar[k] = (1.0f - mom) * rvar[k] + mom * (float)unbiased;
            save[k] = mean;
            save[c + k] = invstd;
        } else {
            mean = rmean[k];
            invstd = 1.0f / sqrtf(rvar[k] + eps);
        }
        float scale = gamma[k] * invstd, shift = beta[k] - mean * scale;
        for (int b = 0; b < batch; b++) {
            const float *xs = x + ((size_t)b * c + k) * p;
            float *ys = y + ((size_t)b * c + k) * p;
            for (size_t i = 0; i < p; i++)
                ys[i] = xs[i] * scale + shift;
        }
    }
}
