/* kiln run --input NAME=FILE.npy --output NAME=FILE.npy on a two-input, two-output model: the
 * files it writes hold what a session computes; a missing input, an unknown output and a
 * misshapen file are refused with the names given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "kiln/kiln.h"
#include "kiln/tensor_io.h"

static char dir[512];

static const char *at(const char *name)
{
    static char buf[8][700];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Runs cmd with output to out.txt; its exit status and whether the output has want. */
static int run(const char *cmd, const char *want, bool *has)
{
    char full[3000];
    snprintf(full, sizeof full, "%s >%s 2>&1", cmd, at("run_out.txt"));
    int rc = system(full);
    FILE *f = fopen(at("run_out.txt"), "r");
    char text[4096] = "";
    if (f) {
        text[fread(text, 1, sizeof text - 1, f)] = 0;
        fclose(f);
    }
    *has = want && strstr(text, want) != NULL;
    if (want && !*has)
        fprintf(stderr, "output of %s:\n%s\n", cmd, text);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int main(void)
{
    const char *cli = getenv("KILN_CLI");
    snprintf(dir, sizeof dir, "%s", getenv("KILN_BINARY_DIR") ? getenv("KILN_BINARY_DIR") : ".");
    if (!cli) {
        CHECK(cli != NULL, "KILN_CLI is not set");
        return check_report();
    }
    const char *spec = "tok: input 5 dtype=i32\nemb: embedding 7 4\nx: input 5 4\ns: add emb x\nln: layernorm\n"
                       "head: linear 3\nm: mean axes=0 in=s\noutput head,m\n";
    FILE *f = fopen(at("two.kiln"), "w");
    fputs(spec, f);
    fclose(f);
    kiln_graph_t *g = kiln_spec_parse(spec, "two");
    kiln_graph_init_params(g, 3);
    CHECK(kiln_graph_save(g, at("two.safetensors"), NULL) == KILN_OK, "%s", kiln_last_error());
    int B = 2;
    float x[40], tokf[10];
    int32_t tok[10];
    for (int i = 0; i < 10; i++) {
        tok[i] = (i * 3) % 7;
        tokf[i] = (float)tok[i];
    }
    for (int i = 0; i < 40; i++)
        x[i] = (float)(i % 9) / 9.0f - 0.4f;
    int64_t dx[3] = {B, 5, 4}, dt[2] = {B, 5};
    CHECK(kiln_npy_write(at("x.npy"), x, 3, dx) == KILN_OK && kiln_npy_write(at("tokf.npy"), tokf, 2, dt) == KILN_OK,
          "%s", kiln_last_error());
    /* the tokens as int64, as NumPy writes indices: a header and the values */
    f = fopen(at("tok.npy"), "wb");
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<i8', 'fortran_order': False, 'shape': (%d, 5), }", B);
    int pad = 64 - (10 + hl + 1) % 64;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((hl + pad + 1) & 255),
                             (unsigned char)((hl + pad + 1) >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(hdr, 1, (size_t)hl, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    for (int i = 0; i < 10; i++) {
        int64_t v = tok[i];
        fwrite(&v, sizeof v, 1, f);
    }
    fclose(f);
    char cmd[2500];
    bool has;
    snprintf(cmd, sizeof cmd, "%s run %s --input tok=%s --input x=%s --output head=%s --output m=%s", cli,
             at("two.safetensors"), at("tok.npy"), at("x.npy"), at("head.npy"), at("m.npy"));
    CHECK(run(cmd, "output head: 2 x 5x3", &has) == 0 && has, "kiln run with two inputs and outputs");
    kiln_model_t *m = kiln_model_load(at("two.safetensors"));
    CHECK(m != NULL, "%s", kiln_last_error());
    if (!m)
        return check_report();
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = B});
    float head[30], mean[8];
    const void *in[2] = {tok, x};
    float *out[2] = {head, mean};
    CHECK(kiln_session_run_all(s, in, B, out) == KILN_OK, "%s", kiln_last_error());
    kiln_tensor_f32 h = {0}, mm = {0};
    CHECK(kiln_npy_read(at("head.npy"), &h) == KILN_OK && h.ndim == 3 && h.dims[0] == B && h.dims[1] == 5 &&
              h.dims[2] == 3 && kiln_npy_read(at("m.npy"), &mm) == KILN_OK && mm.ndim == 2 && mm.dims[1] == 4,
          "written outputs: %s", kiln_last_error());
    if (h.numel == 30 && mm.numel == 8)
        CHECK(memcmp(h.data, head, sizeof head) == 0 && memcmp(mm.data, mean, sizeof mean) == 0,
              "the files hold what the session computes");
    kiln_tensor_f32_free(&h);
    kiln_tensor_f32_free(&mm);
    snprintf(cmd, sizeof cmd, "%s run %s --input x=%s", cli, at("two.safetensors"), at("x.npy"));
    CHECK(run(cmd, "no --input tok=FILE.npy for the model's input tok", &has) == 1 && has, "missing input");
    snprintf(cmd, sizeof cmd, "%s run %s --input tok=%s --input x=%s --output nope=%s", cli, at("two.safetensors"),
             at("tok.npy"), at("x.npy"), at("n.npy"));
    CHECK(run(cmd, "--output nope=", &has) == 1 && has, "unknown output");
    snprintf(cmd, sizeof cmd, "%s run %s --input tok=%s --input x=%s", cli, at("two.safetensors"), at("tokf.npy"),
             at("x.npy"));
    CHECK(run(cmd, "expected '<i4'", &has) == 1, "float tokens refused");
    snprintf(cmd, sizeof cmd, "%s run %s --input tok=%s --input x=%s", cli, at("two.safetensors"), at("tok.npy"),
             at("tokf.npy"));
    CHECK(run(cmd, "does not fit input x (5x4 per example, batch first)", &has) == 1 && has, "misshapen input");
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_graph_free(g);
    return check_report();
}
