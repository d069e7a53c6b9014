/* The --data and --context options of the kiln CLI: a data spec opened for a model, whose input
 * shape is the size image folders are resized to. */
#include <limits.h>
#include <stdio.h>
#include "cli.h"

cli_data cli_data_args(cli_args *a, const char *option, const char *def)
{
    cli_data d = { .spec = cli_str(a, option, def) };
    d.context = (int)cli_int(a, "context", 0, 1, INT_MAX);
    return d;
}

int cli_load_data(const cli_data *data, const kiln_graph_t *g, bool train, kiln_dataset *d)
{
    int shape[KILN_MAX_RANK] = { 1, 1, 1, 1, 1, 1 }, in = 0;
    if (g)
        kiln_graph_inputs(g, &in);
    int ndim = g ? kiln_graph_shape(g, in, shape) : 0;
    kiln_data_options opt = { .c = shape[0], .h = ndim == 3 ? shape[1] : 1,
                              .w = ndim == 3 ? shape[2] : 1, .context = data->context };
    if (!opt.context && g && ndim == 1)   /* a token model: its positions are the window */
        opt.context = shape[0];
    if (kiln_dataset_open(data->spec, &opt, train, d) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", kiln_last_error());
        return 1;
    }
    return 0;
}
