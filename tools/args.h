/* Command-line option parsing for the kiln CLI: --name value or --name=value, flags. */
#ifndef KILN_TOOLS_ARGS_H
#define KILN_TOOLS_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Parsed options: positionals and name/value pairs. */
typedef struct {
    int n_pos;
    const char *pos[8];
    int n_opt;
    const char *name[64];
    const char *value[64];   /* NULL for flags */
    bool used[64];
} cli_args;

/* Parses argv (after the command word). flags lists options that take no value. 0 on success. */
int cli_parse(cli_args *a, int argc, char **argv, const char *const *flags);
/* The option's value, or def when absent. */
const char *cli_str(cli_args *a, const char *name, const char *def);
/* Whether a flag is present. */
bool cli_flag(cli_args *a, const char *name);
/* Integer option within [lo, hi]; prints an error and exits 2 when malformed. */
int64_t cli_int(cli_args *a, const char *name, int64_t def, int64_t lo, int64_t hi);
/* Float option within [lo, hi]; exits 2 when malformed. */
double cli_float(cli_args *a, const char *name, double def, double lo, double hi);
/* Every value of a repeatable option, in order, into values (up to max); returns how many. */
int cli_all(cli_args *a, const char *name, const char **values, int max);
/* Exits 2 naming the first option no command read. */
void cli_check_unused(cli_args *a, const char *cmd);

#endif
