/* Model files for the runtime: fp32 (optionally with F16 weights) and int8. An int8 file holds
 * the optimised spec, "<layer>.weight" as I8 with "<layer>.weight_scale" and "<layer>.bias" (F32)
 * for int8 conv/dense, every node's activation quantisation as "<layer>.quant" (F32 [scale,
 * zero]), and the fp32 tensors of the nodes that stay fp32. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "core/error.h"
#include "infer/runtime.h"
#include "io/graph_file.h"

/* Float to IEEE half, rounding to nearest even. */
static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff)
        return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp), half = man >> shift, rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | (uint32_t)exp << 10 | man >> 13, rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)h;
}

typedef struct {
    kiln_st_tensor *t;
    int n, cap;
    void **owned;   /* converted copies to free */
    int n_owned;
} tensor_list;

static kiln_st_tensor *add(tensor_list *l, const char *name, kiln_dtype dt, int ndim, const int64_t *dims,
                           const void *data, size_t nbytes)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 32;
        kiln_st_tensor *t = realloc(l->t, (size_t)cap * sizeof *t);
        if (!t)
            return NULL;
        l->t = t;
        void **o = realloc(l->owned, (size_t)cap * sizeof *o);
        if (!o)
            return NULL;
        l->owned = o;
        l->cap = cap;
    }
    kiln_st_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->dims[d] = dims[d];
    t->data = data;
    t->nbytes = nbytes;
    return t;
}

static kiln_status add_node_fp32(tensor_list *l, const kiln_graph_t *g, int id, bool fp16)
{
    const kiln_node *nd = &g->nodes[id];
    for (int k = 0; k < nd->n_params; k++) {
        const kiln_param_ref *p = &nd->params[k];
        char name[160];
        int64_t dims[KILN_MAX_RANK];
        snprintf(name, sizeof name, "%s.%s", nd->name, p->name);
        for (int d = 0; d < p->ndim; d++)
            dims[d] = p->dims[d];
        const float *src = kiln_node_tensor(g, nd, k);
        if (!fp16) {
            if (!add(l, name, KILN_DT_F32, p->ndim, dims, src, p->numel * sizeof(float)))
                return KILN_ERR_NOMEM;
            continue;
        }
        uint16_t *h = malloc(p->numel * sizeof(uint16_t) + 1);
        if (!h || !add(l, name, KILN_DT_F16, p->ndim, dims, h, p->numel * sizeof(uint16_t))) {
            free(h);
            return KILN_ERR_NOMEM;
        }
        l->owned[l->n_owned++] = h;
        for (size_t i = 0; i < p->numel; i++)
            h[i] = float_to_half(src[i]);
    }
    return KILN_OK;
}

kiln_status kiln_model_save(const kiln_model_t *m, const char *path, bool fp16_weights, const char *const *extra_meta)
{
    const kiln_graph_t *g = m->g;
    const kiln_qmodel *q = m->q;
    tensor_list l = {0};
    char *spec = kiln_graph_to_spec(g);
    int n_meta = 0;
    while (extra_meta && extra_meta[n_meta])
        n_meta++;
    const char **meta = calloc((size_t)n_meta + 9, sizeof *meta);
    float (*quant)[2] = q ? calloc((size_t)g->n, sizeof *quant) : NULL;
    kiln_status st = KILN_ERR_NOMEM;
    if (!spec || !meta || (q && !quant))
        goto done;
    int k = 0;
    meta[k++] = "kiln.format", meta[k++] = "1", meta[k++] = "kiln.spec", meta[k++] = spec;
    if (q)
        meta[k++] = "kiln.quant", meta[k++] = "int8", meta[k++] = "kiln.quant.calibration",
        meta[k++] = kiln_model_calibration(m);
    else if (fp16_weights)
        meta[k++] = "kiln.weights", meta[k++] = "fp16";
    for (int i = 0; i < n_meta; i++)
        meta[k++] = extra_meta[i];
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        char name[160];
        if (!q || !q->int8[i] || nd->op == KILN_OP_MAXPOOL2D) {
            if (add_node_fp32(&l, g, i, fp16_weights && !q) != KILN_OK)
                goto done;
        } else {
            const kiln_qweights *qw = &q->qw[i];
            int64_t dims[KILN_MAX_RANK], mdim[1] = {qw->m};
            for (int d = 0; d < nd->params[0].ndim; d++)
                dims[d] = nd->params[0].dims[d];
            snprintf(name, sizeof name, "%s.weight", nd->name);
            if (!add(&l, name, KILN_DT_I8, nd->params[0].ndim, dims, qw->w, (size_t)qw->m * qw->k))
                goto done;
            snprintf(name, sizeof name, "%s.weight_scale", nd->name);
            if (!add(&l, name, KILN_DT_F32, 1, mdim, qw->w_scale, (size_t)qw->m * sizeof(float)))
                goto done;
            snprintf(name, sizeof name, "%s.bias", nd->name);
            if (!add(&l, name, KILN_DT_F32, 1, mdim, qw->bias, (size_t)qw->m * sizeof(float)))
                goto done;
        }
        if (q) {
            int64_t two[1] = {2};
            quant[i][0] = q->qp[i].scale;
            quant[i][1] = (float)q->qp[i].zero;
            snprintf(name, sizeof name, "%s.quant", nd->name);
            if (!add(&l, name, KILN_DT_F32, 1, two, quant[i], 2 * sizeof(float)))
                goto done;
        }
    }
    st = kiln_st_write(path, l.t, l.n, meta);
