/* Test-set evaluation: accuracy and mean softmax cross-entropy, through an inference session. */
#include <math.h>
#include "core/omp_compat.h"
#include <stdlib.h>
#include "core/error.h"
#include "core/graph.h"
#include "kiln/dataset.h"

kiln_status kiln_evaluate(const kiln_model_t *m, const kiln_dataset *d, int batch, float *loss, float *accuracy)
{
    const kiln_graph_t *g = kiln_model_graph(m);
    int classes = (int)kiln_graph_numel(g, kiln_graph_output(g));
    const kiln_node *in = &g->nodes[0];
    kiln_status fit = kiln_dataset_check_classification(d);
    if (fit != KILN_OK)
        return fit;
    if (in->numel != (size_t)d->c * d->h * d->w)
        return kiln_error(KILN_ERR_SHAPE, "model input %dx%dx%d does not match dataset images %dx%dx%d",
                          in->dims[0], in->dims[1], in->dims[2], d->c, d->h, d->w);
    if (classes < d->n_classes)
        return kiln_error(KILN_ERR_SHAPE, "model has %d outputs, dataset has %d classes", classes, d->n_classes);
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch,
                                                                         .threads = omp_get_max_threads()});
    float *x = malloc((size_t)batch * in->numel * sizeof(float));
    float *z = malloc((size_t)batch * classes * sizeof(float));
    int *idx = malloc((size_t)batch * sizeof(int)), *y = malloc((size_t)batch * sizeof(int));
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
        kiln_dataset_gather(d, idx, b, x, y);
        kiln_session_run(s, x, b, z);
        for (int i = 0; i < b; i++) {
            const float *r = z + (size_t)i * classes;
            int am = 0;
            float mx = r[0];
            for (int k = 1; k < classes; k++)
                if (r[k] > mx) {
                    mx = r[k];
                    am = k;
                }
            double se = 0;
            for (int k = 0; k < classes; k++)
                se += exp((double)r[k] - mx);
            total += mx + log(se) - r[y[i]];
            correct += am == y[i];
        }
    }
    if (loss)
        *loss = (float)(total / d->n);
    if (accuracy)
        *accuracy = (float)correct / (float)d->n;
done:
    kiln_session_free(s);
    free(x);
    free(z);
    free(idx);
    free(y);
    return st;
}
