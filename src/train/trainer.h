/* The training loop: epochs of shuffled mini-batches, evaluation, checkpoints, metrics. */
#ifndef KILN_TRAIN_TRAINER_H
#define KILN_TRAIN_TRAINER_H

#include "core/rng.h"
#include "io/dataset.h"
#include "kiln/kiln_train.h"

/* Trains g in place on train, evaluating on test (may be NULL) after every epoch. */
kiln_status kiln_train(kiln_graph_t *g, const kiln_dataset *train, const kiln_dataset *test,
                       const kiln_train_config *cfg, kiln_train_result *res);
/* Applies the configured random crop and flip to a batch of images in place. */
void kiln_augment(float *x, int batch, int c, int h, int w, int crop_pad, bool flip, kiln_rng *rng, float *tmp);

#endif
