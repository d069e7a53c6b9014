/* kiln bench: latency percentiles, throughput and memory of a model in an inference session. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include "cli.h"
#include "core/graph.h"
#include "ops/qgemm.h"

/* Per-layer mean time per run, with each layer's kernel and share of the total. */
static void print_profile(const kiln_session_t *s, const kiln_graph_t *g, int runs)
{
    double total = 0;
    for (int i = 1; i < g->n; i++)
        total += kiln_session_node_seconds(s, i);
    printf("  %-14s %-12s %-20s %16s %10s %7s\n", "layer", "op", "kernel", "output", "us/run", "share");
    for (int i = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_FLATTEN)
            continue;
        char shape[48];
        if (nd->rank == 3)
            snprintf(shape, sizeof shape, "%dx%dx%d", nd->dims[0], nd->dims[1], nd->dims[2]);
        else
            snprintf(shape, sizeof shape, "%d", nd->dims[0]);
        double t = kiln_session_node_seconds(s, i);
        printf("  %-14s %-12s %-20s %16s %10.2f %6.1f%%\n", nd->name, kiln_op_name(nd->op),
               kiln_session_node_kernel(s, i), shape, t / runs * 1e6, total > 0 ? 100 * t / total : 0.0);
    }
}

static void print_profile_json(const kiln_session_t *s, const kiln_graph_t *g, int runs)
{
    printf(",\"profile\":[");
    for (int i = 1, first = 1; i < g->n; i++) {
        const kiln_node *nd = &g->nodes[i];
        if (nd->op == KILN_OP_FLATTEN)
            continue;
        printf("%s{\"layer\":", first ? "" : ",");
        cli_json_str(nd->name);
        printf(",\"op\":\"%s\",\"kernel\":\"%s\",\"us_per_run\":%.3f}", kiln_op_name(nd->op),
               kiln_session_node_kernel(s, i), kiln_session_node_seconds(s, i) / runs * 1e6);
        first = 0;
    }
    printf("]");
}

int cmd_bench(int argc, char **argv)
{
    static const char *const flags[] = {"json", "profile", "gemm-conv", "no-amx", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln bench MODEL [--batch N] [--threads N] [--runs N] [--warmup N] [--profile] [--gemm-conv] [--no-amx] [--json]\n");
        return 2;
    }
    int batch = (int)cli_int(&a, "batch", 1, 1, 1 << 16), threads = (int)cli_int(&a, "threads", 1, 1, 1024);
    int runs = (int)cli_int(&a, "runs", 2000, 1, 10000000), warm = (int)cli_int(&a, "warmup", 200, 0, 1000000);
    bool json = cli_flag(&a, "json"), profile = cli_flag(&a, "profile"), gemm_conv = cli_flag(&a, "gemm-conv");
    if (cli_flag(&a, "no-amx"))   /* int8 products on AVX-512 VNNI only, as on CPUs without AMX */
        kiln_qgemm_use_amx(false);
    cli_check_unused(&a, "bench");
    kiln_set_threads(threads);
    kiln_model_t *m = kiln_model_load(a.pos[0]);
    if (!m) {
        fprintf(stderr, "kiln bench: %s\n", kiln_last_error());
        return 1;
    }
    const kiln_graph_t *g = kiln_model_graph(m);
    size_t nin = kiln_graph_numel(g, 0) * (size_t)batch, nout = kiln_graph_numel(g, kiln_graph_output(g)) * (size_t)batch;
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = threads,
                                                                      .profile = profile, .gemm_conv = gemm_conv});
    float *x = malloc(nin * sizeof(float)), *y = malloc(nout * sizeof(float));
    double *lat = malloc((size_t)runs * sizeof(double));
    int rc = 1;
    if (!s || !x || !y || !lat) {
        fprintf(stderr, "kiln bench: %s\n", kiln_last_error());
        goto done;
    }
    for (size_t i = 0; i < nin; i++)
        x[i] = (float)(i % 251) / 251.0f;
    for (int i = 0; i < warm; i++)
        kiln_session_run(s, x, batch, y);
    kiln_session_profile_reset(s);
    double t0 = cli_now_s();
    for (int i = 0; i < runs; i++) {
        double t = cli_now_s();
        kiln_session_run(s, x, batch, y);
        lat[i] = cli_now_s() - t;
    }
    double total = cli_now_s() - t0;
    qsort(lat, (size_t)runs, sizeof *lat, cli_cmp_double);
    double p50 = lat[runs / 2], p99 = lat[(int)((runs - 1) * 0.99)];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct stat sb;
    long long model_bytes = stat(a.pos[0], &sb) == 0 ? (long long)sb.st_size : -1;
    double flops = kiln_graph_flops(g) * batch;
    if (json) {
        printf("{\"command\":\"bench\",\"model\":");
        cli_json_str(a.pos[0]);
        printf(",\"batch\":%d,\"threads\":%d,\"runs\":%d,\"latency_p50_us\":%.2f,\"latency_p99_us\":%.2f,"
               "\"throughput_per_s\":%.1f,\"gflops\":%.2f,\"arena_bytes\":%zu,\"scratch_bytes\":%zu,"
               "\"peak_rss_bytes\":%ld,\"model_bytes\":%lld",
               batch, threads, runs, p50 * 1e6, p99 * 1e6, runs * batch / total, flops / p50 / 1e9,
               kiln_session_arena_bytes(s), kiln_session_scratch_bytes(s), ru.ru_maxrss * 1024L, model_bytes);
        if (profile)
            print_profile_json(s, g, runs);
        printf("}\n");
    } else {
        printf("%s: batch %d, %d thread%s, %d runs\n", a.pos[0], batch, threads, threads > 1 ? "s" : "", runs);
        printf("  latency p50 %.1f us, p99 %.1f us; throughput %.0f examples/s; %.1f GFLOP/s\n", p50 * 1e6,
               p99 * 1e6, runs * batch / total, flops / p50 / 1e9);
        printf("  arena %zu bytes, scratch %zu bytes, peak RSS %ld KiB, model file %lld bytes\n",
               kiln_session_arena_bytes(s), kiln_session_scratch_bytes(s), ru.ru_maxrss, model_bytes);
        if (profile)
            print_profile(s, g, runs);
    }
    rc = 0;
done:
    kiln_session_free(s);
    kiln_model_free(m);
    free(x);
    free(y);
    free(lat);
    return rc;
}
