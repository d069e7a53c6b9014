/* kiln quantize: post-training int8 quantisation (or fp16 weight storage) of a trained model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "cli.h"
#include "core/rng.h"

int cmd_quantize(int argc, char **argv)
{
    static const char *const flags[] = {"json", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln quantize MODEL --out OUT [--calib-data fashion-mnist|DIR|npy:X,Y|images:DIR] "
                        "[--calib N] [--method auto|minmax|percentile] [--weights int8|fp16] [--threads N] [--json]\n");
        return 2;
    }
    const char *out = cli_str(&a, "out", NULL);
    cli_data data = cli_data_args(&a, "calib-data", "fashion-mnist");
    const char *method_s = cli_str(&a, "method", "auto"), *weights = cli_str(&a, "weights", "int8");
    int n_calib = (int)cli_int(&a, "calib", 1000, 1, 1000000);
    kiln_set_threads((int)cli_int(&a, "threads", 2, 1, 1024));
    bool json = cli_flag(&a, "json");
    cli_check_unused(&a, "quantize");
    if (!out) {
        fprintf(stderr, "kiln quantize: --out is required\n");
        return 2;
    }
    kiln_calibration method;
    if (strcmp(method_s, "auto") == 0)
        method = KILN_CALIBRATE_AUTO;
    else if (strcmp(method_s, "minmax") == 0)
        method = KILN_CALIBRATE_MINMAX;
    else if (strcmp(method_s, "percentile") == 0)
        method = KILN_CALIBRATE_PERCENTILE;
    else {
        fprintf(stderr, "kiln quantize: --method: expected auto, minmax or percentile, found '%s'\n", method_s);
        return 2;
    }
    bool fp16 = strcmp(weights, "fp16") == 0;
    if (!fp16 && strcmp(weights, "int8") != 0) {
        fprintf(stderr, "kiln quantize: --weights: expected int8 or fp16, found '%s'\n", weights);
        return 2;
    }
    int rc = 1;
    kiln_dataset d = {0};
    float *calib = NULL;
    int *idx = NULL;
    kiln_model_t *m = cli_load_runtime(a.pos[0]), *q = NULL;
    if (!m)
        goto done;
    if (!fp16) {
        if (cli_load_data(&data, kiln_model_graph(m), true, &d))
            goto done;
        const kiln_graph_t *mg = kiln_model_graph(m);
        int in = 0;
        kiln_graph_inputs(mg, &in);
        const char *bad = kiln_dataset_check_model(&d, mg) != KILN_OK ? kiln_last_error()
                        : kiln_graph_input_count(mg) != 1 ? "int8 calibration takes models of one input"
                        : d.input.numel != kiln_graph_numel(mg, in)
                            ? "the examples do not match the model's input size" : NULL;
        if (bad) {
            fprintf(stderr, "kiln quantize: %s: %s\n", data.spec, bad);
            goto done;
        }
        n_calib = n_calib < d.n ? n_calib : d.n;
        /* (4-byte elements: f32 pixels or i32 tokens, as the input's dtype says) */
        calib = malloc((size_t)n_calib * d.input.numel * sizeof(float));
        idx = malloc((size_t)d.n * sizeof(int));
        if (!calib || !idx)
            goto done;
        kiln_rng rng;   /* a seeded random sample of the training set */
        kiln_rng_seed(&rng, 0);
        for (int i = 0; i < d.n; i++)
            idx[i] = i;
        kiln_rng_shuffle(&rng, idx, d.n);
        kiln_dataset_gather(&d, idx, n_calib, calib, NULL);
        if (!(q = kiln_model_quantize(m, calib, n_calib, method))) {
            fprintf(stderr, "kiln quantize: %s\n", kiln_last_error());
            goto done;
        }
    }
    if (kiln_model_save(q ? q : m, out, fp16, NULL) != KILN_OK) {
        fprintf(stderr, "kiln quantize: %s\n", kiln_last_error());
        goto done;
    }
    struct stat si, so;
    long long in_bytes = stat(a.pos[0], &si) == 0 ? (long long)si.st_size : -1;
    long long out_bytes = stat(out, &so) == 0 ? (long long)so.st_size : -1;
    const char *cal = q ? kiln_model_calibration(q) : NULL;
    if (json) {
        printf("{\"command\":\"quantize\",\"model\":");
        cli_json_str(out);
        printf(",\"weights\":\"%s\",\"calibration\":%s%s%s,\"calibration_examples\":%d,\"input_bytes\":%lld,"
               "\"output_bytes\":%lld}\n", fp16 ? "fp16" : "int8", cal ? "\"" : "", cal ? cal : "null",
               cal ? "\"" : "", fp16 ? 0 : n_calib, in_bytes, out_bytes);
    } else {
        printf("wrote %s: %s weights%s%s%s, %lld bytes (from %lld, %.2fx smaller)\n", out, fp16 ? "fp16" : "int8",
               cal ? ", calibration " : "", cal ? cal : "", cal ? "" : "", out_bytes, in_bytes,
               out_bytes > 0 ? (double)in_bytes / out_bytes : 0.0);
    }
    rc = 0;
done:
    kiln_model_free(q);
    kiln_model_free(m);
    kiln_dataset_free(&d);
    free(calib);
    free(idx);
    return rc;
}
