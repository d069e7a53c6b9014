/* Backward of multi-head scaled dot-product attention from the saved probabilities, one
 * (example, head) per task, by direct loops (small heads: no GEMM call overhead). */
#include <math.h>
#include <string.h>
#include "train/backward.h"

size_t kiln_attention_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads)
{
    const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
    int dh = nd->dims[1] / nd->a.heads;
    return (size_t)threads * ((size_t)dh + 1) * k->dims[0];
}

/* Zeroes rows x cols of a matrix with row stride ld (unless acc: then it is added to). */
static void clear(float *m, int rows, int cols, int ld, bool acc)
{
    for (int r = 0; m && !acc && r < rows; r++)
        memset(m + (size_t)r * ld, 0, (size_t)cols * sizeof(float));
}

/* One head of one example. */
static void head_backward(const float *q, const float *k, const float *v, int ld, const float *p, const float *dout,
                          int ldo, float *dq, float *dk, float *dv, int ldx, const bool acc[3], int t, int s, int dh,
                          bool causal, float *work)
{
    /* In the forward pass this was: S = Q K^T c (c = 1/sqrt(dh)), P = softmax(S) by rows (masked
     * keys 0), O = P V. So row by row: dP_ij = dO_i . V_j; dS_ij = P_ij (dP_ij - sum_j dP_ij P_ij);
     * dQ_i = c sum_j dS_ij K_j; dK_j += c dS_ij Q_i; dV_j += P_ij dO_i. */
    float c = 1.0f / sqrtf((float)dh), *vt = work, *ds = work + (size_t)dh * s;
    for (int j = 0; j < s; j++)
        for (int e = 0; e < dh; e++)
            vt[(size_t)e * s + j] = v[(size_t)j * ld + e];
    clear(dk, s, dh, ldx, acc[1]);
    clear(dv, s, dh, ldx, acc[2]);
    for (int i = 0; i < t; i++) {
        const float *pr = p + (size_t)i * s, *doi = dout + (size_t)i * ldo, *qi = q + (size_t)i * ld;
        int n = causal ? i + 1 : s;
        for (int j = 0; j < n; j++)
            ds[j] = 0.0f;
        for (int e = 0; e < dh; e++) {
            float g = doi[e];
            const float *vr = vt + (size_t)e * s;
            #pragma omp simd
            for (int j = 0; j < n; j++)
                ds[j] += g * vr[j];
        }
        float dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (int j = 0; j < n; j++)
            dot += ds[j] * pr[j];
        for (int j = 0; j < n; j++)
            ds[j] = pr[j] * (ds[j] - dot) * c;
        if (dq) {
            float *d = dq + (size_t)i * ldx;
            if (!acc[0])
                for (int e = 0; e < dh; e++)
                    d[e] = 0.0f;
            for (int j = 0; j < n; j++) {
                const float *kj = k + (size_t)j * ld;
                float w = ds[j];
                #pragma omp simd
                for (int e = 0; e < dh; e++)
                    d[e] += w * kj[e];
            }
        }
        for (int j = 0; j < n; j++) {
            if (dk) {
                float *d = dk + (size_t)j * ldx, w = ds[j];
                #pragma omp simd
                for (int e = 0; e < dh; e++)
                    d[e] += w * qi[e];
            }
            if (dv) {
                float *d = dv + (size_t)j * ldx, w = pr[j];
                #pragma omp simd
                for (int e = 0; e < dh; e++)
                    d[e] += w * doi[e];
            }
        }
    }
}

void kiln_attention_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    bool packed = nd->n_inputs == 1;
    const kiln_node *qn = &g->nodes[nd->inputs[0]];
    int t = nd->dims[0], width = nd->dims[1], heads = nd->a.heads, dh = width / heads;
    int s = packed ? t : g->nodes[nd->inputs[1]].dims[0];
    int ld = packed ? 3 * width : width;
    size_t kv = (size_t)s * width, per = ((size_t)dh + 1) * s;
    /* each task writes its head's columns of its example only; when k and v are one tensor
     * (q, kv, kv) dk clears (or not, per acc) first and dv adds to it */
    int tasks = a->batch * heads;
    #pragma omp parallel for schedule(static) num_threads(a->threads)
    for (int task = 0; task < tasks; task++) {
        int b = task / heads, h = task % heads, c = h * dh;
        const float *q, *k, *v;
        float *dq, *dk, *dv;
        bool acc[3];
        if (packed) {
            q = a->in[0] + (size_t)b * qn->numel + c;
            k = q + width;
            v = q + 2 * width;
            dq = a->dx[0] ? a->dx[0] + (size_t)b * qn->numel + c : NULL;
            dk = dq ? dq + width : NULL;
            dv = dq ? dq + 2 * width : NULL;
            acc[0] = acc[1] = acc[2] = a->acc[0];
        } else {
            q = a->in[0] + (size_t)b * qn->numel + c;
            k = a->in[1] + (size_t)b * kv + c;
            v = a->in[2] + (size_t)b * kv + c;
            dq = a->dx[0] ? a->dx[0] + (size_t)b * qn->numel + c : NULL;
            dk = a->dx[1] ? a->dx[1] + (size_t)b * kv + c : NULL;
            dv = a->dx[2] ? a->dx[2] + (size_t)b * kv + c : NULL;
            acc[0] = a->acc[0];
            acc[1] = a->acc[1];
            acc[2] = a->acc[2];
        }
        head_backward(q, k, v, ld, a->save + (size_t)task * t * s, a->dy + (size_t)b * nd->numel + c, width, dq, dk, dv,
                      ld, acc, t, s, dh, nd->a.causal, a->work + (size_t)kiln_thread_id() * per);
    }
}
