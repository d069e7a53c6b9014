/* kiln export: a model written as an ONNX file, for ONNX Runtime and every other ONNX tool. */
#include <stdio.h>
#include "cli.h"

int cmd_export(int argc, char **argv)
{
    static const char *const flags[] = {NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln export MODEL --onnx OUT.onnx\n");
        return 2;
    }
    const char *out = cli_str(&a, "onnx", NULL);
    cli_check_unused(&a, "export");
    if (!out) {
        fprintf(stderr, "kiln export: --onnx is required\n");
        return 2;
    }
    kiln_model_t *m = cli_load_runtime(a.pos[0]);
    if (!m)
        return 1;
    int rc = 0;
    if (kiln_model_export_onnx(m, out) != KILN_OK) {
        fprintf(stderr, "kiln export: %s\n", kiln_last_error());
        rc = 1;
    } else {
        printf("wrote %s (ONNX opset 17)\n", out);
    }
    kiln_model_free(m);
    return rc;
}
