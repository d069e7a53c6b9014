/* Graph IR: building, shape inference, parameter allocation and initialisation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "core/op_table.h"
#include "core/rng.h"

kiln_graph_t *kiln_graph_create(void)
{
    return calloc(1, sizeof(kiln_graph_t));
}

void kiln_graph_free(kiln_graph_t *g)
{
    if (!g)
        return;
    free(g->nodes);
    free(g->params);
    free(g->buffers);
    kiln_graph_drop_consts(g, 0);
    free(g->consts);
    free(g);
}

int kiln_graph_size(const kiln_graph_t *g) { return g->n; }
int kiln_graph_output(const kiln_graph_t *g) { return g->n_outputs ? g->outputs[0] : g->n - 1; }
size_t kiln_graph_param_count(const kiln_graph_t *g) { return g->n_params; }
float *kiln_graph_params(kiln_graph_t *g) { return g->params; }
size_t kiln_graph_numel(const kiln_graph_t *g, int node) { return g->nodes[node].numel; }

int kiln_graph_shape(const kiln_graph_t *g, int node, int out[KILN_MAX_RANK])
{
    memcpy(out, g->nodes[node].dims, sizeof g->nodes[node].dims);
    return g->nodes[node].rank;
}

kiln_status kiln_node_add_param(kiln_graph_t *g, kiln_node *nd, const char *name, bool trainable,
                                int rank, const int *dims)
{
    if (nd->n_params >= KILN_MAX_PARAMS)
        return kiln_error(KILN_ERR_ARG, "%s: more than %d tensors", nd->name, KILN_MAX_PARAMS);
    double count = 1;   /* checked before anything is sized by it: a product may not wrap */
    for (int i = 0; i < rank; i++) {
        if (dims[i] <= 0)
            return kiln_error(KILN_ERR_SHAPE, "%s: %s: tensor %s has a dim of %d", nd->name, kiln_op_name(nd->op),
                              name, dims[i]);
        count *= dims[i];
    }
    /* 2^28 floats (1 GiB) per graph: far past the models Kiln is for, and a hostile spec cannot
     * make it allocate more */
    if ((double)g->n_params + g->n_buffers + count > 268435456.0)
        return kiln_error(KILN_ERR_SHAPE, "%s: %s: tensor %s of %.0f values takes the graph's parameters past 2^28 "
                          "(1 GiB)", nd->name, kiln_op_name(nd->op), name, count);
    kiln_param_ref *p = &nd->params[nd->n_params++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = rank;
    p->numel = 1;
    for (int i = 0; i < rank; i++) {
        p->dims[i] = dims[i];
        p->numel *= (size_t)dims[i];
    }
    p->trainable = trainable;
    float **arr = trainable ? &g->params : &g->buffers;
    size_t *len = trainable ? &g->n_params : &g->n_buffers;
    float *grown = realloc(*arr, (*len + p->numel) * sizeof(float));
    if (!grown && *len + p->numel > 0)
        return kiln_error(KILN_ERR_NOMEM, "out of memory for %zu parameters", p->numel);
    *arr = grown;
    p->offset = *len;
    memset(*arr + *len, 0, p->numel * sizeof(float));
    *len += p->numel;
    return KILN_OK;
}

static void set_shape(kiln_node *nd, int ndim, int c, int h, int w)
{
    int d[3] = {c, h, w};
    kiln_node_set_shape(nd, ndim, d);
}

void kiln_node_set_shape(kiln_node *nd, int rank, const int *dims)
{
    nd->rank = rank;
    nd->numel = 1;
    for (int i = 0; i < KILN_MAX_RANK; i++) {
        nd->dims[i] = i < rank ? dims[i] : 1;
        nd->numel *= (size_t)nd->dims[i];
    }
}

/* Fills in defaults for attributes left zero. */
static void resolve_attrs(kiln_op op, kiln_attrs *a)
{
    for (int i = 0; i < 2; i++) {
        if (a->kernel[i] <= 0)
            a->kernel[i] = a->kernel[1 - i] > 0 ? a->kernel[1 - i] : 1;
    }
    for (int i = 0; i < 2; i++) {
        if (a->stride[i] <= 0)
            a->stride[i] = (op == KILN_OP_MAXPOOL2D || op == KILN_OP_AVGPOOL2D) ? a->kernel[i] : 1;
        if (a->dilation[i] <= 0)
            a->dilation[i] = 1;
    }
    if (a->groups <= 0)
        a->groups = 1;
    if (a->eps <= 0)
        a->eps = 1e-5f;
    if (a->momentum <= 0)
        a->momentum = 0.1f;
    if ((op == KILN_OP_LEAKY_RELU || a->act == KILN_OP_LEAKY_RELU) && a->alpha == 0)
        a->alpha = 0.01f;
}

