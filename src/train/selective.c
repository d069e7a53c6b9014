/* Selective Backprop's selector (Jiang et al., arXiv 1910.00762): an example is backpropagated
 * with probability P = (share of the last R recorded losses below its loss)^beta. The history is
 * a ring (arrival order, for dropping the oldest) mirrored by a sorted array (for the share). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "kiln/kiln_train.h"

struct kiln_sb_selector {
    int cap, len, head;   /* head: the oldest entry of ring when full, else the next free slot */
    float beta;
    float *ring, *sorted;
};

kiln_sb_selector_t *kiln_sb_selector_create(int history, float beta)
{
    if (history < 1 || !(beta >= 0) || !isfinite(beta)) {
        kiln_error(KILN_ERR_ARG, "selective backprop: history (%d) must be >= 1 and beta (%g) finite and >= 0",
                   history, beta);
        return NULL;
    }
    kiln_sb_selector_t *s = calloc(1, sizeof *s);
    if (s) {
        s->ring = malloc((size_t)history * sizeof(float));
        s->sorted = malloc((size_t)history * sizeof(float));
    }
    if (!s || !s->ring || !s->sorted) {
        kiln_sb_selector_free(s);
        kiln_error(KILN_ERR_NOMEM, "out of memory for a %d-loss history", history);
        return NULL;
    }
    s->cap = history;
    s->beta = beta;
    return s;
}

void kiln_sb_selector_free(kiln_sb_selector_t *s)
{
    if (!s)
        return;
    free(s->ring);
    free(s->sorted);
    free(s);
}

/* Entries of the sorted history strictly below v (NaN counts as above everything). */
static int count_below(const kiln_sb_selector_t *s, float v)
{
    if (isnan(v))
        return s->len;
    int lo = 0, hi = s->len;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (s->sorted[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

double kiln_sb_probability(const kiln_sb_selector_t *s, float loss)
{
    if (s->len == 0)
        return 1.0;
    double share = (double)count_below(s, loss) / s->len;
    return s->beta == 0 ? 1.0 : pow(share, (double)s->beta);
}

void kiln_sb_record(kiln_sb_selector_t *s, float loss)
{
    if (isnan(loss))
        loss = INFINITY;   /* keeps the sorted order total */
    if (s->len == s->cap) {   /* drop the oldest: any equal value in sorted is the same number */
        float old = s->ring[s->head];
        int at = count_below(s, old);
        memmove(s->sorted + at, s->sorted + at + 1, (size_t)(s->len - at - 1) * sizeof(float));
        s->len--;
    }
    int at = count_below(s, loss);
    memmove(s->sorted + at + 1, s->sorted + at, (size_t)(s->len - at) * sizeof(float));
    s->sorted[at] = loss;
    s->len++;
    s->ring[s->head] = loss;
    s->head = (s->head + 1) % s->cap;
}

int kiln_sb_recorded(const kiln_sb_selector_t *s, float *out)
{
    if (out) {
        int first = s->len == s->cap ? s->head : 0;
        for (int i = 0; i < s->len; i++)
            out[i] = s->ring[(first + i) % s->cap];
    }
    return s->len;
}

typedef struct {
    float v;
    int i;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    float x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
    return (x > y) - (x < y);
}

/* Mean ranks (0-based, ties averaged) of v[0..n) into r; false if out of memory. */
static bool ranks(const float *v, int n, double *r)
{
    ranked *t = malloc((size_t)n * sizeof *t);
    if (!t)
        return false;
    for (int i = 0; i < n; i++)
        t[i] = (ranked){isnan(v[i]) ? INFINITY : v[i], i};
    qsort(t, (size_t)n, sizeof *t, cmp_ranked);
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && t[j + 1].v == t[i].v)
            j++;
        for (int k = i; k <= j; k++)
            r[t[k].i] = (i + j) / 2.0;
        i = j + 1;
    }
    free(t);
    return true;
}

double kiln_rank_correlation(const float *a, const float *b, int n)
{
    if (n < 2)
        return NAN;
    double *ra = malloc((size_t)n * sizeof(double)), *rb = malloc((size_t)n * sizeof(double));
    double r = NAN;
    if (ra && rb && ranks(a, n, ra) && ranks(b, n, rb)) {
        double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
        for (int i = 0; i < n; i++) {
            ma += ra[i];
            mb += rb[i];
        }
        ma /= n;
        mb /= n;
        for (int i = 0; i < n; i++) {
            sab += (ra[i] - ma) * (rb[i] - mb);
            saa += (ra[i] - ma) * (ra[i] - ma);
            sbb += (rb[i] - mb) * (rb[i] - mb);
        }
        r = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
    }
    free(ra);
    free(rb);
    return r;
}
