/* Winograd F(2x2, 3x3) convolution (src/ops/winograd.c): the fp32 kernel for 3x3, stride-1
 * convolutions on AVX-512 CPUs; the inference runtime transforms the kernel once per model, the
 * trainer's fused conv + pool once per batch. */
#ifndef KILN_OPS_WINOGRAD_H
#define KILN_OPS_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>
#include "core/graph.h"

/* Fewest input channels for Winograd: channels are padded to blocks of 16, so with fewer than 8
 * more than half of every transform and product would be padding (a 1-channel first layer stays
 * on im2col + GEMM). */
#define KILN_WINOGRAD_MIN_CIN 8

/* Whether conv node nd (input in) runs by Winograd: 3x3, stride 1, dilation 1, one group, at
 * least KILN_WINOGRAD_MIN_CIN input channels, on a CPU with the AVX-512 fp32 paths. */
bool kiln_winograd_applies(const kiln_node *nd, const kiln_node *in);
/* Floats of node nd's transformed kernel (16 products x input x output channels, each rounded
 * up to 16). */
size_t kiln_winograd_weight_floats(const kiln_node *nd, const kiln_node *in);
/* Transforms nd's kernel w (cout, cin, 3, 3) into u (kiln_winograd_weight_floats). */
void kiln_winograd_weights(const kiln_node *nd, const kiln_node *in, const float *w, float *u);
/* Whether nd's input gradient runs by Winograd too (kiln_winograd_applies, at least
 * KILN_WINOGRAD_MIN_CIN output channels, padding at most 2). */
bool kiln_winograd_dx_applies(const kiln_node *nd, const kiln_node *in);
/* Transforms nd's kernel w for the input gradient (180-degree rotation, channels swapped) into u
 * (kiln_winograd_weight_floats). */
void kiln_winograd_dx_weights(const kiln_node *nd, const kiln_node *in, const float *w, float *u);
/* Floats of work space kiln_winograd_dx_image needs. */
size_t kiln_winograd_dx_work_floats(const kiln_node *nd, const kiln_node *in);
/* One image's input gradient: dx (cin, h, w) = (or +=, with add) dy (cout, ho, wo) convolved with
 * the kernel u from kiln_winograd_dx_weights, on the calling thread. */
void kiln_winograd_dx_image(const kiln_node *nd, const kiln_node *in, const float *u, const float *dy, bool add,
                            float *dx, float *work);
/* Floats of work space one thread needs to convolve one image. */
size_t kiln_winograd_work_floats(const kiln_node *nd, const kiln_node *in);
/* Convolution of batch images x into y by Winograd with transformed kernel u, images in parallel
 * on up to threads threads (work: kiln_winograd_work_floats per thread); act as in
 * kiln_conv2d_forward. Only where kiln_winograd_applies. */
void kiln_conv2d_winograd(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, int batch,
                          float *y, float *work, int threads, kiln_op act);
/* One image of kiln_conv2d_winograd, on the calling thread (work: kiln_winograd_work_floats). */
void kiln_conv2d_winograd_image(const kiln_graph_t *g, const kiln_node *nd, const float *u, const float *x, float *y,
                                float *work, kiln_op act);

#endif
