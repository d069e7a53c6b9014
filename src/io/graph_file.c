/* Model files: safetensors with the spec in __metadata__["kiln.spec"] and one tensor per
 * parameter, named "<layer>.<tensor>". Loading rebuilds the graph from the spec and checks every
 * tensor's dtype and shape against it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "io/graph_file.h"
#include "io/safetensors.h"

int kiln_graph_tensors(const kiln_graph_t *g, kiln_st_tensor *out, int max)
{
    int n = 0;
    for (int i = 0; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        for (int t = 0; t < nd->n_params; t++) {
            if (n < max) {
                kiln_st_tensor *st = &out[n];
                memset(st, 0, sizeof *st);
                snprintf(st->name, sizeof st->name, "%s.%s", nd->name, nd->params[t].name);
                st->dtype = KILN_DT_F32;
                st->ndim = nd->params[t].ndim;
                for (int d = 0; d < st->ndim; d++)
                    st->dims[d] = nd->params[t].dims[d];
                st->data = kiln_node_tensor(g, nd, t);
                st->nbytes = nd->params[t].numel * sizeof(float);
            }
            n++;
        }
    }
    return n;
}

kiln_status kiln_graph_save_with(const kiln_graph_t *g, const char *path, const char *const *extra_meta,
                                 const kiln_st_tensor *extra, int n_extra)
{
    int n = kiln_graph_tensors(g, NULL, 0);
    kiln_st_tensor *ts = calloc((size_t)(n + n_extra + 1), sizeof *ts);
    char *spec = kiln_graph_to_spec(g);
    int n_meta = 0;
    while (extra_meta && extra_meta[n_meta])
        n_meta++;
    const char **meta = calloc((size_t)n_meta + 5, sizeof *meta);
    kiln_status st = KILN_ERR_NOMEM;
    if (!ts || !spec || !meta) {
        kiln_error(st, "out of memory saving %s", path);
        goto done;
    }
    kiln_graph_tensors(g, ts, n);
    if (n_extra > 0)
        memcpy(ts + n, extra, (size_t)n_extra * sizeof *ts);
    meta[0] = "kiln.format";
    meta[1] = "1";
    meta[2] = "kiln.spec";
    meta[3] = spec;
    for (int i = 0; i < n_meta; i++)
        meta[4 + i] = extra_meta[i];
    st = kiln_st_write(path, ts, n + n_extra, meta);
done:
    free(ts);
    free(spec);
    free(meta);
    return st;
}

kiln_status kiln_graph_save(const kiln_graph_t *g, const char *path, const char *const *extra_meta)
{
    return kiln_graph_save_with(g, path, extra_meta, NULL, 0);
}

kiln_graph_t *kiln_graph_spec_from_file(const kiln_st_file *f)
{
    const char *path = kiln_st_path(f);
    const char *fmt = kiln_st_meta(f, "kiln.format");
    if (!fmt || strcmp(fmt, "1") != 0) {
        kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"kiln.format\": expected \"1\", found %s%s%s", path,
                   fmt ? "\"" : "", fmt ? fmt : "nothing (not a kiln model file)", fmt ? "\"" : "");
        return NULL;
    }
    const char *spec = kiln_st_meta(f, "kiln.spec");
    if (!spec) {
        kiln_error(KILN_ERR_FORMAT, "%s: __metadata__ \"kiln.spec\": expected the model spec, found nothing", path);
        return NULL;
    }
    char origin[512];
    snprintf(origin, sizeof origin, "%s (kiln.spec)", path);
    return kiln_spec_parse(spec, origin);
}

/* IEEE half to float. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {   /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

kiln_status kiln_file_tensor(const kiln_st_file *f, const char *name, kiln_dtype dtype, int ndim,
                             const int64_t *dims, void *dst)
{
    const char *path = kiln_st_path(f);
    const kiln_st_tensor *got = kiln_st_find(f, name);
    char ew[128] = "", fw[128] = "";
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        snprintf(ew + strlen(ew), sizeof ew - strlen(ew), "%s%lld", d ? "," : "", (long long)dims[d]);
        numel *= (size_t)dims[d];
    }
    if (!got)
        return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected %s [%s], found no such tensor", path, name,
                          kiln_dtype_name(dtype), ew);
    bool half = dtype == KILN_DT_F32 && got->dtype == KILN_DT_F16;   /* fp16 weight storage */
    bool same = (got->dtype == dtype || half) && got->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = got->dims[d] == dims[d];
    if (!same) {
        for (int d = 0; d < got->ndim && d < 8; d++)
            snprintf(fw + strlen(fw), sizeof fw - strlen(fw), "%s%lld", d ? "," : "", (long long)got->dims[d]);
        return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected %s [%s], found %s [%s]", path, name,
                          kiln_dtype_name(dtype), ew, kiln_dtype_name(got->dtype), fw);
    }
    if (half) {
        const uint16_t *h = got->data;
        for (size_t i = 0; i < numel; i++)
            ((float *)dst)[i] = half_to_float(h[i]);
    } else {
        memcpy(dst, got->data, numel * kiln_dtype_size(dtype));
    }
    if (dtype == KILN_DT_F32)
        for (size_t i = 0; i < numel; i++)
            if (!isfinite(((float *)dst)[i]))
                return kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected finite values, found %g at %zu", path,
                                  name, ((float *)dst)[i], i);
    return KILN_OK;
}

kiln_status kiln_file_node_tensors(const kiln_st_file *f, kiln_graph_t *g, int id)
{
    const kiln_node *nd = &g->nodes[id];
    for (int t = 0; t < nd->n_params; t++) {
        char name[160];
        int64_t dims[KILN_MAX_RANK];   /* params and constants have up to 6 dims */
        snprintf(name, sizeof name, "%s.%s", nd->name, nd->params[t].name);
        for (int d = 0; d < nd->params[t].ndim; d++)
            dims[d] = nd->params[t].dims[d];
        if (kiln_file_tensor(f, name, KILN_DT_F32, nd->params[t].ndim, dims, kiln_node_tensor(g, nd, t)) != KILN_OK)
            return KILN_ERR_FORMAT;
    }
    return KILN_OK;
}

kiln_graph_t *kiln_graph_from_file(const kiln_st_file *f)
{
    kiln_graph_t *g = kiln_graph_spec_from_file(f);
    if (!g)
        return NULL;
    if (kiln_st_meta(f, "kiln.quant")) {
        kiln_error(KILN_ERR_FORMAT, "%s: an int8 model (__metadata__ \"kiln.quant\"); load it with kiln_model_load",
                   kiln_st_path(f));
        kiln_graph_free(g);
        return NULL;
    }
    for (int i = 0; i < g->n; i++)
        if (kiln_file_node_tensors(f, g, i) != KILN_OK) {
            kiln_graph_free(g);
            return NULL;
        }
    return g;
}

bool kiln_path_is_onnx(const char *path)
{
    size_t n = strlen(path);
    return n > 5 && strcmp(path + n - 5, ".onnx") == 0;
}

kiln_graph_t *kiln_graph_load(const char *path)
{
#ifndef KILN_MINIMAL   /* (the minimal build has no ONNX reader) */
    if (kiln_path_is_onnx(path))
        return kiln_graph_import_onnx(path);
#endif
    kiln_st_file *f = kiln_st_open(path);
    if (!f)
        return NULL;
    kiln_graph_t *g = kiln_graph_from_file(f);
    kiln_st_close(f);
    return g;
}
