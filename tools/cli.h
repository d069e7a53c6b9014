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
/* kiln plot METRICS... */
int cmd_plot(int argc, char **argv);
/* Loads a model file, or a spec file (with freshly initialised parameters) when it ends in .kiln. */
kiln_graph_t *cli_load_model(const char *path, uint64_t init_seed);
/* Loads a model for inference: a model file (fp32 or int8), or a spec with fresh parameters. */
kiln_model_t *cli_load_runtime(const char *path);
/* Loads a dataset split, printing the error and returning nonzero on failure. */
int cli_load_data(const char *name, bool train, kiln_dataset *d);
/* Prints s as a JSON string literal. */
void cli_json_str(const char *s);

#endif
