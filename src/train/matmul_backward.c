/* Backward of linear (any rank) and batched matmul with broadcast leading axes. */
#include <string.h>
#include "ops/broadcast.h"
#include "ops/gemm.h"
#include "train/backward.h"

void kiln_linear_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    kiln_bwd_args rows = *a;   /* the dense backward with every leading position a row */
    rows.batch = (int)(nd->numel / (size_t)nd->a.units) * a->batch;
    kiln_dense_backward(g, nd, &rows);
}

void kiln_matmul_backward(const kiln_graph_t *g, const kiln_node *nd, const kiln_bwd_args *a)
{
    /* C = A B per matrix: dA = dC B^T, dB = A^T dC, each summed over the output matrices that
     * read the same operand matrix (broadcast) */
    const kiln_node *x = &g->nodes[nd->inputs[0]], *y = &g->nodes[nd->inputs[1]];
    int r = nd->rank, m = nd->dims[r - 2], n = nd->dims[r - 1], k = x->dims[x->rank - 1];
    kiln_bcast bx, by;
    kiln_bcast_init(&bx, r - 2, nd->dims, (size_t)a->batch, x->rank - 2, x->dims, (size_t)a->in_batch[0]);
    kiln_bcast_init(&by, r - 2, nd->dims, (size_t)a->batch, y->rank - 2, y->dims, (size_t)a->in_batch[1]);
    size_t count = nd->numel / ((size_t)m * n) * (size_t)a->batch;
    for (int j = 0; j < 2; j++)
        if (a->dx[j] && !a->acc[j])
            memset(a->dx[j], 0, g->nodes[nd->inputs[j]].numel * (size_t)a->in_batch[j] * sizeof(float));
    for (size_t e = 0; e < count; e++) {
        size_t ox = kiln_bcast_offset(&bx, e / bx.inner) + e % bx.inner;
        size_t oy = kiln_bcast_offset(&by, e / by.inner) + e % by.inner;
        const float *dc = a->dy + e * m * n;
        if (a->dx[0])
            kiln_sgemm(false, true, m, k, n, 1.0f, dc, n, a->in[1] + oy * k * n, n, 1.0f, a->dx[0] + ox * m * k, k);
        if (a->dx[1])
            kiln_sgemm(true, false, k, n, m, 1.0f, a->in[0] + ox * m * k, k, dc, n, 1.0f, a->dx[1] + oy * k * n, n);
    }
}
