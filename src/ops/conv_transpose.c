/* Transposed 2-d convolution (PyTorch's ConvTranspose2d, groups 1), direct: each input pixel
 * scatters its kernel-weighted channels into the output window it reaches. */
#include <string.h>
#include "ops/ops.h"

void kiln_conv_transpose_fwd(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *x = &g->nodes[nd->inputs[0]];
    const kiln_attrs *at = &nd->a;
    int ci = x->dims[0], h = x->dims[1], w = x->dims[2], co = nd->dims[0], ho = nd->dims[1], wo = nd->dims[2];
    int kh = at->kernel[0], kw = at->kernel[1];
    const float *wt = kiln_node_tensor(g, nd, 0), *bias = at->no_bias ? NULL : kiln_node_tensor(g, nd, 1);
    #pragma omp parallel for schedule(static) num_threads(a->threads) if (a->batch > 1)
    for (int b = 0; b < a->batch; b++) {
        const float *src = a->in[0] + (size_t)b * x->numel;
        float *dst = a->out + (size_t)b * nd->numel;
        for (int o = 0; o < co; o++)
            for (int i = 0; i < ho * wo; i++)
                dst[(size_t)o * ho * wo + i] = bias ? bias[o] : 0.0f;
        for (int c = 0; c < ci; c++)
            for (int iy = 0; iy < h; iy++)
                for (int ix = 0; ix < w; ix++) {
                    float v = src[((size_t)c * h + iy) * w + ix];
                    for (int ky = 0; ky < kh; ky++) {
                        int oy = iy * at->stride[0] - at->pad[0] + ky * at->dilation[0];
                        if (oy < 0 || oy >= ho)
                            continue;
                        for (int kx = 0; kx < kw; kx++) {
                            int ox = ix * at->stride[1] - at->pad[1] + kx * at->dilation[1];
                            if (ox < 0 || ox >= wo)
                                continue;
                            const float *k = wt + ((size_t)c * co * kh + ky) * kw + kx;   /* [c][o][ky][kx] */
                            float *d = dst + (size_t)oy * wo + ox;
                            for (int o = 0; o < co; o++)
                                d[(size_t)o * ho * wo] += v * k[(size_t)o * kh * kw];
                        }
                    }
                }
    }
}
