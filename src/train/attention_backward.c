/* Backward of multi-head scaled dot-product attention from the saved probabilities, one
 * (example, head) per task, by the register-blocked row kernels of the forward pass (small
 * heads: no GEMM call overhead). */
#include <math.h>
#include <string.h>
#include "train/backward.h"

/* Floats one task needs: V^T padded to 64 keys, dS, and the transposes of P and dS. */
static size_t task_floats(int t, int s, int dh)
{
    return (size_t)dh * ((s + 63) / 64 * 64) + 3 * (size_t)t * s;
}

size_t kiln_attention_backward_work_floats(const kiln_graph_t *g, const kiln_node *nd, int threads)
{
    const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
    return (size_t)threads * task_floats(nd->dims[0], k->dims[0], nd->dims[1] / nd->a.heads);
}

/* One head of one example. */
static void head_backward(const float *q, const float *k, const float *v, int ld, const float *p, const float *dout,
                          int ldo, float *dq, float *dk, float *dv, int ldx, const bool acc[3], int t, int s, int dh,
                          bool causal, float *work)
{
    /* In the forward pass this was: S = Q K^T c (c = 1/sqrt(dh)), P = softmax(S) by rows (masked
     * keys 0), O = P V. So: dP_ij = dO_i . V_j; dS_ij = c P_ij (dP_ij - sum_j dP_ij P_ij) (c folded
     * in); dQ_i = sum_j dS_ij K_j; dK_j = sum_i dS_ij Q_i; dV_j = sum_i P_ij dO_i. */
    float c = 1.0f / sqrtf((float)dh);
    int sp = (s + 63) / 64 * 64;
    float *vt = work, *ds = vt + (size_t)dh * sp, *pt = ds + (size_t)t * s, *dst = pt + (size_t)t * s;
    for (int e = 0; e < dh; e++) {
        for (int j = 0; j < s; j++)
            vt[(size_t)e * sp + j] = v[(size_t)j * ld + e];
        for (int j = s; j < sp; j++)
            vt[(size_t)e * sp + j] = 0.0f;
    }
    for (int i0 = 0; i0 < t; i0 += 4) {   /* four query rows at a time share each load of V or K */
        int nr = t - i0 < 4 ? t - i0 : 4, nmax = causal ? i0 + nr : s;
        float *d0 = ds + (size_t)i0 * s;
        kiln_attention_scores_rows(dout + (size_t)i0 * ldo, ldo, nr, vt, dh, sp, nmax, d0, s);
        for (int i = i0; i < i0 + nr; i++) {
            const float *pr = p + (size_t)i * s;
            float *d = ds + (size_t)i * s;
            int n = causal ? i + 1 : s;
            float dot = 0.0f;
            #pragma omp simd reduction(+ : dot)
            for (int j = 0; j < n; j++)
                dot += d[j] * pr[j];
            #pragma omp simd
            for (int j = 0; j < n; j++)
                d[j] = c * pr[j] * (d[j] - dot);
            for (int j = n; j < s; j++)
                d[j] = 0.0f;
        }
        if (dq)   /* (masked keys are 0 in dS) */
            kiln_attention_weighted_rows4(d0, s, nr, nmax, k, ld, dh, dq + (size_t)i0 * ldx, ldx, acc[0]);
    }
    for (int i = 0; i < t; i++)   /* P^T and dS^T: the sums over queries as contiguous rows */
        for (int j = 0; j < s; j++) {
            pt[(size_t)j * t + i] = p[(size_t)i * s + j];
            dst[(size_t)j * t + i] = ds[(size_t)i * s + j];
        }
    for (int j = 0; j < s; j += 4) {   /* four keys at a time share each load of Q or dO */
        int nr = s - j < 4 ? s - j : 4, i0 = causal ? j : 0;   /* queries before key j never saw it */
        if (dk)   /* (dS^T and P^T are 0 where a query did not see a key) */
            kiln_attention_weighted_rows4(dst + (size_t)j * t + i0, t, nr, t - i0, q + (size_t)i0 * ld, ld, dh,
                                          dk + (size_t)j * ldx, ldx, acc[1]);
        if (dv)   /* after dk: when k and v are one tensor, acc[2] says to add to what dk wrote */
            kiln_attention_weighted_rows4(pt + (size_t)j * t + i0, t, nr, t - i0, dout + (size_t)i0 * ldo, ldo, dh,
                                          dv + (size_t)j * ldx, ldx, acc[2]);
    }
}

void kiln_attention_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    bool packed = nd->n_inputs == 1;
    const kiln_node *qn = &g->nodes[nd->inputs[0]];
    int t = nd->dims[0], width = nd->dims[1], heads = nd->a.heads, dh = width / heads;
    int s = packed ? t : g->nodes[nd->inputs[1]].dims[0];
    int ld = packed ? 3 * width : width;
    size_t kv = (size_t)s * width, per = task_floats(t, s, dh);
    /* each task writes its head's columns of its example only */
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
