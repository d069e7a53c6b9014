/* NumPy broadcasting maps. */
#include "ops/broadcast.h"

void kiln_bcast_init(kiln_bcast *b, int out_rank, const int *out_dims, size_t out_batch, int x_rank,
                     const int *x_dims, size_t x_batch)
{
    int r = out_rank + 1;
    size_t f[KILN_MAX_RANK + 1], x[KILN_MAX_RANK + 1];
    f[0] = out_batch;
    x[0] = x_batch;
    for (int i = 0; i < out_rank; i++) {
        f[1 + i] = (size_t)out_dims[i];
        int j = i - (out_rank - x_rank);
        x[1 + i] = j >= 0 ? (size_t)x_dims[j] : 1;
    }
    int k = r;   /* the trailing axes equal in both form the block */
    b->inner = 1;
    while (k > 0 && x[k - 1] == f[k - 1]) {
        b->inner *= f[k - 1];
        k--;
    }
    b->outer_rank = k;
    b->blocks = 1;
    size_t st = b->inner;
    for (int i = k - 1; i >= 0; i--) {
        b->dims[i] = f[i];
        b->stride[i] = x[i] == 1 ? 0 : st;
        st *= x[i];
        b->blocks *= f[i];
    }
}
