/* Multi-head scaled dot-product attention over (tokens, width) tensors, heads side by side in
 * the width. Training keeps each head's probabilities (batch, heads, queries, keys) for the
 * backward; inference never holds a whole score matrix: each thread takes a block of queries
 * and walks the keys a block at a time with an online softmax (running maximum and sum). */
#include <float.h>
#include <math.h>
#include <string.h>
#include "ops/fastmath.h"
#include "ops/ops.h"
#include "ops/vec16.h"

enum { QB = 64, KB = 64 };   /* queries and keys per inference block (K^T built once per query block) */

/* Where q, k and v of example b start, and their row strides. */
typedef struct {
    const float *q, *k, *v;
    int ldq, ldk, ldv;
    int t, s, width, heads, dh;
} attn_view;

static attn_view view_of(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a, int b)
{
    attn_view v;
    const kiln_node *q = &g->nodes[nd->inputs[0]];
    v.t = nd->dims[0];
    v.width = nd->dims[1];
    v.heads = nd->a.heads;
    v.dh = v.width / v.heads;
    if (nd->n_inputs == 1) {
        const float *base = a->in[0] + (a->in_batch[0] > 1 ? (size_t)b * q->numel : 0);
        v.q = base;
        v.k = base + v.width;
        v.v = base + 2 * v.width;
        v.ldq = v.ldk = v.ldv = 3 * v.width;
        v.s = v.t;
    } else {
        const kiln_node *k = &g->nodes[nd->inputs[1]];
        v.q = a->in[0] + (a->in_batch[0] > 1 ? (size_t)b * q->numel : 0);
        v.k = a->in[1] + (a->in_batch[1] > 1 ? (size_t)b * k->numel : 0);
        v.v = a->in[2] + (a->in_batch[2] > 1 ? (size_t)b * k->numel : 0);
        v.ldq = v.ldk = v.ldv = v.width;
        v.s = k->dims[0];
    }
    return v;
}

size_t kiln_attention_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch)
{
    const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
    return (size_t)batch * nd->a.heads * nd->dims[0] * k->dims[0];
}

size_t kiln_attention_work_floats(const kiln_graph_t *g, const kiln_node *nd, int batch, int threads)
{
    int dh = nd->dims[1] / nd->a.heads;
    size_t streamed = QB * KB + QB * (size_t)dh + 2 * QB + (size_t)dh * KB, saved = kiln_attention_head_work_floats(g, nd);
    return (size_t)threads * (streamed > saved ? streamed : saved);
}

size_t kiln_attention_head_work_floats(const kiln_graph_t *g, const kiln_node *nd)
{
    const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
    return (size_t)(nd->dims[1] / nd->a.heads) * (size_t)((k->dims[0] + 63) / 64 * 64);
}

typedef kiln_v16 v16;   /* 16 floats as one value (ops/vec16.h) */

/* Scores of R query rows (R constant after inlining: 16 accumulators for R = 4) over one block
 * of 64 keys: every K^T load serves the R rows. */
static inline __attribute__((always_inline)) void scores_block(int R, const float *q, int ldq, const float *kt, int dh,
                                                                int sp, int j0, int n, float *rows, int ldr)
{
    v16 acc[4][4];
    for (int r = 0; r < R; r++)
        for (int b = 0; b < 4; b++)
            acc[r][b] = (v16){0};
    for (int e = 0; e < dh; e++) {
        const float *kr = kt + (size_t)e * sp + j0;
        v16 k0 = *(const v16 *)kr, k1 = *(const v16 *)(kr + 16), k2 = *(const v16 *)(kr + 32), k3 = *(const v16 *)(kr + 48);
        for (int r = 0; r < R; r++) {
            float qe = q[(size_t)r * ldq + e];
            acc[r][0] += qe * k0;
            acc[r][1] += qe * k1;
            acc[r][2] += qe * k2;
            acc[r][3] += qe * k3;
        }
    }
    for (int r = 0; r < R; r++)
        for (int b = 0; b < 4; b++) {
            int jb = j0 + 16 * b, nj = n - jb < 16 ? n - jb : 16;
            float *row = rows + (size_t)r * ldr;
            if (nj == 16 || (nj > 0 && jb + 16 <= ldr))   /* (a padded row takes the whole vector) */
                *(v16 *)(row + jb) = acc[r][b];
            else
                for (int jj = 0; jj < nj; jj++)
                    row[jb + jj] = acc[r][b][jj];
        }
}

