/* Sessions: a planned arena and scratch space, and the run loop over the model's nodes. In int8
 * models a node whose input has the other element type (u8 vs fp32) reads a converted copy. */
#include "core/omp_compat.h"
#include <stdio.h>
#include <stdlib.h>
#include "core/error.h"
#include "core/op_table.h"
#include "infer/runtime.h"
#include "ops/gemm.h"
#include "ops/ops.h"
#include "ops/winograd.h"

/* Element bytes node id needs of its inputs. */
static int needs_bytes(const kiln_model_t *m, int id)
{
    return m->q && m->q->int8[id] ? 1 : 4;
}

static int has_bytes(const kiln_model_t *m, int id)
{
    return m->q ? m->q->elem_bytes[id] : 4;
}

/* Whether node id runs by Winograd in session s. */
static bool winograd_node(const kiln_session_t *s, int id)
{
    return s->winograd && s->m->wino && s->m->wino[id];   /* int8 models have none */
}

kiln_session_t *kiln_session_create(const kiln_model_t *m, const kiln_session_options *opt)
{
    kiln_session_t *s = calloc(1, sizeof *s);
    if (!s) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->m = m;
    s->max_batch = opt && opt->max_batch > 0 ? opt->max_batch : 1;
    s->threads = opt && opt->threads > 0 ? opt->threads : 1;
    s->winograd = !(opt && opt->gemm_conv);
    if (m->q)
        snprintf(s->int8_label, sizeof s->int8_label, "int8 %s", kiln_qkernel_name(m->q->kernel));
    kiln_gemm_init();
    const kiln_graph_t *g = m->g;
    size_t *bytes = NULL;   /* per node and example; int8 models: u8 or fp32, fused pools are views */
    if (m->q && !(bytes = malloc((size_t)g->n * sizeof *bytes))) {
        free(s);
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; bytes && i < g->n; i++) {
        int pool = m->q->pool_of[i];
        bytes[i] = kiln_qnode_pooled(m, i) ? 0 : (pool ? g->nodes[pool].numel : g->nodes[i].numel) * m->q->elem_bytes[i];
    }
    kiln_status planned = kiln_plan_create(g, s->max_batch, bytes, &s->plan);
    free(bytes);
    if (planned != KILN_OK) {
        free(s);
        return NULL;
    }
    size_t convert_floats = 0;
    int convert_slots = 0;
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (!nd->n_inputs)
            continue;
        size_t w = m->q && m->q->int8[i]
                       ? kiln_qnode_scratch_floats(m, i, s->max_batch) * (nd->op == KILN_OP_CONV2D ? (size_t)s->threads : 1)
                   : winograd_node(s, i) ? kiln_winograd_work_floats(nd, &g->nodes[nd->inputs[0]]) * (size_t)s->threads
                                         : kiln_node_work_floats(g, i, s->threads);
        s->scratch_floats = w > s->scratch_floats ? w : s->scratch_floats;
        for (int j = 0; j < nd->n_inputs && !kiln_op_is_view(nd->op); j++)
            if (has_bytes(m, nd->inputs[j]) != needs_bytes(m, i)) {
                size_t f = g->nodes[nd->inputs[j]].numel * (size_t)s->max_batch;
                convert_floats = f > convert_floats ? f : convert_floats;
                convert_slots = j + 1 > convert_slots ? j + 1 : convert_slots;
            }
    }
    s->arena = aligned_alloc(64, (s->plan.arena_floats ? s->plan.arena_floats : 16) * sizeof(float));
    s->scratch = aligned_alloc(64, ((s->scratch_floats + 15) / 16 * 16 + 16) * sizeof(float));
    if (opt && opt->profile)
        s->node_seconds = calloc((size_t)g->n, sizeof *s->node_seconds);
    s->at = malloc((size_t)g->n * sizeof *s->at);
    bool ok = s->arena && s->scratch && s->at && (s->node_seconds || !(opt && opt->profile));
    for (int i = 0; ok && i < g->n; i++) {
        int root = i;   /* a view of a view ... of a param reads the param */
        while (kiln_op_is_view(g->nodes[root].op))
            root = g->nodes[root].inputs[0];
        if (g->nodes[root].op == KILN_OP_PARAM)
            s->at[i] = kiln_node_tensor(g, &g->nodes[root], 0);
        else
            s->at[i] = s->arena + s->plan.offset[i];
    }
    for (int j = 0; j < convert_slots && ok; j++)
        ok = (s->convert[j] = aligned_alloc(64, (convert_floats + 15) / 16 * 16 * sizeof(float))) != NULL;
    if (!ok) {
        size_t bytes = s->plan.arena_floats * sizeof(float);
        kiln_session_free(s);
        kiln_error(KILN_ERR_NOMEM, "out of memory for a %zu-byte arena", bytes);
        return NULL;
    }
    return s;
}

