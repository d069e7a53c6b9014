/* Metrics log reading (resume duplicates, nan values, malformed lines) and SVG chart writing. */
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "train/plot.h"

static char tmp_names[16][128];  /* temp files created, removed at exit */
static int n_tmp;

/* A unique temp file name in the cwd for tag (remembered for cleanup). */
static const char *tmp_name(const char *tag)
{
    if (n_tmp == 16)
        abort();
    snprintf(tmp_names[n_tmp], sizeof tmp_names[n_tmp], "kiln_test_plot_%ld_%s", (long)getpid(),
             tag);
    return tmp_names[n_tmp++];
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", path);
}

/* Reads a whole text file (caller frees), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    fclose(f);
    return s;
}

static int count(const char *hay, const char *needle)
{
    int k = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        k++;
    return k;
}

#define LINE(gs, loss, acc, el) \
    "{\"epoch\":1,\"step\":" #gs ",\"global_step\":" #gs ",\"loss\":" #loss ",\"accuracy\":" #acc \
    ",\"lr\":0.01,\"images_per_s\":3012.5,\"elapsed_s\":" #el "}\n"
#define EPOCH_END(gs, loss, acc, el, tl, ta) \
    "{\"epoch\":1,\"step\":" #gs ",\"global_step\":" #gs ",\"loss\":" #loss ",\"accuracy\":" #acc \
    ",\"lr\":0.01,\"images_per_s\":3012.5,\"elapsed_s\":" #el ",\"epoch_end\":true," \
    "\"test_loss\":" #tl ",\"test_accuracy\":" #ta "}\n"

/* A run killed after step 500 and resumed from the step-250 checkpoint: 300..500 repeat. */
static const char run_a[] =
    LINE(100, 1.2, 0.55, 1.0) LINE(200, 0.9, 0.65, 2.0) EPOCH_END(250, 0.8, 0.70, 2.5, 0.6, 0.78)
    LINE(300, 0.7, 0.74, 3.0) LINE(400, 0.66, 0.76, 4.0)
    EPOCH_END(500, 0.6, 0.78, 5.0, 0.5, 0.80)
    "\n"
    LINE(300, 0.71, 0.73, 3.1) LINE(400, 0.65, 0.77, 4.1)
    EPOCH_END(500, 0.59, 0.79, 5.1, 0.49, 0.81)
    LINE(600, 0.5, 0.82, 6.1) LINE(700, 0.45, 0.84, 7.1)
    EPOCH_END(750, 0.42, 0.85, 7.6, 0.41, 0.853);

/* A run without a test set: the trainer prints nan for the test metrics. */
static const char run_b[] =
    LINE(100, 1.5, 0.45, 0.7) LINE(200, 1.1, 0.60, 1.4) EPOCH_END(250, 1.0, 0.62, 1.8, nan, -nan)
    LINE(300, 0.9, 0.66, 2.1) LINE(400, 0.8, 0.70, 2.8) EPOCH_END(500, 0.75, 0.72, 3.5, 0.7, 0.74);

static void test_load(void)
{
    const char *path = tmp_name("a.jsonl");
    write_text(path, run_a);
    kiln_curve c;
    kiln_status st = kiln_curve_load(path, "run A", &c);
    CHECK(st == KILN_OK, "load: %s", kiln_last_error());
    if (st)
        return;
    CHECK(strcmp(c.label, "run A") == 0, "label %s", c.label);
    CHECK(c.n == 9, "n %d", c.n);
    CHECK(c.n_epochs == 3, "epochs %d", c.n_epochs);
    static const double steps[] = { 100, 200, 250, 300, 400, 500, 600, 700, 750 };
    for (int i = 0; i < 9 && i < c.n; i++)
        CHECK(c.step[i] == steps[i], "step[%d] %g", i, c.step[i]);
    if (c.n == 9) {  /* the resumed lines win */
        CHECK(check_close(c.loss[3], 0.71, 1e-12), "loss at 300 %g", c.loss[3]);
        CHECK(check_close(c.acc[4], 0.77, 1e-12), "acc at 400 %g", c.acc[4]);
        CHECK(check_close(c.elapsed[5], 5.1, 1e-12), "elapsed at 500 %g", c.elapsed[5]);
        CHECK(check_close(c.loss[8], 0.42, 1e-12), "loss at 750 %g", c.loss[8]);
    }
    if (c.n_epochs == 3) {
        CHECK(c.epoch_step[0] == 250 && c.epoch_step[1] == 500 && c.epoch_step[2] == 750,
              "epoch steps %g %g %g", c.epoch_step[0], c.epoch_step[1], c.epoch_step[2]);
        CHECK(check_close(c.test_acc[1], 0.81, 1e-12), "test acc %g", c.test_acc[1]);
        CHECK(check_close(c.test_loss[2], 0.41, 1e-12), "test loss %g", c.test_loss[2]);
        CHECK(check_close(c.epoch_elapsed[2], 7.6, 1e-12), "epoch elapsed %g",
              c.epoch_elapsed[2]);
    }
    kiln_curve_free(&c);
    CHECK(c.n == 0 && c.step == NULL, "freed curve is empty");
    kiln_curve_free(&c);  /* twice is fine */

    const char *pb = tmp_name("b.jsonl");
    write_text(pb, run_b);
    st = kiln_curve_load(pb, NULL, &c);
    CHECK(st == KILN_OK, "load nan run: %s", kiln_last_error());
    if (st)
        return;
    CHECK(strncmp(c.label, "kiln_test_plot_", 15) == 0 && strstr(c.label, "b.jsonl"),
          "default label %s", c.label);
    CHECK(c.n == 6 && c.n_epochs == 2, "n %d epochs %d", c.n, c.n_epochs);
    if (c.n_epochs == 2)
        CHECK(isnan(c.test_acc[0]) && isnan(c.test_loss[0]) &&
              check_close(c.test_acc[1], 0.74, 1e-12), "nan test metrics %g %g", c.test_acc[0],
              c.test_acc[1]);
    kiln_curve_free(&c);
}

