/* Losses on any graph output: cross-entropy over a class axis of any rank (per token for
 * sequence models), binary cross-entropy with logits, MSE, L1 and Huber; per-element weights,
 * an ignore index, and several weighted losses on several outputs (a detector's heads). Each
 * is the mean over the elements it counts, like PyTorch's reduction='mean' (weighted:
 * sum(w l) / number of counted elements). */
#include <math.h>
#include <string.h>
#include "core/error.h"
#include "core/graph.h"
#include "core/op_table.h"
#include "kiln/kiln_train.h"
#include "ops/ops.h"

const char *kiln_loss_name(kiln_loss_kind k)
{
    static const char *const names[] = {"ce", "bce", "mse", "l1", "huber"};
    _Static_assert(sizeof names / sizeof names[0] == KILN_LOSS_COUNT, "a loss without a name");
    return (unsigned)k < KILN_LOSS_COUNT ? names[k] : NULL;
}

size_t kiln_loss_target_numel(const kiln_loss_spec *ls, const kiln_graph_t *g, int output)
{
    const kiln_node *o = &g->nodes[output];
    if (ls->kind != KILN_LOSS_CE)
        return o->numel;
    int ax = kiln_axis(ls->axis, o->rank);
    return ax < 0 ? 0 : o->numel / (size_t)o->dims[ax];
}

/* Cross-entropy over the class axis: y is (outer, classes, inner) per example, target
 * (outer, inner) int32 class indices. */
static double ce(const kiln_loss_spec *ls, const kiln_node *o, int batch, const float *y, const int32_t *t,
                 const float *w, float *dy, float scale, kiln_loss_stats *st)
{
    size_t outer, inner;
    int c;
    kiln_axis_split(o, kiln_axis(ls->axis, o->rank), &outer, &c, &inner);
    size_t rows = outer * (size_t)batch, counted = 0;
    double total = 0;
    int64_t correct = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t s = 0; s < inner; s++) {
            size_t ti = r * inner + s;
            if (t[ti] == ls->ignore_index || t[ti] < 0 || t[ti] >= c)
                continue;
            counted++;
        }
    double norm = counted ? 1.0 / (double)counted : 0.0;
    for (size_t r = 0; r < rows; r++)
        for (size_t s = 0; s < inner; s++) {
            size_t ti = r * inner + s;
            const float *z = y + r * c * inner + s;
            float *d = dy ? dy + r * c * inner + s : NULL;
            bool skip = t[ti] == ls->ignore_index || t[ti] < 0 || t[ti] >= c;
            if (skip) {
                for (int k = 0; d && k < c; k++)
                    d[k * inner] = 0.0f;
                continue;
            }
            float m = z[0];
            int am = 0;
            for (int k = 1; k < c; k++)
                if (z[k * inner] > m) {
                    m = z[k * inner];
                    am = k;
                }
            double sum = 0;
            for (int k = 0; k < c; k++)
                sum += exp((double)z[k * inner] - m);
            double lse = m + log(sum), we = w ? w[ti] : 1.0;
            total += we * (lse - z[(size_t)t[ti] * inner]);
            correct += am == t[ti];
            for (int k = 0; d && k < c; k++)
                d[k * inner] = (float)(scale * we * norm * (exp((double)z[k * inner] - lse) - (k == t[ti])));
        }
    st->counted = (int64_t)counted;
    st->correct = correct;
    return total * norm;
}

/* The elementwise losses: y and t alike, float. */
static double elementwise(const kiln_loss_spec *ls, size_t n, const float *y, const float *t, const float *w,
                          float *dy, float scale, kiln_loss_stats *st)
{
    double total = 0, norm = n ? 1.0 / (double)n : 0.0, delta = ls->delta > 0 ? ls->delta : 1.0;
    for (size_t i = 0; i < n; i++) {
        double x = y[i], d = x - t[i], we = w ? w[i] : 1.0, l, g;
        switch (ls->kind) {
        case KILN_LOSS_BCE:   /* max(x, 0) - x t + log(1 + exp(-|x|)); d/dx = sigmoid(x) - t */
            l = fmax(x, 0.0) - x * t[i] + log1p(exp(-fabs(x)));
            g = 1.0 / (1.0 + exp(-x)) - t[i];
            break;
        case KILN_LOSS_L1:
            l = fabs(d);
            g = d > 0 ? 1.0 : d < 0 ? -1.0 : 0.0;
            break;
        case KILN_LOSS_HUBER:
            l = fabs(d) < delta ? 0.5 * d * d : delta * (fabs(d) - 0.5 * delta);
            g = fabs(d) < delta ? d : d > 0 ? delta : -delta;
            break;
        default:   /* MSE */
            l = d * d;
            g = 2.0 * d;
        }
        total += we * l;
        if (dy)
            dy[i] = (float)(scale * we * norm * g);
    }
    st->counted = (int64_t)n;
    st->correct = 0;
    return total * norm;
}

kiln_status kiln_loss_eval(const kiln_loss_spec *ls, const kiln_graph_t *g, int output, int batch, const float *y,
                           const void *target, const float *weights, float *dy, kiln_loss_stats *st)
{
    kiln_loss_stats dummy;
    st = st ? st : &dummy;
    memset(st, 0, sizeof *st);
    if (output < 0 || output >= g->n || (unsigned)ls->kind >= KILN_LOSS_COUNT)
        return kiln_error(KILN_ERR_ARG, "loss: bad output node %d or loss kind %d", output, (int)ls->kind);
    const kiln_node *o = &g->nodes[output];
    float scale = ls->weight > 0 ? ls->weight : 1.0f;
    size_t examples = o->batched ? (size_t)batch : 1;
    if (ls->kind == KILN_LOSS_CE) {
        if (kiln_axis(ls->axis, o->rank) < 0)
            return kiln_error(KILN_ERR_SHAPE, "loss ce on %s: class axis %d outside its rank %d", o->name, ls->axis,
                              o->rank);
        st->loss = ce(ls, o, (int)examples, y, target, weights, dy, scale, st);
    } else {
        st->loss = elementwise(ls, o->numel * examples, y, target, weights, dy, scale, st);
    }
    if (!isfinite(st->loss))
        return kiln_error(KILN_ERR_NUMERIC, "loss %s on %s is %s", kiln_loss_name(ls->kind), o->name,
                          isnan(st->loss) ? "NaN" : "infinite");
    return KILN_OK;
}