void kiln_session_free(kiln_session_t *s)
{
    if (!s)
        return;
    kiln_plan_free(&s->plan);
    free(s->arena);
    free(s->scratch);
    free(s->node_seconds);
    free(s->at);
    for (int j = 0; j < KILN_MAX_INPUTS; j++)
        free(s->convert[j]);
    free(s);
}

/* Input j of node id as the node needs it: in the arena, or converted into a scratch slot. */
static const void *input_for(kiln_session_t *s, int id, int j, int batch)
{
    const kiln_model_t *m = s->m;
    int src = m->g->nodes[id].inputs[j];
    void *p = s->at[src];
    int have = has_bytes(m, src), need = needs_bytes(m, id);
    if (have == need)
        return p;
    int c;
    size_t hw;
    kiln_qinput_dims(m->g, id, src, &c, &hw);
    if (need == 1)
        kiln_quantize_u8(p, c, hw, batch, m->q->qp[src], (uint8_t *)s->convert[j]);
    else
        kiln_dequantize_u8(p, c, hw, batch, m->q->qp[src], s->convert[j]);
    return s->convert[j];
}

/* Runs node i (not a flatten) of a batch from the arena into the arena. */
static void run_node(kiln_session_t *s, int i, int batch)
{
    const kiln_model_t *m = s->m;
    const kiln_node *nd = &m->g->nodes[i];
    void *out = s->at[i];
    if (m->q && m->q->int8[i]) {
        const void *in[KILN_MAX_INPUTS];
        for (int j = 0; j < nd->n_inputs; j++)
            in[j] = input_for(s, i, j, batch);
        kiln_qnode_forward(m, i, in, out, batch, s->scratch, s->threads);
        return;
    }
    if (winograd_node(s, i)) {
        kiln_conv2d_winograd(m->g, nd, m->wino[i], input_for(s, i, 0, batch), batch, out, s->scratch, s->threads,
                             nd->a.act);
        return;
    }
    int examples = nd->batched ? batch : 1;
    if (m->packed && m->packed[i]) {   /* a linear over tokens, its weight packed at load */
        int rows = (int)(nd->numel / (size_t)nd->params[0].dims[0]) * examples;
        if (kiln_dense_forward_packed(m->g, nd, m->packed[i], input_for(s, i, 0, batch), rows, out)) {
            if (nd->a.act != KILN_OP_INPUT)
                kiln_activation_forward(nd->a.act, nd->a.alpha, out, out, nd->numel * (size_t)examples);
            return;
        }
    }
    kiln_fwd_args a = {.batch = examples, .out = out, .work = s->scratch, .threads = s->threads};
    for (int j = 0; j < nd->n_inputs; j++) {
        a.in[j] = input_for(s, i, j, batch);
        a.in_batch[j] = m->g->nodes[nd->inputs[j]].batched ? batch : 1;
    }
    kiln_node_forward(m->g, i, &a);
}

