/* Central finite differences against analytic gradients, shared by the gradient tests: up to 40
 * sampled coordinates of v, each moved by +-eps and the loss re-evaluated; coordinates on a kink
 * (one-sided slopes that disagree: relu, max-pool, relu6 inside the step) are skipped, and more
 * than a quarter of them on kinks fails the check as too weak. */
#ifndef KILN_TESTS_FD_CHECK_H
#define KILN_TESTS_FD_CHECK_H

#include <stdio.h>
#include "check.h"
#include "core/rng.h"

/* The loss at the current values (inputs and parameters), in double. */
typedef double (*fd_loss_fn)(void *ctx);

/* Compares analytic[0..n) with the differences of loss over v[0..n); returns the mismatches. */
static int fd_compare(fd_loss_fn loss, void *ctx, kiln_rng *rng, float *v, const float *analytic, size_t n,
                      const char *what, const char *spec)
{
    int bad = 0, kinks = 0, max = 40, tried = 0;
    double l0 = loss(ctx);
    for (int k = 0; k < max && (size_t)k < n; k++, tried++) {
        size_t i = n <= (size_t)max ? (size_t)k : kiln_rng_below(rng, (uint32_t)n);
        float old = v[i], eps = 1e-3f * (1.0f + fabsf(old));
        v[i] = old + eps;
        double lp = loss(ctx);
        v[i] = old - eps;
        double lm = loss(ctx);
        v[i] = old;
        double num = (lp - lm) / (2.0 * eps), an = analytic[i];
        double tol = 2e-2 * fmax(fabs(num), fabs(an)) + 3e-3;
        double right = (lp - l0) / eps, left = (l0 - lm) / eps;
        if (fabs(right - left) > 2 * tol) {   /* no usable central difference at a kink */
            kinks++;
            continue;
        }
        if (!(fabs(num - an) <= tol)) {   /* NaN counts as a disagreement */
            if (bad < 3)
                fprintf(stderr, "  %s[%zu]: analytic %.6g numeric %.6g\n", what, i, an, num);
            bad++;
        }
    }
    CHECK(bad == 0, "%d of the sampled %s gradients disagree for spec:\n%s", bad, what, spec);
    CHECK(kinks * 4 <= tried, "%d of %d sampled %s coordinates sit on kinks: the check is too weak for:\n%s",
          kinks, tried, what, spec);
    return bad;
}

#endif
