/* Backward of layer norm and RMS norm over the last axis, and of softmax and log-softmax over
 * any axis. */
#include <math.h>
#include <string.h>
#include "train/backward.h"

void kiln_norm_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* In the forward pass this was y = xhat * w + b with xhat = (x - mean) * rstd (rmsnorm: mean
     * 0, no b). So dw = sum over rows of dy * xhat, db = sum of dy, and with dn = dy * w:
     * dx = rstd * (dn - mean(dn) - xhat * mean(dn * xhat))   (rmsnorm: without mean(dn)). */
    int d = nd->dims[nd->rank - 1];
    size_t rows = nd->numel / (size_t)d * (size_t)a->batch;
    bool layer = nd->op == KILN_OP_LAYERNORM;
    const float *w = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    float *db = layer ? a->dparams + nd->params[1].offset : NULL;
    memset(dw, 0, (size_t)d * sizeof(float));
    if (db)
        memset(db, 0, (size_t)d * sizeof(float));
    for (size_t r = 0; r < rows; r++) {
        const float *x = a->in[0] + r * d, *dy = a->dy + r * d;
        float mean = layer ? a->save[2 * r] : 0.0f, rstd = layer ? a->save[2 * r + 1] : a->save[r];
        float mdn = 0.0f, mdnx = 0.0f;
        for (int i = 0; i < d; i++) {
            float xh = (x[i] - mean) * rstd, dn = dy[i] * w[i];
            mdn += dn;
            mdnx += dn * xh;
            dw[i] += dy[i] * xh;
            if (db)
                db[i] += dy[i];
        }
        mdn = layer ? mdn / (float)d : 0.0f;
        mdnx /= (float)d;
        if (!a->dx[0])
            continue;
        float *dx = a->dx[0] + r * d;
        for (int i = 0; i < d; i++) {
            float xh = (x[i] - mean) * rstd;
            float v = rstd * (dy[i] * w[i] - mdn - xh * mdnx);
            dx[i] = a->acc[0] ? dx[i] + v : v;
        }
    }
}

void kiln_softmax_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy) */
    if (!a->dx[0])
        return;
    size_t outer, p;
    int c;
    kiln_axis_split(nd, nd->a.axis, &outer, &c, &p);
    bool log_out = nd->op == KILN_OP_LOG_SOFTMAX;
    for (size_t r = 0; r < outer * (size_t)a->batch; r++) {
        const float *y = a->out + r * c * p, *dy = a->dy + r * c * p;
        float *dx = a->dx[0] + r * c * p;
        for (size_t s = 0; s < p; s++) {
            float dot = 0.0f;
            for (int k = 0; k < c; k++)
                dot += log_out ? dy[k * p + s] : dy[k * p + s] * y[k * p + s];
            for (int k = 0; k < c; k++) {
                float v = log_out ? dy[k * p + s] - expf(y[k * p + s]) * dot : y[k * p + s] * (dy[k * p + s] - dot);
                dx[k * p + s] = a->acc[0] ? dx[k * p + s] + v : v;
            }
        }
    }
}
