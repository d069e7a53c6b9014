/* The const op's kernel: a constant's values into its output buffer, for the readers that run
 * (f32 constants read by runtime ops, or an i64/bool constant that is a graph output). */
#include <string.h>
#include "core/op_table.h"
#include "ops/ops.h"

void kiln_const_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    if (nd->dtype == KILN_DT_F32) {
        memcpy(a->out, kiln_node_tensor(g, nd, 0), nd->numel * sizeof(float));
        return;
    }
    const int64_t *v = kiln_const_ints(nd);   /* i64 and bool read as f32 (exact below 2^24) */
    for (size_t i = 0; i < nd->numel; i++)
        a->out[i] = (float)v[i];
}