kiln_status kiln_infer_legacy(kiln_graph_t *g, kiln_node *nd)
{
    const kiln_node *in = nd->n_inputs > 0 ? &g->nodes[nd->inputs[0]] : NULL;
    kiln_attrs *a = &nd->a;
    const char *nm = nd->name;
    switch (nd->op) {
    case KILN_OP_INPUT:
        return KILN_OK;
    case KILN_OP_DENSE: {
        if (in->rank != 1)
            return kiln_error(KILN_ERR_SHAPE, "%s: dense expects a vector input, found %dx%dx%d "
                              "(add a flatten layer first)", nm, in->dims[0], in->dims[1], in->dims[2]);
        if (a->units <= 0)
            return kiln_error(KILN_ERR_ARG, "%s: dense units must be positive, found %d", nm, a->units);
        set_shape(nd, 1, a->units, 1, 1);
        int wd[2] = {a->units, in->dims[0]};
        if (kiln_node_add_param(g, nd, "weight", true, 2, wd) || (!a->no_bias && kiln_node_add_param(g, nd, "bias", true, 1, wd)))
            return KILN_ERR_NOMEM;
        return KILN_OK;
    }
    case KILN_OP_CONV2D:
    case KILN_OP_MAXPOOL2D:
    case KILN_OP_AVGPOOL2D: {
        if (in->rank != 3)
            return kiln_error(KILN_ERR_SHAPE, "%s: %s expects a (c,h,w) input, found a vector of %d",
                              nm, kiln_op_name(nd->op), in->dims[0]);
        int c = in->dims[0], ho, wo;
        int dh = nd->op == KILN_OP_CONV2D ? a->dilation[0] : 1;
        int dw = nd->op == KILN_OP_CONV2D ? a->dilation[1] : 1;
        if (a->pad[0] < 0 || a->pad[1] < 0)
            return kiln_error(KILN_ERR_ARG, "%s: negative padding", nm);
        if (nd->op != KILN_OP_CONV2D && (2 * a->pad[0] > a->kernel[0] || 2 * a->pad[1] > a->kernel[1]))
            return kiln_error(KILN_ERR_ARG, "%s: pool padding %dx%d exceeds half the window %dx%d",
                              nm, a->pad[0], a->pad[1], a->kernel[0], a->kernel[1]);
        ho = kiln_conv_out(in->dims[1], a->kernel[0], a->stride[0], a->pad[0], dh);
        wo = kiln_conv_out(in->dims[2], a->kernel[1], a->stride[1], a->pad[1], dw);
        if (ho <= 0 || wo <= 0)
            return kiln_error(KILN_ERR_SHAPE, "%s: window %dx%d does not fit input %dx%d",
                              nm, a->kernel[0], a->kernel[1], in->dims[1], in->dims[2]);
        if (nd->op != KILN_OP_CONV2D) {
            set_shape(nd, 3, c, ho, wo);
            return KILN_OK;
        }
        if (a->units <= 0)
            return kiln_error(KILN_ERR_ARG, "%s: conv2d out channels must be positive, found %d", nm, a->units);
        if (c % a->groups || a->units % a->groups)
            return kiln_error(KILN_ERR_SHAPE, "%s: groups=%d must divide in channels %d and out channels %d",
                              nm, a->groups, c, a->units);
        set_shape(nd, 3, a->units, ho, wo);
        int wd[4] = {a->units, c / a->groups, a->kernel[0], a->kernel[1]};
        if (kiln_node_add_param(g, nd, "weight", true, 4, wd) || (!a->no_bias && kiln_node_add_param(g, nd, "bias", true, 1, wd)))
            return KILN_ERR_NOMEM;
        return KILN_OK;
    }
    case KILN_OP_GLOBAL_AVGPOOL:
        if (in->rank != 3)
            return kiln_error(KILN_ERR_SHAPE, "%s: global_avgpool expects a (c,h,w) input", nm);
        set_shape(nd, 1, in->dims[0], 1, 1);
        return KILN_OK;
    case KILN_OP_RELU: case KILN_OP_LEAKY_RELU: case KILN_OP_SIGMOID: case KILN_OP_TANH:
    case KILN_OP_GELU: case KILN_OP_DROPOUT:
        if (nd->op == KILN_OP_DROPOUT && (a->alpha < 0 || a->alpha >= 1))
            return kiln_error(KILN_ERR_ARG, "%s: dropout probability must be in [0, 1), found %g", nm, a->alpha);
        kiln_node_set_shape(nd, in->rank, in->dims);
        return KILN_OK;
    case KILN_OP_BATCHNORM: {
        if (in->rank > 3)   /* its kernels take (c), or (c, h, w) with h x w positions */
            return kiln_error(KILN_ERR_SHAPE, "%s: batchnorm takes a vector or (c,h,w), found rank %d", nm, in->rank);
        kiln_node_set_shape(nd, in->rank, in->dims);
        int d[1] = {in->dims[0]};
        if (kiln_node_add_param(g, nd, "weight", true, 1, d) || kiln_node_add_param(g, nd, "bias", true, 1, d) ||
            kiln_node_add_param(g, nd, "running_mean", false, 1, d) || kiln_node_add_param(g, nd, "running_var", false, 1, d))
            return KILN_ERR_NOMEM;
        float *var = kiln_node_tensor(g, nd, 3);
        for (int i = 0; i < d[0]; i++)
            var[i] = 1.0f;
        return KILN_OK;
    }
    case KILN_OP_FLATTEN:
        set_shape(nd, 1, (int)in->numel, 1, 1);
        return KILN_OK;
    default:
        return kiln_error(KILN_ERR_ARG, "%s: unknown op %d", nm, (int)nd->op);
    }
}

