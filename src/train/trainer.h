/* The training loop: epochs of shuffled mini-batches, evaluation, checkpoints, metrics. */
#ifndef KILN_TRAIN_TRAINER_H
#define KILN_TRAIN_TRAINER_H

#include "core/rng.h"
#include "kiln/dataset.h"
#include "kiln/kiln_train.h"

/* Applies the configured random crop and flip to a batch of images in place. */
void kiln_augment(float *x, int batch, int c, int h, int w, int crop_pad, bool flip, kiln_rng *rng, float *tmp);

#endif
