/* kiln import: an ONNX model converted to a Kiln model file (the same graph every command that
 * takes MODEL.onnx imports on the fly). */
#include <stdio.h>
#include "cli.h"

int cmd_import(int argc, char **argv)
{
    static const char *const flags[] = {NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln import MODEL.onnx --out MODEL.safetensors\n");
        return 2;
    }
    const char *out = cli_str(&a, "out", NULL);
    cli_check_unused(&a, "import");
    if (!out) {
        fprintf(stderr, "kiln import: --out is required\n");
        return 2;
    }
    kiln_graph_t *g = kiln_graph_import_onnx(a.pos[0]);
    if (!g) {
        fprintf(stderr, "kiln import: %s\n", kiln_last_error());
        return 1;
    }
    int rc = 0;
    if (kiln_graph_save(g, out, NULL) != KILN_OK) {
        fprintf(stderr, "kiln import: %s\n", kiln_last_error());
        rc = 1;
    } else {
        printf("wrote %s: %d nodes, %zu parameters\n", out, kiln_graph_size(g), kiln_graph_param_count(g));
    }
    kiln_graph_free(g);
    return rc;
}
