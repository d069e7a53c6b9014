/* infer_min: the smallest program that loads a model and runs it, on libkiln alone.
 *
 *     infer_min MODEL.safetensors [INPUT.f32]
 *
 * MODEL is an fp32 or int8 model file (kiln train / kiln quantize). INPUT holds exactly the model's
 * input numel raw little-endian float32 values (NCHW, one example); without it the input is zeros.
 * Prints the index of the largest output, then every output, one per line ("index value", enough
 * digits to read the float back exactly).
 *
 * The KILN_MINIMAL build links it statically, without OpenBLAS, OpenMP, zlib or libpng
 * (scripts/size-check measures it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kiln/kiln.h"

/* Reads n little-endian float32 values from path into x; the file must hold exactly that. */
static int read_input(const char *path, float *x, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    int rc = 0;
    unsigned char b[4];
    for (size_t i = 0; i < n && !rc; i++) {
        if (fread(b, 1, 4, f) != 4) {
            fprintf(stderr, "%s: holds %zu float32 values, the model takes %zu\n", path, i, n);
            rc = 1;
            break;
        }
        uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        memcpy(&x[i], &u, sizeof u);
    }
    if (!rc && fgetc(f) != EOF) {
        fprintf(stderr, "%s: longer than the model's %zu float32 values\n", path, n);
        rc = 1;
    }
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: infer_min MODEL.safetensors [INPUT.f32]\n");
        return 2;
    }
    kiln_model_t *m = kiln_model_load(argv[1]);
    if (!m) {
        fprintf(stderr, "infer_min: %s\n", kiln_last_error());
        return 1;
    }
    const kiln_graph_t *g = kiln_model_graph(m);
    size_t n_in = kiln_graph_numel(g, 0), n_out = kiln_graph_numel(g, kiln_graph_output(g));
    float *x = calloc(n_in, sizeof(float)), *y = malloc(n_out * sizeof(float));
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = 1, .threads = 1});
    int rc = 1;
    if (!x || !y || !s)
        fprintf(stderr, "infer_min: %s\n", s ? "out of memory" : kiln_last_error());
    else if (argc == 3 && read_input(argv[2], x, n_in))
        ;
    else if (kiln_session_run(s, x, 1, y) != KILN_OK)
        fprintf(stderr, "infer_min: %s\n", kiln_last_error());
    else {
        size_t best = 0;
        for (size_t i = 1; i < n_out; i++)
            if (y[i] > y[best])
                best = i;
        printf("argmax %zu\n", best);
        for (size_t i = 0; i < n_out; i++)
            printf("%zu %.9g\n", i, y[i]);
        rc = 0;
    }
    kiln_session_free(s);
    kiln_model_free(m);
    free(x);
    free(y);
    return rc;
}
