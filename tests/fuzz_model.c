/* libFuzzer target: the model loader (safetensors container, spec in metadata, tensor checks). */
#include <stddef.h>
#include <stdint.h>
#include "core/graph.h"
#include "io/graph_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kiln_st_file *f = kiln_st_open_memory(data, size, "fuzz.safetensors");
    if (!f)
        return 0;
    kiln_graph_t *g = kiln_graph_from_file(f);
    if (g) {
        /* a loaded model must run */
        kiln_model_t *m = kiln_model_create(g, true);
        kiln_session_t *s = m ? kiln_session_create(m, NULL) : NULL;
        static float x[4096], y[1 << 16];
        if (s && g->nodes[0].numel <= 4096 && g->nodes[g->n - 1].numel <= (1 << 16))
            kiln_session_run(s, x, 1, y);
        kiln_session_free(s);
        kiln_model_free(m);
    }
    kiln_graph_free(g);
    kiln_st_close(f);
    return 0;
}
