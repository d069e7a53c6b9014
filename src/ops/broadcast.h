/* NumPy broadcasting: where each element of an output tensor (batch axis first) reads one of
 * its inputs, for the elementwise ops and matmul's leading axes (docs/IR.md). */
#ifndef KILN_OPS_BROADCAST_H
#define KILN_OPS_BROADCAST_H

#include <stddef.h>
#include "kiln/kiln.h"

/* The map from an output's elements to an input's, in blocks contiguous in both. */
typedef struct {
    int outer_rank;                    /* axes enumerated block by block */
    size_t dims[KILN_MAX_RANK + 1];    /* the output's dims on those axes */
    size_t stride[KILN_MAX_RANK + 1];  /* the input's strides on them (0: broadcast) */
    size_t inner;                      /* elements per block (a trailing run equal in both) */
    size_t blocks;                     /* blocks in the output */
} kiln_bcast;

/* Maps an output of out_rank dims (out_batch examples: the batch, or 1 for unbatched) to an
 * input of x_rank dims and x_batch examples; the shapes must broadcast (shape inference checked). */
void kiln_bcast_init(kiln_bcast *b, int out_rank, const int *out_dims, size_t out_batch, int x_rank,
                     const int *x_dims, size_t x_batch);
/* The input offset of the first element of output block k. */
static inline size_t kiln_bcast_offset(const kiln_bcast *b, size_t k)
{
    size_t off = 0;
    for (int i = b->outer_rank - 1; i >= 0; i--) {
        off += (k % b->dims[i]) * b->stride[i];
        k /= b->dims[i];
    }
    return off;
}

#endif
