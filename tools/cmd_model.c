/* kiln eval, run and info: use a trained model. */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "core/graph.h"

double cli_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cli_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void cli_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

kiln_graph_t *cli_load_model(const char *path, uint64_t init_seed)
{
    size_t n = strlen(path);
    kiln_graph_t *g;
    if (n > 5 && strcmp(path + n - 5, ".kiln") == 0) {
        g = kiln_spec_load(path);
        if (g)
            kiln_graph_init_params(g, init_seed);
    } else {
        g = kiln_graph_load(path);
    }
    if (!g)
        fprintf(stderr, "kiln: %s\n", kiln_last_error());
    return g;
}

kiln_model_t *cli_load_runtime(const char *path)
{
    size_t n = strlen(path);
    kiln_model_t *m = NULL;
    if (n > 5 && strcmp(path + n - 5, ".kiln") == 0) {
        kiln_graph_t *g = cli_load_model(path, 0);
        m = g ? kiln_model_create(g, true) : NULL;
        kiln_graph_free(g);
    } else {
        m = kiln_model_load(path);
    }
    if (!m)
        fprintf(stderr, "kiln: %s\n", kiln_last_error());
    return m;
}

int cmd_eval(int argc, char **argv)
{
    static const char *const flags[] = {"json", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln eval MODEL [--data fashion-mnist|DIR|npy:X,Y,TX,TY|images:DIR] [--batch N] "
                        "[--threads N] [--json]\n");
        return 2;
    }
    cli_data data = cli_data_args(&a, "data", "fashion-mnist");
    int batch = (int)cli_int(&a, "batch", 500, 1, 1 << 16);
    kiln_set_threads((int)cli_int(&a, "threads", 2, 1, 1024));
    bool json = cli_flag(&a, "json");
    cli_check_unused(&a, "eval");
    kiln_dataset test = {0};
    kiln_model_t *m = cli_load_runtime(a.pos[0]);
    int rc = 1;
    float loss, acc;
    if (!m || cli_load_data(&data, kiln_model_graph(m), false, &test))
        goto done;
    if (kiln_evaluate(m, &test, batch, &loss, &acc) != KILN_OK) {
        fprintf(stderr, "kiln eval: %s\n", kiln_last_error());
        goto done;
    }
    if (json) {
        printf("{\"command\":\"eval\",\"model\":");
        cli_json_str(a.pos[0]);
        printf(",\"examples\":%d,\"accuracy\":%.6f,\"loss\":%.6f}\n", test.n, acc, loss);
    } else {
        printf("%s: accuracy %.2f%%, loss %.4f on %d test examples\n", a.pos[0], 100 * acc, loss, test.n);
    }
    rc = 0;
done:
    kiln_model_free(m);
    kiln_dataset_free(&test);
    return rc;
}

int cmd_info(int argc, char **argv)
{
    static const char *const flags[] = {"json", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln info MODEL|SPEC [--json]\n");
        return 2;
    }
    bool json = cli_flag(&a, "json");
    cli_check_unused(&a, "info");
    kiln_model_t *m = cli_load_runtime(a.pos[0]);
    kiln_session_t *s = m ? kiln_session_create(m, NULL) : NULL;
    if (!s) {
        kiln_model_free(m);
        return 1;
    }
    const kiln_graph_t *g = kiln_model_graph(m);
    const char *cal = kiln_model_calibration(m);
    if (!json) {
        kiln_graph_print(g, stdout);
        printf("precision: %s%s%s; activation arena at batch 1: %zu bytes (live peak %zu), scratch %zu bytes\n",
               cal ? "int8, calibration " : "fp32", cal ? cal : "", cal ? "" : "", kiln_session_arena_bytes(s),
               kiln_session_peak_live_bytes(s), kiln_session_scratch_bytes(s));
    } else {
        printf("{\"command\":\"info\",\"model\":");
        cli_json_str(a.pos[0]);
        printf(",\"precision\":\"%s\",\"parameters\":%zu,\"flops\":%.0f,\"arena_bytes\":%zu,\"scratch_bytes\":%zu,"
               "\"layers\":[", cal ? "int8" : "fp32", kiln_graph_param_count(g), kiln_graph_flops(g),
               kiln_session_arena_bytes(s), kiln_session_scratch_bytes(s));
        for (int i = 0; i < g->n; i++) {
            const kiln_node *nd = &g->nodes[i];
            printf("%s{\"name\":", i ? "," : "");
            cli_json_str(nd->name);
            printf(",\"op\":\"%s\",\"shape\":[%d", kiln_op_name(nd->op), nd->dims[0]);
            if (nd->rank == 3)
                printf(",%d,%d", nd->dims[1], nd->dims[2]);
            printf("]");
            if (nd->a.act != KILN_OP_INPUT)
                printf(",\"act\":\"%s\"", kiln_op_name(nd->a.act));
            printf("}");
        }
        printf("]}\n");
    }
    kiln_session_free(s);
    kiln_model_free(m);
    return 0;
}