static int append_node(kiln_graph_t *g, kiln_node *nd)
{
    if (g->n == g->cap) {
        int cap = g->cap ? g->cap * 2 : 16;
        kiln_node *nodes = realloc(g->nodes, (size_t)cap * sizeof *nodes);
        if (!nodes)
            return kiln_error(KILN_ERR_NOMEM, "out of memory"), -1;
        g->nodes = nodes;
        g->cap = cap;
    }
    g->nodes[g->n] = *nd;
    return g->n++;
}

int kiln_graph_input(kiln_graph_t *g, int c, int h, int w)
{
    if (g->n != 0)
        return kiln_error(KILN_ERR_ARG, "the input must be the first node"), -1;
    if (c <= 0 || h <= 0 || w <= 0 || (double)c * h * w > 1e9)
        return kiln_error(KILN_ERR_ARG, "input shape %dx%dx%d is not positive or too large", c, h, w), -1;
    kiln_node nd = {.op = KILN_OP_INPUT, .batched = true};
    snprintf(nd.name, sizeof nd.name, "input");
    set_shape(&nd, (h == 1 && w == 1) ? 1 : 3, c, h, w);
    return append_node(g, &nd);
}

/* Gives nd the caller's name: short enough and not used by another node. */
static kiln_status take_name(const kiln_graph_t *g, kiln_node *nd, const char *name)
{
    if (strlen(name) >= KILN_NAME_LEN)
        return kiln_error(KILN_ERR_ARG, "name '%s' longer than %d characters", name, KILN_NAME_LEN - 1);
    if (kiln_graph_find(g, name) >= 0)
        return kiln_error(KILN_ERR_ARG, "name '%s' is already used", name);
    snprintf(nd->name, sizeof nd->name, "%s", name);
    return KILN_OK;
}

int kiln_graph_input_nd(kiln_graph_t *g, const char *name, kiln_dtype dtype, int rank, const int *dims)
{
    if (dtype != KILN_DT_F32 && dtype != KILN_DT_I32)
        return kiln_error(KILN_ERR_ARG, "input %s: dtype %s, expected F32 or I32", name ? name : "",
                          kiln_dtype_name(dtype) ? kiln_dtype_name(dtype) : "?"), -1;
    if (rank < 0 || rank > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_ARG, "input %s: rank %d, expected 0..%d", name ? name : "", rank, KILN_MAX_RANK), -1;
    double numel = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] <= 0)
            return kiln_error(KILN_ERR_ARG, "input %s: dim %d is %d, expected positive", name ? name : "", i, dims[i]), -1;
        numel *= dims[i];
    }
    if (numel > 1e9)
        return kiln_error(KILN_ERR_ARG, "input %s: %.0f elements per example, at most 1e9", name ? name : "", numel), -1;
    kiln_node nd = {.op = KILN_OP_INPUT, .batched = true, .dtype = dtype};
    if (name && *name) {
        if (take_name(g, &nd, name) != KILN_OK)
            return -1;
    } else {
        int k = kiln_graph_input_count(g);
        do {
            snprintf(nd.name, sizeof nd.name, k ? "input_%d" : "input", k);
            k++;
        } while (kiln_graph_find(g, nd.name) >= 0);
    }
    kiln_node_set_shape(&nd, rank, dims);
    return append_node(g, &nd);
}

