/* Recognises multi-head attention written out in ops (as PyTorch's exporter and Kiln's own ONNX
 * export write it) so an imported model runs Kiln's attention kernel. */
#ifndef KILN_IO_ONNX_ATTENTION_MATCH_H
#define KILN_IO_ONNX_ATTENTION_MATCH_H

#include "core/graph.h"

/* What the pattern computes: attention over q, k, v (tokens, width) node ids, or one packed qkv. */
typedef struct {
    int q, k, v;       /* sources; packed: q is the qkv node, k = v = -1 */
    int heads;
    bool causal;
} kiln_attention_match;

/* Whether matmul(p, vt) in g, with p and vt node ids, ends
 *   softmax(last axis)(q' k' * scale [+ causal mask]) vt
 * where q', k', vt split (tokens, width) tensors into heads by reshape and transpose (k' also
 * transposed for the product) and the scales multiply to 1/sqrt(head size); fills *m. */
bool kiln_attention_match_find(const kiln_graph_t *g, int p, int vt, kiln_attention_match *m);

#endif