void kiln_attention_scores_rows(const float *q, int ldq, int nr, const float *kt, int dh, int sp, int n, float *rows,
                                int ldr)
{
    for (int j0 = 0; j0 < n; j0 += 64)
        switch (nr) {
        case 4: scores_block(4, q, ldq, kt, dh, sp, j0, n, rows, ldr); break;
        case 3: scores_block(3, q, ldq, kt, dh, sp, j0, n, rows, ldr); break;
        case 2: scores_block(2, q, ldq, kt, dh, sp, j0, n, rows, ldr); break;
        default: scores_block(1, q, ldq, kt, dh, sp, j0, n, rows, ldr); break;
        }
}

void kiln_attention_scores_row(const float *q, const float *kt, int dh, int sp, int n, float *row)
{
    kiln_attention_scores_rows(q, 0, 1, kt, dh, sp, n, row, 0);
}

/* R output rows' 16 columns at e0: two sums per row (even and odd keys) so that 2R chains of
 * multiply-adds are in flight; every V load serves the R rows. */
static inline __attribute__((always_inline)) void weighted_block(int R, const float *w, int ldw, int n, const float *v,
                                                                  int ldv, int e0, float *out, int ldo, bool add)
{
    v16 acc[4][2];
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = (v16){0};
    int j = 0;
    for (; j + 2 <= n; j += 2) {
        v16 v0 = *(const v16 *)(v + (size_t)j * ldv + e0), v1 = *(const v16 *)(v + (size_t)(j + 1) * ldv + e0);
        for (int r = 0; r < R; r++) {
            acc[r][0] += w[(size_t)r * ldw + j] * v0;
            acc[r][1] += w[(size_t)r * ldw + j + 1] * v1;
        }
    }
    if (j < n) {
        v16 v0 = *(const v16 *)(v + (size_t)j * ldv + e0);
        for (int r = 0; r < R; r++)
            acc[r][0] += w[(size_t)r * ldw + j] * v0;
    }
    for (int r = 0; r < R; r++) {
        v16 *o = (v16 *)(out + (size_t)r * ldo + e0), sum = acc[r][0] + acc[r][1];
        *o = add ? *o + sum : sum;
    }
}

void kiln_attention_weighted_rows4(const float *w, int ldw, int nr, int n, const float *v, int ldv, int dh, float *out,
                                   int ldo, bool add)
{
    int e0 = 0;
    for (; e0 + 16 <= dh; e0 += 16)
        switch (nr) {
        case 4: weighted_block(4, w, ldw, n, v, ldv, e0, out, ldo, add); break;
        case 3: weighted_block(3, w, ldw, n, v, ldv, e0, out, ldo, add); break;
        case 2: weighted_block(2, w, ldw, n, v, ldv, e0, out, ldo, add); break;
        default: weighted_block(1, w, ldw, n, v, ldv, e0, out, ldo, add); break;
        }
    if (e0 == dh)
        return;
    for (int r = 0; r < nr; r++) {   /* a narrow head's last part */
        float acc[16] = {0};
        int ne = dh - e0;
        const float *wr = w + (size_t)r * ldw;
        for (int j = 0; j < n; j++)
            for (int ee = 0; ee < ne; ee++)
                acc[ee] += wr[j] * v[(size_t)j * ldv + e0 + ee];
        float *o = out + (size_t)r * ldo + e0;
        for (int ee = 0; ee < ne; ee++)
            o[ee] = add ? o[ee] + acc[ee] : acc[ee];
    }
}

