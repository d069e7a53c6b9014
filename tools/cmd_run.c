/* kiln run: classify inputs from a .npy tensor, a PNG/JPEG/PGM/PPM image, an IDX file or the test set;
 * print the top classes and optionally write the raw outputs as .npy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "cli.h"
#include "core/graph.h"
#include "kiln/tensor_io.h"

static const char *const fashion_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

/* Reads INPUT into x (batch x input numel floats, allocated); labels (or -1) into *labels. */
static int read_input(const char *path, const kiln_node *in, int count, float **x, int *batch, int **labels)
{
    size_t want = in->numel;
    kiln_tensor_f32 t = {0};
    if (ends_with(path, ".npy")) {
        if (kiln_npy_read(path, &t) != KILN_OK)
            goto fail;
        if (t.numel == 0 || t.numel % want) {
            fprintf(stderr, "kiln run: %s: shape holds %zu values, expected a multiple of the model input's %zu "
                    "(%dx%dx%d)\n", path, t.numel, want, in->dims[0], in->dims[1], in->dims[2]);
            kiln_tensor_f32_free(&t);
            return 1;
        }
        *batch = (int)(t.numel / want);
    } else if (ends_with(path, ".png") || ends_with(path, ".jpg") || ends_with(path, ".jpeg") ||
               ends_with(path, ".pgm") || ends_with(path, ".ppm") || ends_with(path, ".pnm")) {
        kiln_tensor_f32 img = {0};
        if (in->rank != 3) {
            fprintf(stderr, "kiln run: %s: the model takes a vector of %d, not an image\n", path, in->dims[0]);
            return 1;
        }
        if (kiln_image_read(path, in->dims[0], &img) != KILN_OK)
            goto fail;
        if (img.dims[1] != in->dims[1] || img.dims[2] != in->dims[2]) {
            fprintf(stderr, "kiln run: %s: resizing %lldx%lld to the model's %dx%d\n", path, (long long)img.dims[1],
                    (long long)img.dims[2], in->dims[1], in->dims[2]);
            kiln_status st = kiln_tensor_resize(&img, in->dims[1], in->dims[2], &t);
            kiln_tensor_f32_free(&img);
            if (st != KILN_OK)
                goto fail;
        } else {
            t = img;
        }
        *batch = 1;
    } else {
        kiln_idx_tensor it = {0};
        if (kiln_idx_read(path, &it) != KILN_OK)
            goto fail;
        size_t per = it.ndim >= 2 ? it.numel / (size_t)it.dims[0] : it.numel;
        if (it.dtype != 0x08 || (per != want && it.numel != want)) {
            fprintf(stderr, "kiln run: %s: expected uint8 images of %zu values each (IDX type 0x08), found type "
                    "0x%02x with %zu values per item\n", path, want, it.dtype, per);
            kiln_idx_tensor_free(&it);
            return 1;
        }
        *batch = per == want ? (int)(it.numel / want) : 1;
        t.numel = (size_t)*batch * want;
        t.data = malloc(t.numel * sizeof(float));
        for (size_t i = 0; t.data && i < t.numel; i++)
            t.data[i] = ((const uint8_t *)it.data)[i] * (1.0f / 255.0f);
        kiln_idx_tensor_free(&it);
        if (!t.data)
            return 1;
    }
    *batch = *batch < count ? *batch : count;
    *x = t.data;
    *labels = malloc((size_t)*batch * sizeof(int));
    for (int i = 0; *labels && i < *batch; i++)
        (*labels)[i] = -1;
    return *labels ? 0 : 1;
fail:
    fprintf(stderr, "kiln run: %s\n", kiln_last_error());
    return 1;
}

