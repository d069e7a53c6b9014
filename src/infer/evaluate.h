/* Classification evaluation over a dataset. */
#ifndef KILN_INFER_EVALUATE_H
#define KILN_INFER_EVALUATE_H

#include "io/dataset.h"

/* Runs g in inference mode over every example of d in batches; mean cross-entropy and accuracy. */
kiln_status kiln_evaluate(const kiln_graph_t *g, const kiln_dataset *d, int batch, float *loss, float *accuracy);

#endif