void kiln_attention_weighted_rows(const float *w, int n, const float *v, int ldv, int dh, float *out, bool add)
{
    kiln_attention_weighted_rows4(w, 0, 1, n, v, ldv, dh, out, 0, add);
}

/* x[j] = e^(x[j] - m) for j < n: a loop of its own, which vectorises (inside a loop that also
 * sums, GCC keeps exp scalar, with branches). */
static void exp_shifted(float *x, int n, float m)
{
    #pragma omp simd
    for (int j = 0; j < n; j++)
        x[j] = kiln_exp(x[j] - m);
}

/* row[0..n) = softmax of itself, row[n..s) = 0 (masked keys). */
static void softmax_row(float *row, int n, int s)
{
    float m = kiln_row_max(row, n, row[0]);
    exp_shifted(row, n, m);
    float inv = 1.0f / kiln_row_sum(row, n);
    #pragma omp simd
    for (int j = 0; j < n; j++)
        row[j] *= inv;
    for (int j = n; j < s; j++)
        row[j] = 0.0f;
}

void kiln_attention_head_forward(const float *q, const float *k, const float *v, int ldq, int ldk, int ldv, int t,
                                 int s, int dh, bool causal, float *kt, float *p, float *out, int ldo)
{
    float scale = 1.0f / sqrtf((float)dh);
    int sp = (s + 63) / 64 * 64;   /* K^T rows padded with zeros to whole blocks of 64 */
    for (int e = 0; e < dh; e++) {
        for (int j = 0; j < s; j++)
            kt[(size_t)e * sp + j] = k[(size_t)j * ldk + e] * scale;
        for (int j = s; j < sp; j++)
            kt[(size_t)e * sp + j] = 0.0f;
    }
    for (int i0 = 0; i0 < t; i0 += 4) {   /* four query rows at a time share each key load */
        int nr = t - i0 < 4 ? t - i0 : 4;
        kiln_attention_scores_rows(q + (size_t)i0 * ldq, ldq, nr, kt, dh, sp, causal ? i0 + nr : s, p + (size_t)i0 * s, s);
        for (int i = i0; i < i0 + nr; i++)
            softmax_row(p + (size_t)i * s, causal ? i + 1 : s, s);
        /* O_i = sum_j P_ij V_j (masked keys are 0 in P) */
        kiln_attention_weighted_rows4(p + (size_t)i0 * s, s, nr, causal ? i0 + nr : s, v, ldv, dh, out + (size_t)i0 * ldo,
                                      ldo, false);
    }
}

/* Training form: P = softmax(Q K^T / sqrt(dh)) kept in save, O = P V, one (example, head) per
 * task. */
static void attention_saved(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    attn_view v0 = view_of(g, nd, a, 0);
    int tasks = a->batch * v0.heads;
    size_t per = kiln_attention_head_work_floats(g, nd);
    #pragma omp parallel for schedule(static) num_threads(a->threads)
    for (int task = 0; task < tasks; task++) {
        int b = task / v0.heads, h = task % v0.heads;
        attn_view v = view_of(g, nd, a, b);
        float *p = a->save + (size_t)task * v.t * v.s;
        kiln_attention_head_forward(v.q + h * v.dh, v.k + h * v.dh, v.v + h * v.dh, v.ldq, v.ldk, v.ldv, v.t, v.s,
                                    v.dh, nd->a.causal, a->work + (size_t)kiln_thread_id() * per, p,
                                    a->out + (size_t)b * nd->numel + h * v.dh, v.width);
    }
}

/* Inference form: query blocks of QB rows, key blocks of KB, online softmax; the products by the
 * register-blocked row kernels, with each key block's scaled K^T built once per query block. */