/* Loading text must fail with a message containing each of want[]. */
static void expect_error(const char *tag, const char *text, kiln_status code,
                         const char *const *want, int n_want)
{
    const char *path = tmp_name(tag);
    write_text(path, text);
    kiln_curve c;
    kiln_status st = kiln_curve_load(path, "x", &c);
    CHECK(st == code, "%s: status %d, want %d", tag, (int)st, (int)code);
    CHECK(c.n == 0 && c.step == NULL, "%s: curve left empty", tag);
    const char *msg = kiln_last_error();
    CHECK(strstr(msg, path) != NULL, "%s: message names the file: %s", tag, msg);
    for (int i = 0; i < n_want; i++)
        CHECK(strstr(msg, want[i]) != NULL, "%s: message lacks '%s': %s", tag, want[i], msg);
}

static void test_errors(void)
{
    const char *const bad_json[] = { ":3:", "JSON" };
    expect_error("trunc.jsonl", LINE(100, 1, 0.5, 1) LINE(200, 0.9, 0.6, 2) "{\"epoch\":1,\"glo\n",
                 KILN_ERR_FORMAT, bad_json, 2);
    const char *const missing[] = { ":2:", "\"loss\"", "missing" };
    expect_error("missing.jsonl", LINE(100, 1, 0.5, 1) "{\"global_step\":200,\"accuracy\":0.5,"
                 "\"elapsed_s\":2}\n", KILN_ERR_FORMAT, missing, 3);
    const char *const wrong_type[] = { ":1:", "\"accuracy\"", "string" };
    expect_error("type.jsonl", "{\"global_step\":1,\"loss\":1,\"accuracy\":\"high\","
                 "\"elapsed_s\":2}\n", KILN_ERR_FORMAT, wrong_type, 3);
    const char *const not_int[] = { ":1:", "\"global_step\"" };
    expect_error("step.jsonl", "{\"global_step\":1.5,\"loss\":1,\"accuracy\":0.5,"
                 "\"elapsed_s\":2}\n", KILN_ERR_FORMAT, not_int, 2);
    const char *const array[] = { ":2:", "object" };
    expect_error("array.jsonl", LINE(100, 1, 0.5, 1) "[1,2]\n", KILN_ERR_FORMAT, array, 2);
    expect_error("empty.jsonl", "\n\n", KILN_ERR_FORMAT, NULL, 0);

    kiln_curve c;
    CHECK(kiln_curve_load("kiln_test_plot_no_such_file.jsonl", "x", &c) == KILN_ERR_IO,
          "missing file");
    CHECK(strstr(kiln_last_error(), "kiln_test_plot_no_such_file.jsonl") != NULL, "%s",
          kiln_last_error());
}

static void test_plot(void)
{
    const char *pa = tmp_name("pa.jsonl"), *pb = tmp_name("pb.jsonl");
    write_text(pa, run_a);
    write_text(pb, run_b);
    kiln_curve runs[2];
    kiln_status sa = kiln_curve_load(pa, "lr 0.01 <base>", &runs[0]);
    kiln_status sb = kiln_curve_load(pb, "wide & deep", &runs[1]);
    CHECK(sa == KILN_OK && sb == KILN_OK, "load: %s", kiln_last_error());
    if (sa || sb)
        return;
    for (int by_time = 0; by_time < 2; by_time++) {
        const char *svg = tmp_name(by_time ? "time.svg" : "step.svg");
        kiln_status st = kiln_plot_svg(svg, runs, 2, "Fashion-MNIST \"runs\"", by_time);
        CHECK(st == KILN_OK, "plot: %s", kiln_last_error());
        char *s = slurp(svg);
        CHECK(s != NULL, "%s exists", svg);
        if (!s)
            continue;
        CHECK(strncmp(s, "<svg", 4) == 0 || strncmp(s, "<?xml", 5) == 0, "svg start: %.20s", s);
        CHECK(strstr(s, "<svg") && strstr(s, "</svg>"), "svg element closed");
        CHECK(strstr(s, "lr 0.01 &lt;base&gt;") && strstr(s, "wide &amp; deep"), "labels escaped");
        CHECK(strstr(s, "Fashion-MNIST &quot;runs&quot;"), "title");
        CHECK(count(s, "<polyline") == 6, "polylines: %d", count(s, "<polyline"));
        CHECK(count(s, "<circle") >= 3 + 1 + 1, "markers: %d", count(s, "<circle"));
        CHECK(strstr(s, by_time ? "elapsed (s)" : "global step"), "x axis name");
        CHECK(!strstr(s, "nan") && !strstr(s, "inf"), "no non-finite coordinates");
        free(s);
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", svg, (long)getpid());
        CHECK(access(tmp, F_OK) != 0, "temp file removed");
    }
    CHECK(kiln_plot_svg(tmp_name("none.svg"), runs, 0, NULL, false) == KILN_ERR_ARG, "no runs");
    CHECK(kiln_plot_svg("kiln_test_plot_no_dir/x.svg", runs, 1, NULL, false) == KILN_ERR_IO,
          "bad directory");
    kiln_curve_free(&runs[0]);
    kiln_curve_free(&runs[1]);
}

int main(void)
{
    test_load();
    test_errors();
    test_plot();
    for (int i = 0; i < n_tmp; i++)
        remove(tmp_names[i]);
    return check_report();
}
