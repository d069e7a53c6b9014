/* Backward of layer norm and RMS norm over the last axis, and of softmax and log-softmax over
 * any axis. */
#include <math.h>
#include <string.h>
#include "train/backward.h"

size_t kiln_norm_backward_work_floats(const kiln_node *nd, int threads)
{
    return (size_t)threads * 2 * (size_t)nd->dims[nd->rank - 1];
}

void kiln_norm_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* In the forward pass this was y = xhat * w + b with xhat = (x - mean) * rstd (rmsnorm: mean
     * 0, no b). So dw = sum over rows of dy * xhat, db = sum of dy, and with dn = dy * w:
     * dx = rstd * (dn - mean(dn) - xhat * mean(dn * xhat))   (rmsnorm: without mean(dn)).
     * Rows are split over the threads; each sums its dw and db in its part of the work space. */
    int d = nd->dims[nd->rank - 1];
    size_t rows = nd->numel / (size_t)d * (size_t)a->batch;
    bool layer = nd->op == KILN_OP_LAYERNORM;
    const float *w = kiln_node_tensor(g, nd, 0);
    float *dw = a->dparams + nd->params[0].offset;
    float *db = layer ? a->dparams + nd->params[1].offset : NULL;
    int nt = rows * (size_t)d > 65536 ? a->threads : 1;
    #pragma omp parallel num_threads(nt)
    {
        int tid = kiln_thread_id(), n_thr = omp_get_num_threads();
        float *pw = a->work + (size_t)tid * 2 * d, *pb = pw + d;
        for (int i = 0; i < 2 * d; i++)
            pw[i] = 0.0f;
        size_t per = (rows + (size_t)n_thr - 1) / (size_t)n_thr, r0 = (size_t)tid * per;
        size_t r1 = r0 + per < rows ? r0 + per : rows;
        for (size_t r = r0; r < r1; r++) {
            const float *x = a->in[0] + r * d, *dy = a->dy + r * d;
            float mean = layer ? a->save[2 * r] : 0.0f, rstd = layer ? a->save[2 * r + 1] : a->save[r];
            float mdn = 0.0f, mdnx = 0.0f;
            #pragma omp simd reduction(+ : mdn, mdnx)
            for (int i = 0; i < d; i++) {
                float xh = (x[i] - mean) * rstd, dn = dy[i] * w[i];
                mdn += dn;
                mdnx += dn * xh;
                pw[i] += dy[i] * xh;
                pb[i] += dy[i];
            }
            mdn = layer ? mdn / (float)d : 0.0f;
            mdnx /= (float)d;
            if (!a->dx[0])
                continue;
            float *dx = a->dx[0] + r * d;
            bool acc = a->acc[0];
            #pragma omp simd
            for (int i = 0; i < d; i++) {
                float xh = (x[i] - mean) * rstd;
                float v = rstd * (dy[i] * w[i] - mdn - xh * mdnx);
                dx[i] = acc ? dx[i] + v : v;
            }
        }
    }
    for (int i = 0; i < d; i++) {   /* the threads' sums, in thread order */
        float sw = 0.0f, sb = 0.0f;
        for (int t = 0; t < nt; t++) {
            sw += a->work[(size_t)t * 2 * d + i];
            sb += a->work[(size_t)t * 2 * d + d + i];
        }
        dw[i] = sw;
        if (db)
            db[i] = sb;
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
