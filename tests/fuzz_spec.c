/* libFuzzer target: the model spec parser, its round trip through kiln_graph_to_spec, and for
 * small graphs an inference run on zeros (every kernel on whatever shapes the parser accepted). */
#include <stdlib.h>
#include <string.h>
#include "core/graph.h"

/* Runs g once at batch 1 on zero inputs (index 0 for token inputs). */
static void run_zeros(const kiln_graph_t *g)
{
    kiln_model_t *m = kiln_model_create(g, true);
    kiln_session_t *s = m ? kiln_session_create(m, NULL) : NULL;
    int ids[64], outs[KILN_MAX_OUTPUTS], n_in = kiln_graph_inputs(g, ids), n_out = kiln_graph_outputs(g, outs);
    const void *in[64];
    float *out[KILN_MAX_OUTPUTS];
    for (int k = 0; k < n_in && k < 64; k++)
        in[k] = calloc(g->nodes[ids[k]].numel, 4);
    for (int k = 0; k < n_out; k++)
        out[k] = malloc(g->nodes[outs[k]].numel * sizeof(float));
    if (s && n_in <= 64)
        kiln_session_run_all(s, in, 1, out);
    for (int k = 0; k < n_in && k < 64; k++)
        free((void *)in[k]);
    for (int k = 0; k < n_out; k++)
        free(out[k]);
    kiln_session_free(s);
    kiln_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    kiln_graph_t *g = kiln_spec_parse(text, "fuzz.kiln");
    if (g) {
        char *again = kiln_graph_to_spec(g);
        kiln_graph_t *h = kiln_spec_parse(again, "roundtrip");
        if (!h || h->n != g->n || h->n_params != g->n_params)
            abort();   /* a parsed spec must serialise to an equivalent one */
        kiln_graph_free(h);
        free(again);
        size_t biggest = 0;
        for (int i = 0; i < g->n; i++)
            biggest = g->nodes[i].numel > biggest ? g->nodes[i].numel : biggest;
        if (biggest <= 4096 && g->n_params <= 100000 && g->n <= 64)
            run_zeros(g);
    }
    kiln_graph_free(g);
    free(text);
    return 0;
}