kiln_status kiln_session_run_all(kiln_session_t *s, const void *const *inputs, int batch, float *const *outputs)
{
    const kiln_model_t *m = s->m;
    const kiln_graph_t *g = m->g;
    if (batch < 1 || batch > s->max_batch)
        return kiln_error(KILN_ERR_ARG, "batch %d outside this session's 1..%d", batch, s->max_batch);
    if (!inputs || !outputs)
        return kiln_error(KILN_ERR_ARG, "inputs and outputs must not be NULL");
    omp_set_num_threads(s->threads);   /* this thread's setting only */
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op != KILN_OP_INPUT)
            continue;
        if (!inputs[k])
            return kiln_error(KILN_ERR_ARG, "input %s: no data given", nd->name);
        if (nd->dtype == KILN_DT_I32 && kiln_graph_check_indices(g, i, inputs[k], batch) != KILN_OK)
            return KILN_ERR_ARG;
        memcpy(s->at[i], inputs[k++], nd->numel * (size_t)batch * 4);   /* f32 and i32 alike */
    }
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_INPUT || nd->op == KILN_OP_PARAM || kiln_op_is_view(nd->op) || kiln_qnode_pooled(m, i))
            continue;   /* given, the model's, or a view of its input's buffer (a fused pool: its conv's) */
        double t0 = s->node_seconds ? omp_get_wtime() : 0;
        run_node(s, i, batch);
        if (s->node_seconds)
            s->node_seconds[i] += omp_get_wtime() - t0;
    }
    int outs[KILN_MAX_OUTPUTS], n_outs = kiln_graph_outputs(g, outs);
    for (k = 0; k < n_outs; k++) {
        int o = outs[k];
        size_t n = g->nodes[o].numel * (g->nodes[o].batched ? (size_t)batch : 1);
        if (!outputs[k])
            continue;
        if (has_bytes(m, o) == 1) {
            int c;
            size_t hw;
            kiln_qtensor_dims(g, o, &c, &hw);
            kiln_dequantize_u8((const uint8_t *)s->at[o], c, hw, batch, m->q->qp[o], outputs[k]);
        } else {
            memcpy(outputs[k], s->at[o], n * sizeof(float));
        }
    }
    return KILN_OK;
}

kiln_status kiln_session_run(kiln_session_t *s, const float *input, int batch, float *output)
{
    const kiln_graph_t *g = s->m->g;
    if (kiln_graph_input_count(g) != 1 || kiln_graph_outputs(g, NULL) != 1)
        return kiln_error(KILN_ERR_ARG, "the model has %d inputs and %d outputs: use kiln_session_run_all",
                          kiln_graph_input_count(g), kiln_graph_outputs(g, NULL));
    const void *in[1] = {input};
    float *out[1] = {output};
    return kiln_session_run_all(s, in, batch, out);
}

size_t kiln_session_arena_bytes(const kiln_session_t *s) { return s->plan.arena_floats * sizeof(float); }
size_t kiln_session_scratch_bytes(const kiln_session_t *s) { return s->scratch_floats * sizeof(float); }
size_t kiln_session_peak_live_bytes(const kiln_session_t *s) { return s->plan.peak_live_floats * sizeof(float); }

const char *kiln_session_node_kernel(const kiln_session_t *s, int node)
{
    const kiln_model_t *m = s->m;
    if (node < 0 || node >= m->g->n)
        return "";
    const kiln_node *nd = &m->g->nodes[node];
    if (m->q && m->q->int8[node] && (nd->op == KILN_OP_CONV2D || nd->op == KILN_OP_DENSE || nd->op == KILN_OP_LINEAR))
        return kiln_qgemm_uses_amx(m->q->kernel, kiln_qnode_product_rows(m, node, s->max_batch, s->threads),
                                   m->q->qw[node].k)
                   ? "int8 amx"
                   : s->int8_label;
    if (kiln_qnode_pooled(m, node))
        return "fused (conv)";
    if (nd->op == KILN_OP_CONV2D)
        return winograd_node(s, node) ? "winograd"
               : kiln_conv2d_is_depthwise(nd, &m->g->nodes[nd->inputs[0]]) ? "depthwise" : "im2col+gemm";
    if (nd->op == KILN_OP_DENSE)
        return s->max_batch == 1 ? "gemv" : "gemm";
    return kiln_op_name(nd->op);
}

double kiln_session_node_seconds(const kiln_session_t *s, int node)
{
    return s->node_seconds && node >= 0 && node < s->m->g->n ? s->node_seconds[node] : 0.0;
}

void kiln_session_profile_reset(kiln_session_t *s)
{
    if (s->node_seconds)
        memset(s->node_seconds, 0, (size_t)s->m->g->n * sizeof *s->node_seconds);
}