done:
    if (st == KILN_ERR_NOMEM)
        kiln_error(st, "out of memory saving %s", path);
    for (int i = 0; i < l.n_owned; i++)
        free(l.owned[i]);
    free(l.owned);
    free(l.t);
    free(spec);
    free(meta);
    free(quant);
    return st;
}

/* Reads an int8 model's quantisation from f into m (graph already parsed). */
static kiln_status load_int8(const kiln_st_file *f, kiln_model_t *m)
{
    const char *path = kiln_st_path(f);
    kiln_graph_t *g = m->g;
    kiln_qmodel *q = m->q = calloc(1, sizeof *q);
    if (!q || kiln_qmodel_layout(g, q) != KILN_OK)
        return KILN_ERR_NOMEM;
    q->kernel = kiln_qgemm_kernel();
    const char *cal = kiln_st_meta(f, "kiln.quant.calibration");
    q->method = cal && strcmp(cal, "percentile") == 0 ? KILN_CALIBRATE_PERCENTILE : KILN_CALIBRATE_MINMAX;
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        char name[160];
        float qv[2];
        int64_t two[1] = {2};
        snprintf(name, sizeof name, "%s.quant", nd->name);
        if (kiln_file_tensor(f, name, KILN_DT_F32, 1, two, qv) != KILN_OK)
            return KILN_ERR_FORMAT;
        if (!(qv[0] > 0) || !(qv[1] >= 0 && qv[1] <= 255) || qv[1] != floorf(qv[1]))
            return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected a positive scale and an integer zero "
                              "point in 0..255, found [%g, %g]", path, name, qv[0], qv[1]);
        q->qp[i] = (kiln_qparams){qv[0], (int)qv[1]};
    }
    kiln_qmodel_tie_views(g, q);   /* files before this rule stored their own ranges */
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (!q->int8[i] || nd->op == KILN_OP_MAXPOOL2D) {
            if (kiln_file_node_tensors(f, g, i) != KILN_OK)
                return KILN_ERR_FORMAT;
            continue;
        }
        kiln_qweights *qw = &q->qw[i];
        qw->m = kiln_qweights_outputs(nd);
        qw->k = (int)(nd->params[0].numel / (size_t)qw->m);
        qw->w = malloc(nd->params[0].numel);
        qw->w_scale = malloc((size_t)qw->m * sizeof(float));
        qw->bias = malloc((size_t)qw->m * sizeof(float));
        if (!qw->w || !qw->w_scale || !qw->bias)
            return kiln_error(KILN_ERR_NOMEM, "out of memory");
        char name[160];
        int64_t dims[KILN_MAX_RANK], mdim[1] = {qw->m};
        for (int d = 0; d < nd->params[0].ndim; d++)
            dims[d] = nd->params[0].dims[d];
        snprintf(name, sizeof name, "%s.weight", nd->name);
        if (kiln_file_tensor(f, name, KILN_DT_I8, nd->params[0].ndim, dims, qw->w) != KILN_OK)
            return KILN_ERR_FORMAT;
        snprintf(name, sizeof name, "%s.weight_scale", nd->name);
        if (kiln_file_tensor(f, name, KILN_DT_F32, 1, mdim, qw->w_scale) != KILN_OK)
            return KILN_ERR_FORMAT;
        for (int j = 0; j < qw->m; j++)
            if (!(qw->w_scale[j] > 0))
                return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected positive scales, found %g at %d",
                                  path, name, qw->w_scale[j], j);
        snprintf(name, sizeof name, "%s.bias", nd->name);
        if (kiln_file_tensor(f, name, KILN_DT_F32, 1, mdim, qw->bias) != KILN_OK)
            return KILN_ERR_FORMAT;
        for (size_t t = 0; t < nd->params[0].numel; t++)
            if (qw->w[t] == -128)
                return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s.weight\": expected values in -127..127, found -128",
                                  path, nd->name);
        if (kiln_qweights_prepare(g, q, i) != KILN_OK)
            return KILN_ERR_NOMEM;
    }
    return KILN_OK;
}

kiln_model_t *kiln_model_load(const char *path)
{
#ifndef KILN_MINIMAL
    if (kiln_path_is_onnx(path)) {   /* an imported graph, optimised like any other */
        kiln_graph_t *g = kiln_graph_import_onnx(path);
        kiln_model_t *m = g ? kiln_model_create(g, true) : NULL;
        kiln_graph_free(g);
        return m;
    }
#endif
    kiln_st_file *f = kiln_st_open(path);
    if (!f)
        return NULL;
    kiln_model_t *m = NULL;
    const char *quant = kiln_st_meta(f, "kiln.quant");
    if (!quant) {
        kiln_graph_t *g = kiln_graph_from_file(f);
        if (g)
            m = kiln_model_create(g, true);
        kiln_graph_free(g);
    } else if (strcmp(quant, "int8") != 0) {
        kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"kiln.quant\": expected \"int8\", found \"%.40s\"", path, quant);
    } else if ((m = calloc(1, sizeof *m)) && (m->g = kiln_graph_spec_from_file(f)) && load_int8(f, m) == KILN_OK) {
        /* loaded (no Winograd kernels: its groups-1 convolutions all run in int8) */
    } else {
        if (!m)
            kiln_error(KILN_ERR_NOMEM, "out of memory");
        kiln_model_free(m);
        m = NULL;
    }
    kiln_st_close(f);
    return m;
}
