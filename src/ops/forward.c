/* Forward dispatch: runs one node of the graph given its inputs and buffers. */
#include <string.h>
#include "core/op_table.h"
#include "ops/ops.h"

size_t kiln_node_work_floats(const kiln_graph_t *g, int id, int threads)
{
    const kiln_node *nd = &g->nodes[id];
    const kiln_op_def *def = kiln_op_def_of(nd->op);
    if (def->work_floats)
        return def->work_floats(g, nd, 1, threads);
    if (nd->op != KILN_OP_CONV2D || kiln_conv2d_is_depthwise(nd, &g->nodes[nd->inputs[0]]))
        return 0;   /* the depthwise kernel needs no im2col space */
    return kiln_conv2d_col_floats(nd) * (size_t)threads;
}

size_t kiln_node_save_floats(const kiln_graph_t *g, int id, int batch)
{
    const kiln_node *nd = &g->nodes[id];
    const kiln_op_def *def = kiln_op_def_of(nd->op);
    return def->save_floats ? def->save_floats(g, nd, nd->batched ? batch : 1) : 0;
}

size_t kiln_batchnorm_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch)
{
    return 2 * (size_t)nd->dims[0];
}

size_t kiln_dropout_save_floats(const kiln_graph_t *g, const kiln_node *nd, int batch)
{
    return nd->numel * (size_t)batch;
}

static void dropout_forward(const kiln_node *nd, const kiln_fwd_args *a)
{
    size_t n = nd->numel * (size_t)a->batch;
    if (!a->training || nd->a.alpha == 0.0f) {
        if (a->out != a->in[0])
            memcpy(a->out, a->in[0], n * sizeof(float));
        return;
    }
    float keep = 1.0f - nd->a.alpha, scale = 1.0f / keep;
    for (size_t i = 0; i < n; i++) {
        a->save[i] = kiln_rng_uniform(a->rng) < keep ? scale : 0.0f;
        a->out[i] = a->in[0][i] * a->save[i];
    }
}

void kiln_node_forward(const kiln_graph_t *g, int id, const kiln_fwd_args *a)
{
    const kiln_node *nd = &g->nodes[id];
    const kiln_op_def *def = kiln_op_def_of(nd->op);
    if (def->forward)
        def->forward(g, nd, a);
    /* a fused activation (act=) after the op's kernel; the legacy kernels apply theirs themselves */
    if (def->forward && def->forward != kiln_forward_legacy && nd->a.act != KILN_OP_INPUT)
        kiln_activation_forward(nd->a.act, nd->a.alpha, a->out, a->out, nd->numel * (size_t)a->batch);
}

void kiln_forward_legacy(const kiln_graph_t *g, const kiln_node *nd, const kiln_fwd_args *a)
{
    const kiln_node *in = nd->n_inputs ? &g->nodes[nd->inputs[0]] : NULL;
    size_t n = nd->numel * (size_t)a->batch;
    switch (nd->op) {
    case KILN_OP_INPUT:
        if (a->out != a->in[0])
            memcpy(a->out, a->in[0], n * sizeof(float));
        break;
    case KILN_OP_DENSE:
        kiln_dense_forward(g, nd, a->in[0], a->batch, a->out);
        break;
    case KILN_OP_CONV2D:
        kiln_conv2d_forward(g, nd, a->in[0], a->batch, a->out, a->work, a->threads,
                            a->relu ? KILN_OP_RELU : nd->a.act);
        return;
    case KILN_OP_MAXPOOL2D:
        kiln_maxpool_forward(nd, in, a->in[0], a->batch, a->out, a->training ? a->argmax : NULL);
        break;
    case KILN_OP_AVGPOOL2D:
        kiln_avgpool_forward(nd, in, a->in[0], a->batch, a->out);
        break;
    case KILN_OP_GLOBAL_AVGPOOL:
        kiln_global_avgpool_forward(in, a->in[0], a->batch, a->out);
        break;
    case KILN_OP_RELU: case KILN_OP_LEAKY_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH: case KILN_OP_GELU:
        kiln_activation_forward(nd->op, nd->a.alpha, a->in[0], a->out, n);
        break;
    case KILN_OP_BATCHNORM:
        kiln_batchnorm_forward(g, nd, a->in[0], a->batch, a->out, a->training, a->save);
        break;
    case KILN_OP_DROPOUT:
        dropout_forward(nd, a);
        break;
    case KILN_OP_FLATTEN:
        if (a->out != a->in[0])
            memcpy(a->out, a->in[0], n * sizeof(float));
        break;
    default:
        break;
    }
    if (a->relu)
        kiln_activation_forward(KILN_OP_RELU, 0.0f, a->out, a->out, n);
    else if (nd->a.act != KILN_OP_INPUT)
        kiln_activation_forward(nd->a.act, nd->a.alpha, a->out, a->out, n);
}
