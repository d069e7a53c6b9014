/* Shared declarations of the kiln CLI's commands. */
#ifndef KILN_TOOLS_CLI_H
#define KILN_TOOLS_CLI_H

#include "args.h"
#include "kiln/dataset.h"

/* kiln train SPEC ... */
int cmd_train(int argc, char **argv);
/* kiln eval MODEL ... */
int cmd_eval(int argc, char **argv);
/* kiln info MODEL|SPEC ... */
int cmd_info(int argc, char **argv);
/* kiln run MODEL INPUT ... */
int cmd_run(int argc, char **argv);
/* kiln quantize MODEL ... */
int cmd_quantize(int argc, char **argv);
/* kiln bench MODEL ... */
int cmd_bench(int argc, char **argv);
/* kiln generate MODEL ... */
int cmd_generate(int argc, char **argv);
/* kiln import MODEL.onnx --out ... */
int cmd_import(int argc, char **argv);
/* kiln export MODEL --onnx OUT */
int cmd_export(int argc, char **argv);
/* kiln plot METRICS... */
int cmd_plot(int argc, char **argv);
/* Loads a model file, or a spec file (with freshly initialised parameters) when it ends in .kiln. */
kiln_graph_t *cli_load_model(const char *path, uint64_t init_seed);
/* Loads a model for inference: a model file (fp32 or int8), or a spec with fresh parameters. */
kiln_model_t *cli_load_runtime(const char *path);
/* A command's data options: the data spec and the text context. */
typedef struct {
    const char *spec;   /* --data (see kiln_dataset_open) */
    int context;        /* --context: bytes per text window (0: not given) */
} cli_data;
/* Reads the data spec from --option (def when absent) and --context. */
cli_data cli_data_args(cli_args *a, const char *option, const char *def);
/* Loads a dataset split for model g (image folders are resized to its input shape; g may be
 * NULL), printing the error and returning nonzero on failure. A source without this split gives
 * an empty dataset (n = 0). */
int cli_load_data(const cli_data *data, const kiln_graph_t *g, bool train, kiln_dataset *d);
/* kiln run on .npy tensors: inputs[] and outputs[] are the --input and --output values
 * (NAME=FILE.npy, or FILE.npy for a single one). */
int cli_run_tensors(const kiln_model_t *m, const char **inputs, int n_in, const char **outputs, int n_out, int threads,
                    bool json);
/* Seconds on the monotonic clock. */
double cli_now_s(void);
/* qsort comparison of doubles, ascending. */
int cli_cmp_double(const void *a, const void *b);
/* Prints s as a JSON string literal. */
void cli_json_str(const char *s);

#endif
