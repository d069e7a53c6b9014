/* Model files: safetensors with the spec in __metadata__["kiln.spec"] and one tensor per
 * parameter, named "<layer>.<tensor>". Loading rebuilds the graph from the spec and checks every
 * tensor's dtype and shape against it. */
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

kiln_graph_t *kiln_graph_from_file(const kiln_st_file *f)
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
    kiln_graph_t *g = kiln_spec_parse(spec, origin);
    if (!g)
        return NULL;
    int n = kiln_graph_tensors(g, NULL, 0);
    kiln_st_tensor *want = calloc((size_t)n + 1, sizeof *want);
    if (!want) {
        kiln_error(KILN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    kiln_graph_tensors(g, want, n);
    for (int i = 0; i < n; i++) {
        const kiln_st_tensor *w = &want[i], *got = kiln_st_find(f, w->name);
        if (!got) {
            kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected F32 of %zu values, found no such tensor",
                       path, w->name, w->nbytes / sizeof(float));
            goto fail;
        }
        bool same = got->dtype == KILN_DT_F32 && got->ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++)
            same = got->dims[d] == w->dims[d];
        if (!same) {
            char ew[96] = "", fw[96] = "";
            for (int d = 0; d < w->ndim; d++)
                snprintf(ew + strlen(ew), sizeof ew - strlen(ew), "%s%lld", d ? "," : "", (long long)w->dims[d]);
            for (int d = 0; d < got->ndim && d < 8; d++)
                snprintf(fw + strlen(fw), sizeof fw - strlen(fw), "%s%lld", d ? "," : "", (long long)got->dims[d]);
            kiln_error(KILN_ERR_FORMAT, "%s: tensor \"%s\": expected F32 [%s], found %s [%s]", path, w->name, ew,
                       kiln_dtype_name(got->dtype), fw);
            goto fail;
        }
        memcpy((void *)w->data, got->data, w->nbytes);
    }
    free(want);
    return g;
fail:
    free(want);
    kiln_graph_free(g);
    return NULL;
}

kiln_graph_t *kiln_graph_load(const char *path)
{
    kiln_st_file *f = kiln_st_open(path);
    if (!f)
        return NULL;
    kiln_graph_t *g = kiln_graph_from_file(f);
    kiln_st_close(f);
    return g;
}