static void attention_streamed(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    attn_view v0 = view_of(g, nd, a, 0);
    int qblocks = (v0.t + QB - 1) / QB, dh = v0.dh;
    int tasks = a->batch * v0.heads * qblocks;
    size_t per_thread = QB * KB + QB * (size_t)dh + 2 * QB + (size_t)dh * KB;
    #pragma omp parallel for schedule(static) num_threads(a->threads)
    for (int task = 0; task < tasks; task++) {
        int b = task / (v0.heads * qblocks), h = task / qblocks % v0.heads, qb = task % qblocks;
        attn_view v = view_of(g, nd, a, b);
        float *sc = a->work + (size_t)kiln_thread_id() * per_thread;
        float *acc = sc + QB * KB, *mx = acc + QB * dh, *sum = mx + QB, *kt = sum + QB;
        int i0 = qb * QB, nq = v.t - i0 < QB ? v.t - i0 : QB;
        float scale = 1.0f / sqrtf((float)dh);
        for (int i = 0; i < nq; i++) {
            mx[i] = -FLT_MAX;
            sum[i] = 0.0f;
        }
        memset(acc, 0, (size_t)nq * dh * sizeof(float));
        int kend = nd->a.causal ? i0 + nq : v.s;
        const float *q = v.q + (size_t)i0 * v.ldq + h * dh;
        for (int j0 = 0; j0 < kend; j0 += KB) {
            int nk = kend - j0 < KB ? kend - j0 : KB;
            const float *kb = v.k + (size_t)j0 * v.ldk + h * dh;
            for (int e = 0; e < dh; e++) {   /* this block's K^T, scaled, zero past its keys */
                for (int j = 0; j < nk; j++)
                    kt[(size_t)e * KB + j] = kb[(size_t)j * v.ldk + e] * scale;
                for (int j = nk; j < KB; j++)
                    kt[(size_t)e * KB + j] = 0.0f;
            }
            for (int r = 0; r < nq; r += 4)
                kiln_attention_scores_rows(q + (size_t)r * v.ldq, v.ldq, nq - r < 4 ? nq - r : 4, kt, dh, KB, nk,
                                           sc + (size_t)r * KB, KB);
            for (int i = 0; i < nq; i++) {
                float *row = sc + (size_t)i * KB;
                int n = nd->a.causal ? (i0 + i + 1 - j0 < nk ? i0 + i + 1 - j0 : nk) : nk;
                if (n <= 0) {
                    for (int j = 0; j < nk; j++)
                        row[j] = 0.0f;
                    continue;
                }
                float m = kiln_row_max(row, n, mx[i]);
                float corr = kiln_exp(mx[i] - m);   /* rescales what was summed before */
                exp_shifted(row, n, m);
                float s = kiln_row_sum(row, n);
                for (int j = n; j < nk; j++)
                    row[j] = 0.0f;
                sum[i] = sum[i] * corr + s;
                mx[i] = m;
                float *ai = acc + (size_t)i * dh;
                for (int d = 0; d < dh; d++)
                    ai[d] *= corr;
            }
            const float *vb = v.v + (size_t)j0 * v.ldv + h * dh;
            for (int r = 0; r < nq; r += 4)
                kiln_attention_weighted_rows4(sc + (size_t)r * KB, KB, nq - r < 4 ? nq - r : 4, nk, vb, v.ldv, dh,
                                              acc + (size_t)r * dh, dh, true);
        }
        for (int i = 0; i < nq; i++) {
            float *o = a->out + (size_t)b * nd->numel + (size_t)(i0 + i) * v.width + h * dh;
            float inv = 1.0f / sum[i];
            for (int d = 0; d < dh; d++)
                o[d] = acc[(size_t)i * dh + d] * inv;
        }
    }
}

void kiln_attention_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    if (a->save)
        attention_saved(g, nd, a);
    else
        attention_streamed(g, nd, a);
}