int kiln_graph_inputs(const kiln_graph_t *g, int *ids)
{
    int n = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].op == KILN_OP_INPUT) {
            if (ids)
                ids[n] = i;
            n++;
        }
    return n;
}

int kiln_graph_input_count(const kiln_graph_t *g)
{
    return kiln_graph_inputs(g, NULL);
}

kiln_status kiln_graph_set_outputs(kiln_graph_t *g, const int *ids, int n)
{
    if (n < 1 || n > KILN_MAX_OUTPUTS)
        return kiln_error(KILN_ERR_ARG, "%d outputs, expected 1..%d", n, KILN_MAX_OUTPUTS);
    for (int k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= g->n)
            return kiln_error(KILN_ERR_ARG, "output %d: node id %d out of range", k, ids[k]);
        for (int j = 0; j < k; j++)
            if (ids[j] == ids[k])
                return kiln_error(KILN_ERR_ARG, "output %s named twice", g->nodes[ids[k]].name);
    }
    memcpy(g->outputs, ids, (size_t)n * sizeof *ids);
    g->n_outputs = n;
    return KILN_OK;
}

int kiln_graph_outputs(const kiln_graph_t *g, int *ids)
{
    if (!g->n_outputs) {
        if (ids)
            ids[0] = g->n - 1;
        return 1;
    }
    if (ids)
        memcpy(ids, g->outputs, (size_t)g->n_outputs * sizeof *ids);
    return g->n_outputs;
}

