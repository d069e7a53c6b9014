/* Training curves: reading the trainer's metrics log (JSON lines) and drawing runs as an SVG
 * chart. */
#ifndef KILN_TRAIN_PLOT_H
#define KILN_TRAIN_PLOT_H

#include "kiln/kiln.h"

/* One run's curves read from a metrics log, ordered by global step (a value the log did not
 * give, such as a NaN or a missing test metric, is NAN and is skipped when drawing). Owns its
 * arrays. */
typedef struct {
    char label[128];   /* legend text */
    int n;             /* logged steps */
    double *step, *elapsed, *loss, *acc;  /* global step, elapsed seconds, train loss/accuracy */
    int n_epochs;      /* epoch-end lines */
    double *epoch_step, *epoch_elapsed, *test_acc, *test_loss;
} kiln_curve;

/* Reads a metrics JSON-lines file; label NULL uses the file name. Where a global step appears
 * on several lines (a resumed run appends), the last line wins. Errors name file, line and
 * field. On failure *out is left empty. */
kiln_status kiln_curve_load(const char *path, const char *label, kiln_curve *out);
/* Frees c's arrays and empties it (NULL is fine). */
void kiln_curve_free(kiln_curve *c);

/* Writes a self-contained SVG chart (900x560) of n_runs runs in distinct colours: training loss,
 * and train accuracy (thin) with test accuracy (markers and line), against global step or, when
 * by_time, elapsed seconds; with axes, ticks, legend and title (may be NULL). Written
 * atomically (temp file in the same directory, then rename). */
kiln_status kiln_plot_svg(const char *path, const kiln_curve *runs, int n_runs, const char *title,
                          bool by_time);

#endif
