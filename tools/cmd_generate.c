/* kiln generate: samples bytes from a byte-level causal model with a KV cache (kiln_decoder_t):
 * the prompt is fed one position at a time, then each sampled byte. When the context fills, the
 * cache restarts from the last half of the text. Reports tokens/s and the time per token near
 * 16 and near 128 positions of context (medians). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "cli.h"
#include "core/rng.h"

/* Samples from logits[0..v): greedy at temperature 0, else softmax(logits / t) over the top k. */
static int sample(const float *logits, int v, double temp, int top_k, kiln_rng *rng, double *p)
{
    int best = 0;
    for (int i = 1; i < v; i++)
        best = logits[i] > logits[best] ? i : best;
    if (temp <= 0)
        return best;
    double kth = -INFINITY;   /* the k-th largest logit: smaller ones are dropped */
    if (top_k > 0 && top_k < v) {
        for (int i = 0; i < v; i++)
            p[i] = logits[i];
        qsort(p, (size_t)v, sizeof *p, cli_cmp_double);
        kth = p[v - top_k];
    }
    double sum = 0;
    for (int i = 0; i < v; i++) {
        p[i] = logits[i] >= kth ? exp((logits[i] - logits[best]) / temp) : 0.0;
        sum += p[i];
    }
    double u = kiln_rng_uniform(rng) * sum;
    for (int i = 0; i < v; i++) {
        u -= p[i];
        if (u < 0 && p[i] > 0)
            return i;
    }
    return best;
}

/* Median of the step times at positions [lo, hi) that were measured; NAN if none. */
static double median_at(const double *t, int lo, int hi, double *scratch)
{
    int n = 0;
    for (int p = lo; p < hi; p++)
        if (t[p] > 0)
            scratch[n++] = t[p];
    if (!n)
        return NAN;
    qsort(scratch, (size_t)n, sizeof *scratch, cli_cmp_double);
    return scratch[n / 2];
}

int cmd_generate(int argc, char **argv)
{
    static const char *const flags[] = {"json", "quiet", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) != 0 || a.n_pos != 1) {
        fprintf(stderr, "usage: kiln generate MODEL --prompt TEXT --tokens N [--temperature T] [--top-k K] [--seed S]\n");
        return 2;
    }
    const char *prompt = cli_str(&a, "prompt", "\n");
    int tokens = (int)cli_int(&a, "tokens", 200, 0, 1 << 24);
    double temp = cli_float(&a, "temperature", 0.8, 0, 100);
    int top_k = (int)cli_int(&a, "top-k", 0, 0, 1 << 20);
    uint64_t seed = (uint64_t)cli_int(&a, "seed", 0, 0, INT64_MAX);
    bool json = cli_flag(&a, "json"), quiet = cli_flag(&a, "quiet");
    cli_check_unused(&a, "generate");
    kiln_set_threads(1);
    kiln_model_t *m = cli_load_runtime(a.pos[0]);
    if (!m)
        return 1;
    kiln_decoder_t *d = kiln_decoder_create(m);
    if (!d) {
        fprintf(stderr, "kiln generate: %s\n", kiln_last_error());
        kiln_model_free(m);
        return 1;
    }
    const kiln_graph_t *g = kiln_model_graph(m);
    int ctx = kiln_decoder_context(d), v = (int)(kiln_graph_numel(g, kiln_graph_output(g)) / (size_t)ctx);
    size_t plen = strlen(prompt), total = plen + (size_t)tokens;
    int32_t *text = malloc((total + 1) * sizeof *text);
    float *logits = malloc((size_t)v * sizeof *logits);
    double *p = malloc((size_t)v * sizeof *p), *step_s = calloc((size_t)ctx, sizeof *step_s);
    double *scratch = malloc((size_t)ctx * sizeof *scratch);
    if (!text || !logits || !p || !step_s || !scratch || plen == 0) {
        fprintf(stderr, "kiln generate: %s\n", plen ? "out of memory" : "empty prompt");
        return 1;
    }
    for (size_t i = 0; i < plen; i++)
        text[i] = (unsigned char)prompt[i];
    kiln_rng rng;
    kiln_rng_seed(&rng, seed);
    size_t n = plen, fed = 0, start = 0;
    double t0 = cli_now_s(), gen_s = 0;
    if (!quiet && !json)
        fwrite(prompt, 1, plen, stdout);
    while (fed < n || n < total) {
        if (kiln_decoder_position(d) == ctx) {   /* full: restart from the last half */
            kiln_decoder_reset(d);
            start = fed - (size_t)ctx / 2;
            for (size_t i = start; i < fed; i++)
                if (kiln_decoder_step(d, text[i], logits) != KILN_OK)
                    goto fail;
        }
        int pos = kiln_decoder_position(d);
        double s0 = cli_now_s();
        if (kiln_decoder_step(d, text[fed++], logits) != KILN_OK)
            goto fail;
        double dt = cli_now_s() - s0;
        if (start == 0)   /* times of the first pass through the context, by position */
            step_s[pos] = dt;
        if (fed == n && n < total) {
            double s1 = cli_now_s();
            text[n++] = sample(logits, v, temp, top_k, &rng, p);
            gen_s += dt + cli_now_s() - s1;
            if (!quiet && !json) {
                putchar((char)text[n - 1]);
                fflush(stdout);
            }
        }
    }
    double wall = cli_now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double at16 = median_at(step_s, 12, 20 < ctx ? 20 : ctx, scratch);
    double at128 = median_at(step_s, ctx > 8 ? ctx - 8 : 0, ctx, scratch);
    if (json) {
        printf("{\"command\":\"generate\",\"model\":");
        cli_json_str(a.pos[0]);
        printf(",\"prompt_tokens\":%zu,\"tokens\":%d,\"context\":%d,\"seconds\":%.4f,\"tokens_per_s\":%.1f,",
               plen, tokens, ctx, wall, tokens ? tokens / gen_s : 0.0);
        const char *keys[2] = {"ms_per_token_ctx16", "ms_per_token_ctx_full"};
        double vals[2] = {at16 * 1e3, at128 * 1e3};
        for (int k = 0; k < 2; k++)   /* null where the run did not reach that context */
            printf(isfinite(vals[k]) ? "\"%s\":%.4f," : "\"%s\":null,", keys[k], vals[k]);
        printf("\"peak_rss_bytes\":%ld,\"text\":", ru.ru_maxrss * 1024L);
        putchar('"');   /* bytes as Latin-1 code points: valid JSON whatever was sampled */
        for (size_t i = 0; i < n; i++) {
            int c = text[i];
            if (c == '"' || c == '\\')
                printf("\\%c", c);
            else if (c < 0x20 || c >= 0x7f)
                printf("\\u%04x", c);
            else
                putchar(c);
        }
        printf("\"}\n");
    } else {
        fprintf(stderr, "\n%d tokens in %.3f s: %.1f tokens/s; per token %.3f ms near 16 and %.3f ms near %d positions "
                "of context; peak RSS %.1f MiB\n", tokens, gen_s, tokens ? tokens / gen_s : 0.0, at16 * 1e3, at128 * 1e3,
                ctx, ru.ru_maxrss / 1024.0);
    }
    free(text), free(logits), free(p), free(step_s), free(scratch);
    kiln_decoder_free(d);
    kiln_model_free(m);
    return 0;
fail:
    fprintf(stderr, "kiln generate: %s\n", kiln_last_error());
    return 1;
}
