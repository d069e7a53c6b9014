/* Backward of multi-head scaled dot-product attention from the saved probabilities. */
#include <math.h>
#include "ops/gemm.h"
#include "train/backward.h"

size_t kiln_attention_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads)
{
    const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
    return (size_t)threads * nd->dims[0] * k->dims[0];
}

void kiln_attention_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* In the forward pass this was, per head: S = Q K^T / sqrt(dh), P = softmax(S) by rows (masked
     * keys 0), O = P V. So: dV = P^T dO; dP = dO V^T; dS = P * (dP - rowsum(dP * P));
     * dQ = dS K / sqrt(dh); dK = dS^T Q / sqrt(dh). */
    bool packed = nd->n_inputs == 1;
    const kiln_node *qn = &g->nodes[nd->inputs[0]];
    int t = nd->dims[0], width = nd->dims[1], heads = nd->a.heads, dh = width / heads;
    int s = packed ? t : g->nodes[nd->inputs[1]].dims[0];
    int ld = packed ? 3 * width : width;
    float scale = 1.0f / sqrtf((float)dh);
    for (int b = 0; b < a->batch; b++) {
        const float *q, *k, *v;
        float *dq, *dk, *dv;
        if (packed) {
            q = a->in[0] + (size_t)b * qn->numel;
            k = q + width;
            v = q + 2 * width;
            dq = a->dx[0] ? a->dx[0] + (size_t)b * qn->numel : NULL;
            dk = dq ? dq + width : NULL;
            dv = dq ? dq + 2 * width : NULL;
        } else {
            size_t kv = (size_t)s * width;
            q = a->in[0] + (size_t)b * qn->numel;
            k = a->in[1] + (size_t)b * kv;
            v = a->in[2] + (size_t)b * kv;
            dq = a->dx[0] ? a->dx[0] + (size_t)b * qn->numel : NULL;
            dk = a->dx[1] ? a->dx[1] + (size_t)b * kv : NULL;
            dv = a->dx[2] ? a->dx[2] + (size_t)b * kv : NULL;
        }
        float bq = a->acc[0] ? 1.0f : 0.0f;
        float bk = packed ? bq : a->acc[1] ? 1.0f : 0.0f, bv = packed ? bq : a->acc[2] ? 1.0f : 0.0f;
        const float *dout = a->dy + (size_t)b * nd->numel;
        #pragma omp parallel for schedule(static) num_threads(a->threads)
        for (int h = 0; h < heads; h++) {
            const float *p = a->save + ((size_t)b * heads + h) * t * s;
            float *dp = a->work + (size_t)kiln_thread_id() * t * s;
            int c = h * dh;
            kiln_sgemm(false, true, t, s, dh, 1.0f, dout + c, width, v + c, ld, 0.0f, dp, s);
            for (int i = 0; i < t; i++) {
                const float *pr = p + (size_t)i * s;
                float *dr = dp + (size_t)i * s, dot = 0.0f;
                for (int j = 0; j < s; j++)
                    dot += dr[j] * pr[j];
                for (int j = 0; j < s; j++)
                    dr[j] = pr[j] * (dr[j] - dot);
            }
            if (dq)
                kiln_sgemm(false, false, t, dh, s, scale, dp, s, k + c, ld, bq, dq + c, ld);
            if (dk)
                kiln_sgemm(true, false, s, dh, t, scale, dp, s, q + c, ld, bk, dk + c, ld);
            if (dv)   /* after dk: when k and v are one tensor, dv adds to what dk wrote */
                kiln_sgemm(true, false, s, dh, t, 1.0f, p, s, dout + c, width, bv, dv + c, ld);
        }
    }
}
