/* kiln plot: several runs' metrics logs on one training-curve chart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "train/plot.h"

int cmd_plot(int argc, char **argv)
{
    static const char *const flags[] = {"by-time", "json", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos < 1) {
        fprintf(stderr, "usage: kiln plot METRICS.jsonl[=LABEL]... --out CHART.svg [--title T] [--by-time]\n");
        return 2;
    }
    const char *out = cli_str(&a, "out", "curves.svg"), *title = cli_str(&a, "title", "kiln training curves");
    bool by_time = cli_flag(&a, "by-time"), json = cli_flag(&a, "json");
    cli_check_unused(&a, "plot");
    kiln_curve runs[8];
    int n = 0, rc = 1;
    for (int i = 0; i < a.n_pos; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s", a.pos[i]);
        char *eq = strchr(path, '=');
        const char *label = path;
        if (eq) {
            *eq = 0;
            label = eq + 1;
        }
        if (kiln_curve_load(path, label, &runs[n]) != KILN_OK) {
            fprintf(stderr, "kiln plot: %s\n", kiln_last_error());
            goto done;
        }
        n++;
    }
    if (kiln_plot_svg(out, runs, n, title, by_time) != KILN_OK) {
        fprintf(stderr, "kiln plot: %s\n", kiln_last_error());
        goto done;
    }
    if (json) {
        printf("{\"command\":\"plot\",\"runs\":%d,\"out\":", n);
        cli_json_str(out);
        printf("}\n");
    } else {
        printf("wrote %s (%d run%s)\n", out, n, n == 1 ? "" : "s");
    }
    rc = 0;
done:
    for (int i = 0; i < n; i++)
        kiln_curve_free(&runs[i]);
    return rc;
}