/* Finds a node by name; -1 if none. */
int kiln_graph_find(const kiln_graph_t *g, const char *name)
{
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

int kiln_graph_add(kiln_graph_t *g, kiln_op op, const int *inputs, int n_inputs,
                   const kiln_attrs *attrs, const char *name)
{
    if (op <= KILN_OP_INPUT || op >= KILN_OP_COUNT)
        return kiln_error(KILN_ERR_ARG, "unknown op %d", (int)op), -1;
    const kiln_op_def *def = kiln_op_def_of(op);
    if (g->n == 0 && def->max_inputs > 0)
        return kiln_error(KILN_ERR_ARG, "add an input node first"), -1;
    kiln_node nd = {.op = op, .batched = true};
    if (attrs)
        nd.a = *attrs;
    resolve_attrs(op, &nd.a);
    if (def->max_inputs == 0) {
        if (n_inputs > 0)
            return kiln_error(KILN_ERR_ARG, "%s takes no input, given %d", def->name, n_inputs), -1;
    } else if (n_inputs <= 0 || !inputs) {
        nd.inputs[0] = g->n - 1;
        nd.n_inputs = 1;
    } else {
        if (n_inputs > KILN_MAX_INPUTS)
            return kiln_error(KILN_ERR_ARG, "%d inputs, at most %d", n_inputs, KILN_MAX_INPUTS), -1;
        for (int i = 0; i < n_inputs; i++) {
            if (inputs[i] < 0 || inputs[i] >= g->n)
                return kiln_error(KILN_ERR_ARG, "input id %d does not name an earlier node", inputs[i]), -1;
            nd.inputs[i] = inputs[i];
        }
        nd.n_inputs = n_inputs;
    }
    if (nd.n_inputs < def->min_inputs || nd.n_inputs > def->max_inputs)
        return kiln_error(KILN_ERR_ARG, "%s takes %d to %d inputs, given %d", def->name, def->min_inputs,
                          def->max_inputs, nd.n_inputs), -1;
    if (name && *name) {
        if (take_name(g, &nd, name) != KILN_OK)
            return -1;
    } else {
        int k = 1;
        for (int i = 0; i < g->n; i++)
            k += g->nodes[i].op == op;
        do {
            snprintf(nd.name, sizeof nd.name, "%s_%d", kiln_op_name(op), k++);
        } while (kiln_graph_find(g, nd.name) >= 0);
    }
    kiln_op act = nd.a.act;
    if (act != KILN_OP_INPUT) {
        bool host = op == KILN_OP_DENSE || op == KILN_OP_LINEAR || op == KILN_OP_CONV2D || op == KILN_OP_BATCHNORM ||
                    op == KILN_OP_ADD;
        if (!host || !kiln_op_fusable_act(act))
            return kiln_error(KILN_ERR_ARG, "%s: %s cannot carry a fused %s", nd.name, kiln_op_name(op),
                              kiln_op_name(act) ? kiln_op_name(act) : "activation"), -1;
    }
    for (int j = 0; j < nd.n_inputs && op != KILN_OP_EMBEDDING; j++)   /* int32 indices feed only an embedding */
        if (g->nodes[nd.inputs[j]].dtype == KILN_DT_I32)
            return kiln_error(KILN_ERR_ARG, "%s: %s: input %s is I32 (token indices), which only embedding reads",
                              nd.name, def->name, g->nodes[nd.inputs[j]].name), -1;
    size_t np = g->n_params, nb = g->n_buffers;
    int nc = g->n_consts;
    kiln_status st = def->infer(g, &nd);
    double count = 1;   /* every dim positive and the product bounded: sizes computed from them never wrap */
    for (int i = 0; st == KILN_OK && i < nd.rank; i++) {
        if (nd.dims[i] <= 0)
            st = kiln_error(KILN_ERR_SHAPE, "%s: %s: output dim %d is %d", nd.name, def->name, i, nd.dims[i]);
        count *= nd.dims[i];
    }
    if (st == KILN_OK && count > 1e9)
        st = kiln_error(KILN_ERR_SHAPE, "%s: %s: output of %.0f values per example, at most 1e9", nd.name, def->name,
                        count);
    if (st == KILN_OK)   /* inputs all constant: evaluated now, the node becomes a const */
        st = kiln_fold_node(g, &nd);
    if (st != KILN_OK) {
        g->n_params = np;   /* drop any tensors reserved before the failure */
        g->n_buffers = nb;
        kiln_graph_drop_consts(g, nc);
        return -1;
    }
    return append_node(g, &nd);
}

kiln_status kiln_graph_check_indices(const kiln_graph_t *g, int input, const int32_t *x, int batch)
{
    const kiln_node *in = &g->nodes[input];
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op != KILN_OP_EMBEDDING || nd->inputs[0] != input)
            continue;
        size_t n = in->numel * (size_t)batch;
        for (size_t k = 0; k < n; k++)
            if (x[k] < 0 || x[k] >= nd->a.vocab)
                return kiln_error(KILN_ERR_ARG, "%s: index %d at example %zu, position %zu is outside the "
                                  "vocabulary 0..%d of %s", in->name, x[k], k / in->numel, k % in->numel,
                                  nd->a.vocab - 1, nd->name);
    }
    return KILN_OK;
}

double kiln_graph_flops(const kiln_graph_t *g)
{
    double f = 0;
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_DENSE || nd->op == KILN_OP_CONV2D) {
            const kiln_param_ref *w = &nd->params[0];
            f += 2.0 * (double)w->numel * nd->dims[1] * nd->dims[2];
        } else if (nd->op == KILN_OP_LINEAR) {   /* every leading position is a row */
            f += 2.0 * (double)nd->params[0].numel * (double)(nd->numel / (size_t)nd->a.units);
        } else if (nd->op == KILN_OP_MATMUL) {
            const kiln_node *x = &g->nodes[nd->inputs[0]];
            f += 2.0 * (double)nd->numel * x->dims[x->rank - 1];
        } else if (nd->op == KILN_OP_ATTENTION) {   /* Q K^T and P V, each queries x keys x width */
            const kiln_node *k = &g->nodes[nd->inputs[nd->n_inputs == 1 ? 0 : 1]];
            double keys = k->dims[0], full = 4.0 * nd->dims[0] * keys * nd->dims[1];
            f += nd->a.causal ? full * (keys + 1) / (2 * keys) : full;
        }
    }
    return f;
}

