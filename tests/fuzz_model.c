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
        kiln_exec_t *e = kiln_exec_create(g, 1);
        float x[4096] = {0};
        if (e && g->nodes[0].numel <= 4096)
            kiln_exec_run(e, x, 1);
        kiln_exec_free(e);
    }
    kiln_graph_free(g);
    kiln_st_close(f);
    return 0;
}
