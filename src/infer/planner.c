/* Static memory planner. Each node's output gets a buffer; flatten (and any node the caller
 * sizes 0) shares its input's buffer (a view), and an elementwise node whose input's buffer has
 * no later reader writes over it (in place). Buffers live from the step that writes them to the
 * last step that reads them (the output to the end). Placement is greedy by size: largest first,
 * each at the lowest offset that does not overlap a placed buffer alive at the same time (the
 * approach of TFLite's greedy planner). peak_live_floats, the most bytes alive at any step,
 * bounds every placement below. */
#include <stdlib.h>
#include <string.h>
#include "core/error.h"
#include "core/op_table.h"
#include "infer/planner.h"

#define ALIGN_FLOATS 16   /* 64 bytes */

typedef struct {
    size_t size, offset;
    int start, end;       /* steps, inclusive */
} buffer;

bool kiln_op_in_place(kiln_op op)
{
    return kiln_op_def_of(op)->mem == KILN_MEM_IN_PLACE;
}

void kiln_plan_free(kiln_plan *plan)
{
    free(plan->offset);
    memset(plan, 0, sizeof *plan);
}

static int by_size_desc(const void *a, const void *b)
{
    const buffer *x = *(const buffer *const *)a, *y = *(const buffer *const *)b;
    if (x->size != y->size)
        return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

/* Places b at the lowest aligned offset clear of every placed buffer alive with it. */
static void place(buffer *b, buffer **placed, int n_placed)
{
    size_t off = 0;
    for (bool moved = true; moved;) {
        moved = false;
        for (int k = 0; k < n_placed; k++) {
            const buffer *o = placed[k];
            bool together = o->start <= b->end && b->start <= o->end;
            if (together && off < o->offset + o->size && o->offset < off + b->size) {
                off = o->offset + o->size;   /* past this one, and look again */
                moved = true;
            }
        }
    }
    b->offset = off;
}

kiln_status kiln_plan_create(const kiln_graph_t *g, int batch, const size_t *bytes_each, kiln_plan *plan)
{
    int n = g->n;
    memset(plan, 0, sizeof *plan);
    int *last = malloc((size_t)n * sizeof(int)), *buf = malloc((size_t)n * sizeof(int));
    buffer *bufs = calloc((size_t)n, sizeof(buffer));
    buffer **order = malloc((size_t)n * sizeof(buffer *));
    plan->offset = calloc((size_t)n, sizeof(size_t));
    if (!last || !buf || !bufs || !order || !plan->offset) {
        free(last), free(buf), free(bufs), free(order);
        kiln_plan_free(plan);
        return kiln_error(KILN_ERR_NOMEM, "out of memory planning activations");
    }
    for (int i = 0; i < n; i++)
        last[i] = i;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < g->nodes[i].n_inputs; j++)
            last[g->nodes[i].inputs[j]] = i;
    int outs[KILN_MAX_OUTPUTS], n_outs = kiln_graph_outputs(g, outs);
    for (int k = 0; k < n_outs; k++)
        last[outs[k]] = n;   /* the caller reads the outputs after the last step */
    int nb = 0;
    for (int i = 0; i < n; i++) {
        const kiln_node *nd = &g->nodes[i];
        bool param_view = kiln_op_is_view(nd->op) && nd->n_inputs && buf[nd->inputs[0]] < 0;
        if (nd->op == KILN_OP_PARAM || param_view) {   /* the model's parameters: no buffer */
            buf[i] = -1;
            continue;
        }
        int src = nd->n_inputs ? buf[nd->inputs[0]] : -1;
        size_t examples = nd->batched ? (size_t)batch : 1;
        size_t bytes = (bytes_each ? bytes_each[i] : nd->numel * sizeof(float)) * examples;
        size_t size = (bytes + 4 * ALIGN_FLOATS - 1) / (4 * ALIGN_FLOATS) * ALIGN_FLOATS;
        bool reuse = false;
        /* in place over input 0 only where it has the output's shape (not a broadcast operand) */
        const kiln_node *in0 = nd->n_inputs ? &g->nodes[nd->inputs[0]] : NULL;
        bool same = in0 && in0->numel == nd->numel && in0->batched == nd->batched;
        if (src >= 0 && (kiln_op_is_view(nd->op) || (bytes_each && bytes_each[i] == 0)))
            reuse = true;
        else if (src >= 0 && same && kiln_op_in_place(nd->op) && bufs[src].end == i && bufs[src].size >= size) {
            /* the input's buffer is read by no later step; for add, only the first input's buffer
             * (the kernel copies input 0 first), and not when another input shares it */
            reuse = true;
            for (int j = 1; j < nd->n_inputs; j++)
                reuse = reuse && buf[nd->inputs[j]] != src;
            plan->in_place += reuse;
        }
        if (reuse) {
            buf[i] = src;
            if (last[i] > bufs[src].end)
                bufs[src].end = last[i];
            continue;
        }
        buf[i] = nb;
        bufs[nb++] = (buffer){.size = size, .start = i, .end = last[i]};
    }
    /* the most floats alive at any step */
    for (int s = 0; s <= n; s++) {
        size_t live = 0;
        for (int b = 0; b < nb; b++)
            if (bufs[b].start <= s && s <= bufs[b].end)
                live += bufs[b].size;
        if (live > plan->peak_live_floats)
            plan->peak_live_floats = live;
    }
    for (int b = 0; b < nb; b++)
        order[b] = &bufs[b];
    qsort(order, (size_t)nb, sizeof *order, by_size_desc);
    for (int b = 0; b < nb; b++) {
        place(order[b], order, b);
        size_t end = order[b]->offset + order[b]->size;
        plan->arena_floats = end > plan->arena_floats ? end : plan->arena_floats;
    }
    for (int i = 0; i < n; i++)
        plan->offset[i] = buf[i] >= 0 ? bufs[buf[i]].offset : 0;
    free(last);
    free(buf);
    free(bufs);
    free(order);
    return KILN_OK;
}
