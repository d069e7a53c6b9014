/* libFuzzer target: the model spec parser and its round trip through kiln_graph_to_spec. */
#include <stdlib.h>
#include <string.h>
#include "core/graph.h"

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
    }
    kiln_graph_free(g);
    free(text);
    return 0;
}
