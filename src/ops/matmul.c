/* Linear over the last axis of any rank, and batched matmul with broadcast leading axes. */
#include "ops/broadcast.h"
#include "ops/gemm.h"
#include "ops/ops.h"

void kiln_linear_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    /* every leading position is a row of one product */
    int rows = (int)(nd->numel / (size_t)nd->a.units) * a->batch;
    kiln_dense_forward(g, nd, a->in[0], rows, a->out);
}

void kiln_matmul_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]], *y = &g->nodes[nd->inputs[1]];
    int r = nd->rank, m = nd->dims[r - 2], n = nd->dims[r - 1], k = x->dims[x->rank - 1];
    kiln_bcast bx, by;   /* matrices of the output to matrices of each operand */
    kiln_bcast_init(&bx, r - 2, nd->dims, (size_t)a->batch, x->rank - 2, x->dims, (size_t)a->in_batch[0]);
    kiln_bcast_init(&by, r - 2, nd->dims, (size_t)a->batch, y->rank - 2, y->dims, (size_t)a->in_batch[1]);
    size_t count = nd->numel / ((size_t)m * n) * (size_t)a->batch;
    #pragma omp parallel for schedule(static) num_threads(a->threads) if (count > 1 && (size_t)m * n * k * count > 1u << 18)
    for (size_t e = 0; e < count; e++) {
        size_t ox = kiln_bcast_offset(&bx, e / bx.inner) + e % bx.inner;
        size_t oy = kiln_bcast_offset(&by, e / by.inner) + e % by.inner;
        kiln_sgemm(false, false, m, n, k, 1.0f, a->in[0] + ox * m * k, k, a->in[1] + oy * k * n, n, 0.0f,
                   a->out + e * m * n, n);
    }
}
