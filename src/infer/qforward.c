/* int8 node execution: conv2d (u8 im2col rows + int8 GEMM + requantisation, per image), dense
 * (int8 GEMM over the batch) and max pooling on u8. Requantisation goes through the real value,
 * so any fused activation applies exactly as in fp32. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include "core/error.h"
#include "infer/runtime.h"
#include "ops/ops.h"

void kiln_qmodel_free(kiln_qmodel *q, int n)
{
    if (!q)
        return;
    for (int i = 0; q->qw && i < n; i++) {
        kiln_qweights *w = &q->qw[i];
        free(w->w), free(w->packed), free(w->w_scale), free(w->bias), free(w->bias_q), free(w->deq);
    }
    free(q->qw), free(q->qp), free(q->int8), free(q->elem_bytes);
    free(q);
}

kiln_status kiln_qweights_prepare(kiln_qweights *qw, kiln_qparams in, kiln_qkernel kernel)
{
    int m = qw->m, k = qw->k;
    free(qw->packed), free(qw->bias_q), free(qw->deq);
    qw->packed = malloc(kiln_qgemm_packed_bytes(m, k));
    qw->bias_q = malloc((size_t)m * sizeof(int32_t));
    qw->deq = malloc((size_t)m * sizeof(float));
    if (!qw->packed || !qw->bias_q || !qw->deq)
        return kiln_error(KILN_ERR_NOMEM, "out of memory for int8 weights");
    kiln_qgemm_pack(kernel, qw->w, m, k, qw->packed);
    for (int j = 0; j < m; j++) {
        int64_t wsum = 0;
        for (int t = 0; t < k; t++)
            wsum += qw->w[(size_t)j * k + t];
        qw->deq[j] = in.scale * qw->w_scale[j];
        double b = qw->deq[j] > 0 ? qw->bias[j] / qw->deq[j] : 0;
        if (b > 1e9) b = 1e9;
        if (b < -1e9) b = -1e9;
        qw->bias_q[j] = (int32_t)(llround(b) - (int64_t)in.zero * wsum);
    }
    return KILN_OK;
}

static float act_apply(kiln_op act, float alpha, float v)
{
    switch (act) {
    case KILN_OP_RELU: return v > 0.0f ? v : 0.0f;
    case KILN_OP_LEAKY_RELU: return v > 0.0f ? v : alpha * v;
    case KILN_OP_SIGMOID: return 1.0f / (1.0f + expf(-v));
    case KILN_OP_TANH: return tanhf(v);
    case KILN_OP_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    default: return v;
    }
}

static inline uint8_t to_u8(float real, kiln_qparams qp)
{
    float q = nearbyintf(real / qp.scale) + (float)qp.zero;
    return (uint8_t)(q < 0.0f ? 0.0f : (q > 255.0f ? 255.0f : q));
}

void kiln_quantize_u8(const float *x, size_t n, kiln_qparams qp, uint8_t *q)
{
    for (size_t i = 0; i < n; i++)
        q[i] = to_u8(x[i], qp);
}

void kiln_dequantize_u8(const uint8_t *q, size_t n, kiln_qparams qp, float *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = qp.scale * (float)((int)q[i] - qp.zero);
}

/* Writes accumulators acc (rows x m, row r = one pixel or example) as the node's output element
 * [j * stride + r]: requantised u8, or real fp32. */
static void requantize(const kiln_qweights *qw, const kiln_node *nd, const int32_t *acc, int rows, size_t stride,
                       bool out_u8, kiln_qparams oq, void *out)
{
    kiln_op act = nd->a.act;
    float alpha = nd->a.alpha;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < qw->m; j++) {
            float real = act_apply(act, alpha, (float)(acc[(size_t)r * qw->m + j] + qw->bias_q[j]) * qw->deq[j]);
            if (out_u8)
                ((uint8_t *)out)[(size_t)j * stride + r] = to_u8(real, oq);
            else
                ((float *)out)[(size_t)j * stride + r] = real;
        }
}

/* One image's u8 im2col as rows: pixel p's row holds its c*kh*kw window values (padding reads as
 * the zero point), then zeros up to kpad. */
static void im2row_u8(const kiln_node *nd, const kiln_node *in, const uint8_t *x, uint8_t zero, int kp, uint8_t *rows)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2], ho = nd->shape[1], wo = nd->shape[2];
    int kh = a->kernel[0], kw = a->kernel[1];
    for (int oy = 0; oy < ho; oy++)
        for (int ox = 0; ox < wo; ox++) {
            uint8_t *r = rows + ((size_t)oy * wo + ox) * kp;
            int t = 0;
            for (int ci = 0; ci < c; ci++) {
                const uint8_t *src = x + (size_t)ci * h * w;
                for (int ky = 0; ky < kh; ky++) {
                    int iy = oy * a->stride[0] - a->pad[0] + ky * a->dilation[0];
                    for (int kx = 0; kx < kw; kx++, t++) {
                        int ix = ox * a->stride[1] - a->pad[1] + kx * a->dilation[1];
                        r[t] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? src[(size_t)iy * w + ix] : zero;
                    }
                }
            }
            for (; t < kp; t++)
                r[t] = 0;
        }
}

