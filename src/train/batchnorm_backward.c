/* Batchnorm backward through batch statistics. */
#include "train/backward.h"

void kiln_batchnorm_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    int c = nd->dims[0], batch = a->batch;
    size_t p = (size_t)nd->dims[1] * nd->dims[2];
    double count = (double)batch * p;
    const float *gamma = kiln_node_tensor(g, nd, 0), *mean = a->save, *invstd = a->save + c;
    float *dgamma = a->dparams + nd->params[0].offset, *dbeta = a->dparams + nd->params[1].offset;
    #pragma omp parallel for schedule(static) if (count * c > 32768)
    for (int k = 0; k < c; k++) {
        double sdy = 0, sdyx = 0;
        for (int b = 0; b < batch; b++) {
            const float *x = a->in[0] + ((size_t)b * c + k) * p, *dy = a->dy + ((size_t)b * c + k) * p;
            for (size_t i = 0; i < p; i++) {
                sdy += dy[i];
                sdyx += (double)dy[i] * (x[i] - mean[k]);
            }
        }
        dbeta[k] = (float)sdy;
        dgamma[k] = (float)(sdyx * invstd[k]);
        if (!a->dx[0])
            continue;
        float is = invstd[k], scale = gamma[k] * is;
        float mdy = (float)(sdy / count), mdyx = (float)(sdyx * is * is / count);
        for (int b = 0; b < batch; b++) {
            const float *x = a->in[0] + ((size_t)b * c + k) * p, *dy = a->dy + ((size_t)b * c + k) * p;
            float *dx = a->dx[0] + ((size_t)b * c + k) * p;
            for (size_t i = 0; i < p; i++) {
                float v = scale * (dy[i] - mdy - (x[i] - mean[k]) * mdyx);
                dx[i] = a->acc[0] ? dx[i] + v : v;
            }
        }
    }
}