int cmd_run(int argc, char **argv)
{
    static const char *const flags[] = {"json", NULL};
    cli_args a;
    if (cli_parse(&a, argc, argv, flags) || a.n_pos < 1 || a.n_pos > 2) {
        fprintf(stderr, "usage: kiln run MODEL [INPUT.npy|IMAGE.png|IMAGE.jpg|IMAGE.pgm|IMAGES.idx] "
                        "[--data fashion-mnist|DIR|npy:X,Y,TX,TY|images:DIR] "
                        "[--count N] [--top K] [--output OUT.npy] [--threads N] [--json]\n"
                        "       kiln run MODEL --input NAME=IN.npy... [--output NAME=OUT.npy...] [--threads N] [--json]\n");
        return 2;
    }
    const char *ins[64], *outs[64];
    int n_ins = cli_all(&a, "input", ins, 64), n_outs = cli_all(&a, "output", outs, 64);
    if (n_ins > 0) {   /* tensors in, tensors out: any model */
        int threads = (int)cli_int(&a, "threads", 1, 1, 1024);
        bool json = cli_flag(&a, "json");
        cli_check_unused(&a, "run");
        if (n_ins > 64 || n_outs > 64 || a.n_pos != 1) {
            fprintf(stderr, "kiln run: with --input, give the model alone and at most 64 --input/--output\n");
            return 2;
        }
        kiln_set_threads(threads);
        kiln_model_t *m = cli_load_runtime(a.pos[0]);
        int rc = m ? cli_run_tensors(m, ins, n_ins, outs, n_outs, threads, json) : 1;
        kiln_model_free(m);
        return rc;
    }
    cli_data data = cli_data_args(&a, "data", "fashion-mnist");
    const char *out_path = n_outs ? outs[n_outs - 1] : NULL;
    int count = (int)cli_int(&a, "count", a.n_pos == 2 ? 1 << 20 : 5, 1, 1 << 20);
    int top = (int)cli_int(&a, "top", 3, 1, 1000), threads = (int)cli_int(&a, "threads", 1, 1, 1024);
    bool json = cli_flag(&a, "json");
    cli_check_unused(&a, "run");
    kiln_set_threads(threads);
    kiln_model_t *m = cli_load_runtime(a.pos[0]);
    kiln_session_t *s = NULL;
    float *x = NULL, *z = NULL;
    int *labels = NULL, batch = 0, rc = 1;
    kiln_dataset d = {0};
    if (!m)
        goto done;
    const kiln_graph_t *g = kiln_model_graph(m);
    const kiln_node *in = &g->nodes[0];
    if (a.n_pos == 2) {
        if (read_input(a.pos[1], in, count, &x, &batch, &labels))
            goto done;
    } else {
        if (cli_load_data(&data, g, false, &d))
            goto done;
        if (kiln_dataset_check_classification(&d) != KILN_OK) {
            fprintf(stderr, "kiln run: %s: %s\n", data.spec, kiln_last_error());
            goto done;
        }
        if (in->numel != (size_t)d.c * d.h * d.w) {
            fprintf(stderr, "kiln run: model input %dx%dx%d, images %dx%dx%d\n", in->dims[0], in->dims[1],
                    in->dims[2], d.c, d.h, d.w);
            goto done;
        }
        batch = count < d.n ? count : d.n;
        x = malloc((size_t)batch * in->numel * sizeof(float));
        labels = malloc((size_t)batch * sizeof(int));
        int *idx = malloc((size_t)batch * sizeof(int));
        for (int i = 0; idx && i < batch; i++)
            idx[i] = i;
        if (x && labels && idx)
            kiln_dataset_gather(&d, idx, batch, x, labels);
        free(idx);
        if (!x || !labels)
            goto done;
    }
    int classes = (int)kiln_graph_numel(g, g->n - 1);
    s = kiln_session_create(m, &(kiln_session_options){.max_batch = batch, .threads = threads});
    z = malloc((size_t)batch * classes * sizeof(float));
    if (!s || !z || kiln_session_run(s, x, batch, z) != KILN_OK) {
        fprintf(stderr, "kiln run: %s\n", kiln_last_error());
        goto done;
    }
    if (out_path) {
        int64_t dims[4] = {batch, g->nodes[g->n - 1].dims[0], g->nodes[g->n - 1].dims[1], g->nodes[g->n - 1].dims[2]};
        if (kiln_npy_write(out_path, z, g->nodes[g->n - 1].rank + 1, dims) != KILN_OK) {
            fprintf(stderr, "kiln run: %s\n", kiln_last_error());
            goto done;
        }
    }
    bool fashion = classes == 10;
    if (json)
        printf("{\"command\":\"run\",\"examples\":%d,\"results\":[", batch);
    for (int i = 0; i < batch; i++) {
        const float *r = z + (size_t)i * classes;
        /* the outputs as probabilities: softmax unless they already sum to one */
        double sum = 0, mx = r[0];
        bool probs = true;
        for (int k = 0; k < classes; k++) {
            sum += r[k];
            mx = r[k] > mx ? r[k] : mx;
            probs = probs && r[k] >= 0;
        }
        probs = probs && fabs(sum - 1.0) < 1e-3;
        double se = 0;
        for (int k = 0; k < classes && !probs; k++)
            se += exp(r[k] - mx);
        if (json)
            printf("%s{\"index\":%d,\"label\":%d,\"top\":[", i ? "," : "", i, labels[i]);
        else if (labels[i] >= 0)
            printf("image %d (true: %s):", i, fashion && labels[i] < 10 ? fashion_classes[labels[i]] : "?");
        else
            printf("input %d:", i);
        int shown = 0;
        for (int t = 0; t < top && t < classes; t++) {
            int best = -1;
            for (int k = 0; k < classes; k++) {
                int rank = 0;   /* outputs ranked above k; ties keep index order */
                for (int u = 0; u < classes; u++)
                    rank += r[u] > r[k] || (r[u] == r[k] && u < k);
                if (rank == t)
                    best = k;
            }
            double p = probs ? r[best] : exp(r[best] - mx) / se;
            if (json)
                printf("%s{\"class\":%d,\"probability\":%.6f}", shown++ ? "," : "", best, p);
            else if (fashion)
                printf(" %s %.1f%%", fashion_classes[best], 100 * p);
            else
                printf(" class %d %.1f%%", best, 100 * p);
        }
        printf(json ? "]}" : "\n");
    }
    if (json) {
        printf("],\"output\":");
        if (out_path)
            cli_json_str(out_path);
        else
            printf("null");
        printf("}\n");
    } else if (out_path) {
        printf("wrote %s (%d x %d float32)\n", out_path, batch, classes);
    }
    rc = 0;
done:
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_dataset_free(&d);
    free(x);
    free(z);
    free(labels);
    return rc;
}
