/* Test-set evaluation: accuracy and mean softmax cross-entropy in inference mode. */
#include <math.h>
#include <stdlib.h>
#include "core/error.h"
#include "core/graph.h"
#include "kiln/dataset.h"

kiln_status kiln_evaluate(const kiln_graph_t *g, const kiln_dataset *d, int batch, float *loss, float *accuracy)
{
    int out = kiln_graph_output(g);
    int classes = (int)kiln_graph_numel(g, out);
    const kiln_node *in = &g->nodes[0];
    if (in->numel != (size_t)d->c * d->h * d->w)
        return kiln_error(KILN_ERR_SHAPE, "model input %dx%dx%d does not match dataset images %dx%dx%d",
                          in->shape[0], in->shape[1], in->shape[2], d->c, d->h, d->w);
    if (classes < d->n_classes)
        return kiln_error(KILN_ERR_SHAPE, "model has %d outputs, dataset has %d classes", classes, d->n_classes);
    kiln_exec_t *e = kiln_exec_create(g, batch);
    float *x = malloc((size_t)batch * in->numel * sizeof(float));
    int *idx = malloc((size_t)batch * sizeof(int)), *y = malloc((size_t)batch * sizeof(int));
    if (!e || !x || !idx || !y) {
        kiln_exec_free(e);
        free(x);
        free(idx);
        free(y);
        return kiln_error(KILN_ERR_NOMEM, "out of memory for evaluation");
    }
    double total = 0;
    long correct = 0;
    for (int s = 0; s < d->n; s += batch) {
        int b = d->n - s < batch ? d->n - s : batch;
        for (int i = 0; i < b; i++)
            idx[i] = s + i;
        kiln_dataset_gather(d, idx, b, x, y);
        const float *z = kiln_exec_run(e, x, b);
        for (int i = 0; i < b; i++) {
            const float *r = z + (size_t)i * classes;
            int am = 0;
            float m = r[0];
            for (int k = 1; k < classes; k++)
                if (r[k] > m) {
                    m = r[k];
                    am = k;
                }
            double se = 0;
            for (int k = 0; k < classes; k++)
                se += exp((double)r[k] - m);
            total += m + log(se) - r[y[i]];
            correct += am == y[i];
        }
    }
    kiln_exec_free(e);
    free(x);
    free(idx);
    free(y);
    if (loss)
        *loss = (float)(total / d->n);
    if (accuracy)
        *accuracy = (float)correct / (float)d->n;
    return KILN_OK;
}