void kiln_graph_init_params(kiln_graph_t *g, uint64_t seed)
{
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    for (int i = 0; i < g->n; i++) {
        kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_DENSE || nd->op == KILN_OP_CONV2D || nd->op == KILN_OP_LINEAR ||
            nd->op == KILN_OP_CONV_TRANSPOSE2D) {
            /* Kaiming-uniform with a = sqrt(5): bound = sqrt(6 / ((1 + 5) fan_in)) = 1/sqrt(fan_in);
             * PyTorch's bias rule uses the same bound. fan_in is the weight's size over its first
             * dim, as PyTorch computes it (for conv_transpose2d, (in, out, kh, kw): out kh kw). */
            size_t fan_in = nd->params[0].numel / (size_t)nd->params[0].dims[0];
            float bound = 1.0f / sqrtf((float)fan_in);
            for (int t = 0; t < nd->n_params; t++) {
                float *p = kiln_node_tensor(g, nd, t);
                for (size_t k = 0; k < nd->params[t].numel; k++)
                    p[k] = (2.0f * kiln_rng_uniform(&rng) - 1.0f) * bound;
            }
        } else if (nd->op == KILN_OP_LAYERNORM || nd->op == KILN_OP_RMSNORM) {   /* weight 1, bias 0 */
            for (int t = 0; t < nd->n_params; t++) {
                float *p = kiln_node_tensor(g, nd, t);
                for (size_t k = 0; k < nd->params[t].numel; k++)
                    p[k] = t == 0 ? 1.0f : 0.0f;
            }
        } else if (nd->op == KILN_OP_EMBEDDING || nd->op == KILN_OP_PARAM) {
            /* PyTorch's nn.Embedding: N(0, 1); a param: N(0, std), zeros without std */
            float std = nd->op == KILN_OP_EMBEDDING ? 1.0f : nd->a.std;
            float *p = kiln_node_tensor(g, nd, 0);
            for (size_t k = 0; k < nd->params[0].numel; k++)
                p[k] = std > 0 ? std * kiln_rng_normal(&rng) : 0.0f;
        } else if (nd->op == KILN_OP_BATCHNORM) {
            float *w = kiln_node_tensor(g, nd, 0), *b = kiln_node_tensor(g, nd, 1);
            float *m = kiln_node_tensor(g, nd, 2), *v = kiln_node_tensor(g, nd, 3);
            for (int c = 0; c < nd->dims[0]; c++) {
                w[c] = 1.0f;
                b[c] = 0.0f;
                m[c] = 0.0f;
                v[c] = 1.0f;
            }
        }
    }
}

void kiln_graph_print(const kiln_graph_t *g, void *file)
{
    FILE *f = file ? file : stdout;
    fprintf(f, "%-20s %-15s %-16s %12s\n", "layer", "op", "output", "params");
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        char shape[64];
        kiln_shape_str(shape, sizeof shape, nd->rank, nd->dims);
        size_t np = 0;
        for (int t = 0; t < nd->n_params; t++)
            np += nd->params[t].trainable ? nd->params[t].numel : 0;
        fprintf(f, "%-20s %-15s %-16s %12zu\n", nd->name, kiln_op_name(nd->op) ? kiln_op_name(nd->op) : "?", shape, np);
    }
    fprintf(f, "total parameters: %zu, forward FLOPs per example: %.0f\n", g->n_params, kiln_graph_flops(g));
}

int kiln_graph_split(kiln_graph_t *g, int input, int axis, const int *sizes, int n, const char *name, int *ids)
{
    if (input < 0 || input >= g->n || n < 1 || n > 64)
        return kiln_error(KILN_ERR_ARG, "split: input %d or part count %d out of range", input, n), -1;
    char nm[KILN_NAME_LEN];
    int start = 0;
    for (int k = 0; k < n; k++) {
        if (sizes[k] <= 0)
            return kiln_error(KILN_ERR_ARG, "split %s: part %d has size %d", name ? name : "", k, sizes[k]), -1;
        kiln_attrs a = {.axis = axis, .start = start, .end = start + sizes[k], .step = 1};
        if ((size_t)snprintf(nm, sizeof nm, "%s.%d", name ? name : "split", k) >= sizeof nm)
            return kiln_error(KILN_ERR_ARG, "split name '%s' too long", name ? name : ""), -1;
        int id = kiln_graph_add(g, KILN_OP_SLICE, &input, 1, &a, nm);
        if (id < 0)
            return -1;
        const kiln_node *x = &g->nodes[input];
        int ax = g->nodes[id].a.axis;
        if (k == n - 1 && start + sizes[k] != x->dims[ax])
            return kiln_error(KILN_ERR_SHAPE, "split %s: parts sum to %d, axis %d of %s has %d", name ? name : "",
                              start + sizes[k], ax, x->name, x->dims[ax]), -1;
        if (ids)
            ids[k] = id;
        start += sizes[k];
    }
    return n;
}
