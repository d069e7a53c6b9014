/* Test-set evaluation through an inference session: for class targets the mean softmax
 * cross-entropy over the output's last axis and the accuracy, per target (per token for a
 * sequence model); for float targets the mean squared error. */
#include <math.h>
#include "core/omp_compat.h"
#include <stdlib.h>
#include "core/error.h"
#include "core/graph.h"
#include "kiln/dataset.h"

kiln_status kiln_evaluate(const kiln_model_t *m, const kiln_dataset *d, int batch, float *loss, float *accuracy)
{
    const kiln_graph_t *g = kiln_model_graph(m);
    kiln_status fit = kiln_dataset_check_model(d, g);
    if (fit != KILN_OK)
        return fit;
    int in, out;
    kiln_graph_inputs(g, &in);
    kiln_graph_outputs(g, &out);
    const kiln_node *o = &g->nodes[out];
    bool classes = d->target.numel == 0 || d->target.gathered == KILN_DT_I32;
    int c = classes && o->rank ? o->dims[o->rank - 1] : 1;
    size_t rows = o->numel / (size_t)c, per_in = g->nodes[in].numel;
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch,
                                                                         .threads = omp_get_max_threads()});
    float *x = malloc((size_t)batch * per_in * sizeof(float));
    float *z = malloc((size_t)batch * o->numel * sizeof(float));
    int *idx = malloc((size_t)batch * sizeof(int));
    int32_t *y = malloc((size_t)batch * (classes ? rows : o->numel) * sizeof(int32_t));
    kiln_status st = KILN_OK;
    if (!s || !x || !z || !idx || !y) {
        st = s ? kiln_error(KILN_ERR_NOMEM, "out of memory for evaluation") : KILN_ERR_NOMEM;
        goto done;
    }
    double total = 0;
    long correct = 0;
    for (int off = 0; off < d->n; off += batch) {
        int b = d->n - off < batch ? d->n - off : batch;
        for (int i = 0; i < b; i++)
            idx[i] = off + i;
        if ((st = kiln_dataset_gather_typed(d, idx, b, x, y)) != KILN_OK)
            goto done;
        const void *ins[1] = {x};
        float *outs[1] = {z};
        if ((st = kiln_session_run_all(s, ins, b, outs)) != KILN_OK)
            goto done;
        if (!classes) {
            const float *t = (const float *)y;
            for (size_t i = 0; i < (size_t)b * o->numel; i++)
                total += ((double)z[i] - t[i]) * ((double)z[i] - t[i]) / (double)o->numel;
            continue;
        }
        for (size_t r = 0; r < (size_t)b * rows; r++) {
            const float *row = z + r * (size_t)c;
            int am = 0;
            float mx = row[0];
            for (int k = 1; k < c; k++)
                if (row[k] > mx) {
                    mx = row[k];
                    am = k;
                }
            double se = 0;
            for (int k = 0; k < c; k++)
                se += exp((double)row[k] - mx);
            total += (mx + log(se) - row[y[r]]) / (double)rows;
            correct += am == y[r];
        }
    }
    if (loss)
        *loss = (float)(total / d->n);
    if (accuracy)
        *accuracy = classes ? (float)((double)correct / ((double)d->n * (double)rows)) : NAN;
done:
    kiln_session_free(s);
    free(x);
    free(z);
    free(idx);
    free(y);
    return st;
}
