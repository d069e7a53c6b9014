/* Losses: fused, numerically stable softmax cross-entropy, and mean squared error. */
#include <math.h>
#include "kiln/kiln_train.h"

/* log-sum-exp of one row and its argmax. */
static double row_lse(const float *z, int classes, int *argmax)
{
    float m = z[0];
    int am = 0;
    for (int k = 1; k < classes; k++)
        if (z[k] > m) {
            m = z[k];
            am = k;
        }
    double s = 0;
    for (int k = 0; k < classes; k++)
        s += exp((double)z[k] - m);
    *argmax = am;
    return m + log(s);
}

void kiln_loss_softmax_ce_each(const float *logits, const int *labels, int batch, int classes, float *loss)
{
    for (int b = 0; b < batch; b++) {
        const float *z = logits + (size_t)b * classes;
        int am;
        loss[b] = (float)(row_lse(z, classes, &am) - z[labels[b]]);
    }
}

float kiln_loss_softmax_ce(const float *logits, const int *labels, int batch, int classes,
                           float *dlogits, int *correct)
{
    double total = 0;
    int ok = 0;
    for (int b = 0; b < batch; b++) {
        const float *z = logits + (size_t)b * classes;
        int am;
        double lse = row_lse(z, classes, &am);
        total += lse - z[labels[b]];
        ok += am == labels[b];
        if (dlogits) {
            float *d = dlogits + (size_t)b * classes;
            for (int k = 0; k < classes; k++)
                d[k] = (float)((exp((double)z[k] - lse) - (k == labels[b])) / batch);
        }
    }
    if (correct)
        *correct = ok;
    return (float)(total / batch);
}

float kiln_loss_mse(const float *y, const float *target, size_t n, float *dy)
{
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - target[i];
        total += d * d;
        if (dy)
            dy[i] = (float)(2.0 * d / (double)n);
    }
    return (float)(total / (double)n);
}