size_t kiln_qnode_scratch_floats(const kiln_model_t *m, int id, int batch)
{
    const kiln_node *nd = &m->g->nodes[id];
    const kiln_qweights *qw = &m->q->qw[id];
    size_t kp = (size_t)kiln_qgemm_kpad(qw->k);
    if (nd->op == KILN_OP_CONV2D) {   /* per thread: one image's rows and accumulators */
        size_t p = (size_t)nd->shape[1] * nd->shape[2];
        return (p * kp + 3) / 4 + p * (size_t)qw->m;
    }
    if (nd->op == KILN_OP_DENSE)      /* the whole batch, one thread */
        return ((size_t)batch * kp + 3) / 4 + (size_t)batch * (size_t)qw->m;
    return 0;
}

static void conv_forward(const kiln_model_t *m, int id, const uint8_t *x, void *out, int batch, float *scratch,
                         int threads)
{
    const kiln_node *nd = &m->g->nodes[id], *in = &m->g->nodes[nd->inputs[0]];
    const kiln_qweights *qw = &m->q->qw[id];
    kiln_qparams iq = m->q->qp[nd->inputs[0]], oq = m->q->qp[id];
    bool out_u8 = m->q->elem_bytes[id] == 1;
    int p = nd->shape[1] * nd->shape[2], kp = kiln_qgemm_kpad(qw->k);
    size_t per = kiln_qnode_scratch_floats(m, id, 1);
    #pragma omp parallel for schedule(static) num_threads(threads) if (batch > 1)
    for (int b = 0; b < batch; b++) {
        float *mine = scratch + (size_t)kiln_thread_id() * per;
        uint8_t *rows = (uint8_t *)mine;
        int32_t *acc = (int32_t *)(mine + ((size_t)p * kp + 3) / 4);
        im2row_u8(nd, in, x + (size_t)b * in->numel, (uint8_t)iq.zero, kp, rows);
        kiln_qgemm(m->q->kernel, rows, p, qw->k, qw->packed, qw->m, acc);
        void *ob = out_u8 ? (void *)((uint8_t *)out + (size_t)b * nd->numel) : (void *)((float *)out + (size_t)b * nd->numel);
        requantize(qw, nd, acc, p, (size_t)p, out_u8, oq, ob);
    }
}

static void dense_forward(const kiln_model_t *m, int id, const uint8_t *x, void *out, int batch, float *scratch)
{
    const kiln_node *nd = &m->g->nodes[id];
    const kiln_qweights *qw = &m->q->qw[id];
    bool out_u8 = m->q->elem_bytes[id] == 1;
    int kp = kiln_qgemm_kpad(qw->k);
    const uint8_t *rows = x;
    if (kp != qw->k) {   /* rows padded to the kernel's multiple of 4 */
        uint8_t *padded = (uint8_t *)scratch;
        for (int b = 0; b < batch; b++) {
            memcpy(padded + (size_t)b * kp, x + (size_t)b * qw->k, (size_t)qw->k);
            memset(padded + (size_t)b * kp + qw->k, 0, (size_t)(kp - qw->k));
        }
        rows = padded;
    }
    int32_t *acc = (int32_t *)(scratch + ((size_t)batch * kp + 3) / 4);
    kiln_qgemm(m->q->kernel, rows, batch, qw->k, qw->packed, qw->m, acc);
    for (int b = 0; b < batch; b++) {
        void *ob = out_u8 ? (void *)((uint8_t *)out + (size_t)b * nd->numel) : (void *)((float *)out + (size_t)b * nd->numel);
        requantize(qw, nd, acc + (size_t)b * qw->m, 1, 1, out_u8, m->q->qp[id], ob);
    }
}

static void maxpool_u8(const kiln_node *nd, const kiln_node *in, const uint8_t *x, uint8_t *y, int batch)
{
    const kiln_attrs *a = &nd->a;
    int c = in->shape[0], h = in->shape[1], w = in->shape[2], ho = nd->shape[1], wo = nd->shape[2];
    for (int pl = 0; pl < batch * c; pl++) {
        const uint8_t *src = x + (size_t)pl * h * w;
        uint8_t *dst = y + (size_t)pl * ho * wo;
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                int best = 0;
                for (int ky = 0; ky < a->kernel[0]; ky++) {
                    int iy = oy * a->stride[0] - a->pad[0] + ky;
                    for (int kx = 0; kx < a->kernel[1] && iy >= 0 && iy < h; kx++) {
                        int ix = ox * a->stride[1] - a->pad[1] + kx;
                        if (ix >= 0 && ix < w && src[(size_t)iy * w + ix] > best)
                            best = src[(size_t)iy * w + ix];
                    }
                }
                dst[(size_t)oy * wo + ox] = (uint8_t)best;
            }
    }
}

void kiln_qnode_forward(const kiln_model_t *m, int id, const void *const *in, void *out, int batch,
                        float *scratch, int threads)
{
    const kiln_node *nd = &m->g->nodes[id];
    switch (nd->op) {
    case KILN_OP_CONV2D:
        conv_forward(m, id, in[0], out, batch, scratch, threads);
        break;
    case KILN_OP_DENSE:
        dense_forward(m, id, in[0], out, batch, scratch);
        break;
    case KILN_OP_MAXPOOL2D:
        maxpool_u8(nd, &m->g->nodes[nd->inputs[0]], in[0], out, batch);
        break;
    default:
        break;
    }
}
