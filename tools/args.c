/* Command-line option parsing for the kiln CLI. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "args.h"

static bool is_flag(const char *name, const char *const *flags)
{
    for (int i = 0; flags && flags[i]; i++)
        if (strcmp(flags[i], name) == 0)
            return true;
    return false;
}

int cli_parse(cli_args *a, int argc, char **argv, const char *const *flags)
{
    memset(a, 0, sizeof *a);
    for (int i = 0; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0 || s[2] == 0) {
            if (a->n_pos == 8) {
                fprintf(stderr, "kiln: too many arguments at '%s'\n", s);
                return -1;
            }
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (a->n_opt == 64) {
            fprintf(stderr, "kiln: too many options\n");
            return -1;
        }
        static char names[64][64];
        const char *eq = strchr(s, '=');
        size_t len = eq ? (size_t)(eq - s - 2) : strlen(s + 2);
        if (len >= sizeof names[0]) {
            fprintf(stderr, "kiln: option '%s' is too long\n", s);
            return -1;
        }
        memcpy(names[a->n_opt], s + 2, len);
        names[a->n_opt][len] = 0;
        const char *name = names[a->n_opt], *value = NULL;
        if (eq)
            value = eq + 1;
        else if (!is_flag(name, flags)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kiln: option --%s needs a value\n", name);
                return -1;
            }
            value = argv[++i];
        }
        a->name[a->n_opt] = name;
        a->value[a->n_opt++] = value;
    }
    return 0;
}

static int find(cli_args *a, const char *name)
{
    for (int i = a->n_opt - 1; i >= 0; i--)
        if (strcmp(a->name[i], name) == 0) {
            for (int j = 0; j < a->n_opt; j++)
                if (strcmp(a->name[j], name) == 0)
                    a->used[j] = true;
            return i;
        }
    return -1;
}

const char *cli_str(cli_args *a, const char *name, const char *def)
{
    int i = find(a, name);
    if (i < 0)
        return def;
    if (!a->value[i]) {
        fprintf(stderr, "kiln: option --%s needs a value\n", name);
        exit(2);
    }
    return a->value[i];
}

bool cli_flag(cli_args *a, const char *name)
{
    int i = find(a, name);
    if (i >= 0 && a->value[i]) {
        fprintf(stderr, "kiln: option --%s takes no value, found '%s'\n", name, a->value[i]);
        exit(2);
    }
    return i >= 0;
}

int64_t cli_int(cli_args *a, const char *name, int64_t def, int64_t lo, int64_t hi)
{
    const char *v = cli_str(a, name, NULL);
    if (!v)
        return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*v == 0 || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "kiln: --%s: expected an integer in [%lld, %lld], found '%s'\n", name, (long long)lo,
                (long long)hi, v);
        exit(2);
    }
    return x;
}

double cli_float(cli_args *a, const char *name, double def, double lo, double hi)
{
    const char *v = cli_str(a, name, NULL);
    if (!v)
        return def;
    char *end;
    double x = strtod(v, &end);
    if (*v == 0 || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "kiln: --%s: expected a number in [%g, %g], found '%s'\n", name, lo, hi, v);
        exit(2);
    }
    return x;
}

int cli_all(cli_args *a, const char *name, const char **values, int max)
{
    int n = 0;
    for (int i = 0; i < a->n_opt; i++)
        if (strcmp(a->name[i], name) == 0) {
            a->used[i] = true;
            if (!a->value[i]) {
                fprintf(stderr, "kiln: option --%s needs a value\n", name);
                exit(2);
            }
            if (n < max)
                values[n] = a->value[i];
            n++;
        }
    return n;
}

void cli_check_unused(cli_args *a, const char *cmd)
{
    for (int i = 0; i < a->n_opt; i++)
        if (!a->used[i]) {
            fprintf(stderr, "kiln %s: unknown option --%s (see 'kiln help')\n", cmd, a->name[i]);
            exit(2);
        }
}
