/* Metrics log reader and SVG chart writer. The trainer prints non-finite values as nan/inf,
 * which JSON lacks, so those bare words become null (NAN) before parsing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/error.h"
#include "io/json.h"
#include "io/atomic_file.h"
#include "train/plot.h"

/* ---- reading ---- */

/* One logged line. */
typedef struct {
    int64_t gstep;
    long line;
    double elapsed, loss, acc, test_acc, test_loss;
    bool epoch_end;
} record;

/* Copies s[0..len) to out (2 * len + 1 bytes), turning bare nan/inf words outside strings into
 * null; returns the new length. */
static size_t nonfinite_to_null(const char *s, size_t len, char *out)
{
    size_t o = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\' && i + 1 < len) {
                out[o++] = c;
                c = s[++i];
            } else if (c == '"') {
                in_str = false;
            }
        } else if (c == '"') {
            in_str = true;
        } else {
            size_t j = i + (c == '-' || c == '+');
            size_t word = 0;
            if (j + 3 <= len && (strncmp(s + j, "nan", 3) == 0 || strncmp(s + j, "inf", 3) == 0))
                word = j + 8 <= len && strncmp(s + j, "infinity", 8) == 0 ? 8 : 3;
            if (word) {
                memcpy(out + o, "null", 4);
                o += 4;
                i = j + word - 1;
                continue;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return o;
}

/* Reads field key of obj as a number (null gives NAN) into *v. */
static kiln_status get_number(const char *path, long line, const json_t *obj, const char *key,
                              bool required, double *v)
{
    const json_t *f = json_object_get(obj, key);
    *v = NAN;
    if (!f) {
        if (required)
            return kiln_error(KILN_ERR_FORMAT, "%s:%ld: field \"%s\" is missing", path, line, key);
    } else if (json_is_number(f)) {
        *v = json_number_value(f);
    } else if (!json_is_null(f)) {
        return kiln_error(KILN_ERR_FORMAT, "%s:%ld: field \"%s\" should be a number, found %s",
                          path, line, key, kiln_json_type_name(f));
    }
    return KILN_OK;
}

/* Parses one line of the log into *r. */
static kiln_status parse_line(const char *path, long line, const char *text, size_t len,
                              char *buf, record *r)
{
    kiln_json_error err;
    len = nonfinite_to_null(text, len, buf);
    json_t *obj = kiln_json_parse(buf, len, 0, &err);
    if (!obj)
        return kiln_error(KILN_ERR_FORMAT, "%s:%ld: not valid JSON: %s", path, line, err.msg);
    kiln_status st = KILN_OK;
    const json_t *gs = json_object_get(obj, "global_step");
    memset(r, 0, sizeof *r);
    r->line = line;
    if (!json_is_object(obj))
        st = kiln_error(KILN_ERR_FORMAT, "%s:%ld: expected a JSON object, found %s", path, line,
                        kiln_json_type_name(obj));
    else if (!gs)
        st = kiln_error(KILN_ERR_FORMAT, "%s:%ld: field \"global_step\" is missing", path, line);
    else if (!json_is_integer(gs) || (r->gstep = json_integer_value(gs)) < 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s:%ld: field \"global_step\" should be an integer >= 0",
                        path, line);
    if (!st)
        st = get_number(path, line, obj, "loss", true, &r->loss);
    if (!st)
        st = get_number(path, line, obj, "accuracy", true, &r->acc);
    if (!st)
        st = get_number(path, line, obj, "elapsed_s", true, &r->elapsed);
    if (!st) {
        const json_t *e = json_object_get(obj, "epoch_end");
        if (e && !json_is_boolean(e))
            st = kiln_error(KILN_ERR_FORMAT, "%s:%ld: field \"epoch_end\" should be a boolean",
                            path, line);
        r->epoch_end = json_is_true(e);
    }
    if (!st)
        st = get_number(path, line, obj, "test_accuracy", false, &r->test_acc);
    if (!st)
        st = get_number(path, line, obj, "test_loss", false, &r->test_loss);
    json_decref(obj);
    return st;
}

/* Orders records by global step, then by line. */
static int cmp_record(const void *a, const void *b)
{
    const record *x = a, *y = b;
    if (x->gstep != y->gstep)
        return x->gstep < y->gstep ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/* Fills c from recs[0..n), sorted, keeping the last record of each global step. */
static kiln_status fill_curve(kiln_curve *c, record *recs, size_t n)
{
    qsort(recs, n, sizeof *recs, cmp_record);
    size_t kept = 0, epochs = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 1 < n && recs[i + 1].gstep == recs[i].gstep)
            continue;
        recs[kept++] = recs[i];
        epochs += recs[i].epoch_end;
    }
    double **arrays[8] = { &c->step, &c->elapsed, &c->loss, &c->acc, &c->epoch_step,
                           &c->epoch_elapsed, &c->test_acc, &c->test_loss };
    for (int a = 0; a < 8; a++) {
        size_t count = a < 4 ? kept : epochs;
        if (!(*arrays[a] = malloc((count ? count : 1) * sizeof(double))))
            return kiln_error(KILN_ERR_NOMEM, "out of memory reading a metrics log");
    }
    c->n = (int)kept;
    for (size_t i = 0; i < kept; i++) {
        const record *r = &recs[i];
        c->step[i] = (double)r->gstep;
        c->elapsed[i] = r->elapsed;
        c->loss[i] = r->loss;
        c->acc[i] = r->acc;
        if (r->epoch_end) {
            c->epoch_step[c->n_epochs] = (double)r->gstep;
            c->epoch_elapsed[c->n_epochs] = r->elapsed;
            c->test_acc[c->n_epochs] = r->test_acc;
            c->test_loss[c->n_epochs] = r->test_loss;
            c->n_epochs++;
        }
    }
    return KILN_OK;
}

kiln_status kiln_curve_load(const char *path, const char *label, kiln_curve *out)
{
    if (!out)
        return kiln_error(KILN_ERR_ARG, "kiln_curve_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return kiln_error(KILN_ERR_ARG, "kiln_curve_load: path is NULL");
    FILE *f = fopen(path, "r");
    if (!f)
        return kiln_error(KILN_ERR_IO, "%s: cannot open the metrics log: %s", path,
                          strerror(errno));
    char *text = NULL, *buf = NULL;
    size_t text_cap = 0, buf_cap = 0, n = 0, cap = 0;
    record *recs = NULL;
    kiln_status st = KILN_OK;
    long line = 0;
    ssize_t len;
    while (!st && (len = getline(&text, &text_cap, f)) >= 0) {
        line++;
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                           text[len - 1] == ' ' || text[len - 1] == '\t'))
            len--;
        size_t skip = strspn(text, " \t");
        if ((size_t)len <= skip)
            continue;  /* blank line */
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            record *grown = realloc(recs, cap * sizeof *recs);
            if (!grown) {
                st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            recs = grown;
        }
        if (buf_cap < 2 * (size_t)len + 1) {
            free(buf);
            buf_cap = 2 * (size_t)len + 1;
            if (!(buf = malloc(buf_cap))) {
                buf_cap = 0;
                st = kiln_error(KILN_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
        }
        st = parse_line(path, line, text, (size_t)len, buf, &recs[n]);
        n += !st;
    }
    if (!st && ferror(f))
        st = kiln_error(KILN_ERR_IO, "%s: read error after line %ld", path, line);
    if (!st && n == 0)
        st = kiln_error(KILN_ERR_FORMAT, "%s: no metrics lines in it", path);
    if (!st && n > (size_t)0x7fffffff)
        st = kiln_error(KILN_ERR_FORMAT, "%s: too many lines", path);
    if (!st)
        st = fill_curve(out, recs, n);
    fclose(f);
    free(text);
    free(buf);
    free(recs);
    if (st) {
        kiln_curve_free(out);
        return st;
    }
    if (!label) {
        const char *slash = strrchr(path, '/');
        label = slash ? slash + 1 : path;
    }
    snprintf(out->label, sizeof out->label, "%s", label);
    size_t end = strlen(out->label);  /* if truncated, do not keep half a UTF-8 character */
    while (end > 0 && ((unsigned char)label[end] & 0xC0) == 0x80)
        end--;
    out->label[end] = '\0';
    return KILN_OK;
}

void kiln_curve_free(kiln_curve *c)
{
    if (!c)
        return;
    free(c->step);
    free(c->elapsed);
    free(c->loss);
    free(c->acc);
    free(c->epoch_step);
    free(c->epoch_elapsed);
    free(c->test_acc);
    free(c->test_loss);
    memset(c, 0, sizeof *c);
}

/* ---- drawing ---- */

#define W 900
#define PLOT_TOP 70.0
#define PLOT_BOTTOM 440.0
#define LEGEND_TOP 500

static const char *const palette[] = { "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                       "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f" };
#define N_COLOURS (int)(sizeof palette / sizeof palette[0])

/* A linear axis: data range lo..hi with ticks every step. */
typedef struct {
    double lo, hi, step;
} axis;

/* A series of points: n values of xs and ys (NAN entries skipped). */
typedef struct {
    const double *xs, *ys;
    int n;
} series;

/* One panel: where it sits and its axes. */
typedef struct {
    double left, right;
    axis x, y;
} panel;

/* Grows [*lo, *hi] to hold the finite values of s. */
static void extend(const series *s, bool use_y, double *lo, double *hi)
{
    for (int i = 0; i < s->n; i++) {
        double v = use_y ? s->ys[i] : s->xs[i];
        if (isfinite(v) && isfinite(use_y ? s->xs[i] : s->ys[i])) {
            *lo = fmin(*lo, v);
            *hi = fmax(*hi, v);
        }
    }
}

/* An axis covering lo..hi with about 5 ticks at 1, 2 or 5 x 10^k. */
static axis nice_axis(double lo, double hi)
{
    if (!(lo <= hi)) {  /* no data */
        lo = 0;
        hi = 1;
    }
    if (hi - lo < 1e-12 * fmax(1.0, fabs(hi))) {
        double pad = fabs(hi) > 0 ? fabs(hi) * 0.1 : 0.5;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    return (axis){ floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step };
}

/* Formats tick value v of axis a ("0.25", "400", "12k"). */
static void tick_label(const axis *a, double v, char *out, size_t size)
{
    double scale = fmax(fabs(a->lo), fabs(a->hi)) >= 10000 ? 1000 : 1;
    double step = a->step / scale;
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < a->step * 1e-9)
        snprintf(out, size, "0");
    else
        snprintf(out, size, "%.*f%s", decimals, v / scale, scale > 1 ? "k" : "");
}

static double px(const panel *p, double x)
{
    return p->left + (x - p->x.lo) / (p->x.hi - p->x.lo) * (p->right - p->left);
}

static double py(const panel *p, double y)
{
    return PLOT_BOTTOM - (y - p->y.lo) / (p->y.hi - p->y.lo) * (PLOT_BOTTOM - PLOT_TOP);
}

/* Writes s with XML special characters escaped. */
static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t')
                fputc(*s, f);
        }
    }
}

/* Draws panel p's frame, grid, tick labels, axis titles and heading. */
static void draw_frame(FILE *f, const panel *p, const char *heading, const char *xname,
                       const char *yname)
{
    char label[32];
    fprintf(f, "<g font-size=\"11\" fill=\"#444\">\n");
    for (int k = 0; ; k++) {
        double v = p->x.lo + k * p->x.step;
        if (v > p->x.hi + p->x.step * 1e-6)
            break;
        tick_label(&p->x, v, label, sizeof label);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                px(p, v), PLOT_TOP, px(p, v), PLOT_BOTTOM, px(p, v), PLOT_BOTTOM + 16, label);
    }
    for (int k = 0; ; k++) {
        double v = p->y.lo + k * p->y.step;
        if (v > p->y.hi + p->y.step * 1e-6)
            break;
        tick_label(&p->y, v, label, sizeof label);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                p->left, py(p, v), p->right, py(p, v), p->left - 6, py(p, v) + 4, label);
    }
    fprintf(f, "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#888\"/>\n", p->left, PLOT_TOP, p->right - p->left, PLOT_BOTTOM - PLOT_TOP);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
            (p->left + p->right) / 2, PLOT_BOTTOM + 36, xname);
    fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(-90)\" text-anchor=\"middle\" "
            "font-size=\"12\">%s</text>\n", p->left - 46, (PLOT_TOP + PLOT_BOTTOM) / 2, yname);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
            "font-weight=\"bold\">%s</text>\n", (p->left + p->right) / 2, PLOT_TOP - 10, heading);
}

/* Draws s in panel p as a polyline (and circles when markers). */
static void draw_series(FILE *f, const panel *p, const series *s, const char *colour,
                        double width, double opacity, bool markers)
{
    fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\" "
            "stroke-linejoin=\"round\" points=\"", colour, width, opacity);
    for (int i = 0; i < s->n; i++)
        if (isfinite(s->xs[i]) && isfinite(s->ys[i]))
            fprintf(f, "%.1f,%.1f ", px(p, s->xs[i]), py(p, s->ys[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; markers && i < s->n; i++)
        if (isfinite(s->xs[i]) && isfinite(s->ys[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\" "
                    "stroke=\"white\" stroke-width=\"0.8\"/>\n", px(p, s->xs[i]), py(p, s->ys[i]), colour);
}

/* Text of legend entry r: the runs' labels, then the line-style key. */
static const char *legend_text(const kiln_curve *runs, int n_runs, int r)
{
    return r < n_runs ? runs[r].label : r == n_runs ? "train accuracy" : "test accuracy";
}

/* Width in pixels a legend entry for text takes (rough estimate at 12px). */
static double legend_width(const char *text)
{
    return 36 + 6.5 * (double)strlen(text);
}

/* Draws the legend rows starting at y: one entry per run, then the line-style key. */
static void draw_legend(FILE *f, const kiln_curve *runs, int n_runs, double y)
{
    double x = 70;
    for (int r = 0; r <= n_runs + 1; r++) {
        const char *text = legend_text(runs, n_runs, r);
        const char *colour = r < n_runs ? palette[r % N_COLOURS] : "#555";
        double w = legend_width(text);
        if (x + w > W - 20 && x > 70) {
            x = 70;
            y += 20;
        }
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"%s\"/>", x, y - 4, x + 24, y - 4, colour,
                r == n_runs ? "1" : "2.5");
        if (r == n_runs + 1)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", x + 12, y - 4,
                    colour);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\">", x + 30, y);
        put_escaped(f, text);
        fprintf(f, "</text>\n");
        x += w + 12;
    }
}

/* Rows the legend needs (same layout as draw_legend). */
static int legend_rows(const kiln_curve *runs, int n_runs)
{
    double x = 70;
    int rows = 1;
    for (int r = 0; r <= n_runs + 1; r++) {
        double w = legend_width(legend_text(runs, n_runs, r));
        if (x + w > W - 20 && x > 70) {
            x = 70;
            rows++;
        }
        x += w + 12;
    }
    return rows;
}

/* Writes the whole chart to f. */
static void write_svg(FILE *f, const kiln_curve *runs, int n_runs, const char *title, bool by_time)
{
    double xlo = 0, xhi = -INFINITY, llo = INFINITY, lhi = -INFINITY, alo = INFINITY,
           ahi = -INFINITY;
    for (int r = 0; r < n_runs; r++) {
        const kiln_curve *c = &runs[r];
        series loss = { by_time ? c->elapsed : c->step, c->loss, c->n };
        series acc = { loss.xs, c->acc, c->n };
        series test = { by_time ? c->epoch_elapsed : c->epoch_step, c->test_acc, c->n_epochs };
        extend(&loss, false, &xlo, &xhi);
        extend(&acc, false, &xlo, &xhi);
        extend(&test, false, &xlo, &xhi);
        extend(&loss, true, &llo, &lhi);
        extend(&acc, true, &alo, &ahi);
        extend(&test, true, &alo, &ahi);
    }
    axis x = nice_axis(xlo, xhi);
    panel lp = { 80, 420, x, nice_axis(llo, lhi) };
    panel ap = { 530, 870, x, nice_axis(alo, ahi) };
    int height = LEGEND_TOP + 20 * legend_rows(runs, n_runs) + 20;
    if (height < 560)
        height = 560;
    const char *xname = by_time ? "elapsed (s)" : "global step";

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
            "<text x=\"%d\" y=\"30\" text-anchor=\"middle\" font-size=\"18\" "
            "font-weight=\"bold\">", W, height, W, height, W / 2);
    put_escaped(f, title ? title : "Training curves");
    fprintf(f, "</text>\n");
    draw_frame(f, &lp, "Training loss", xname, "loss");
    draw_frame(f, &ap, "Accuracy", xname, "accuracy");
    for (int r = 0; r < n_runs; r++) {
        const kiln_curve *c = &runs[r];
        const char *colour = palette[r % N_COLOURS];
        series loss = { by_time ? c->elapsed : c->step, c->loss, c->n };
        series acc = { loss.xs, c->acc, c->n };
        series test = { by_time ? c->epoch_elapsed : c->epoch_step, c->test_acc, c->n_epochs };
        fprintf(f, "<g>\n");
        draw_series(f, &lp, &loss, colour, 1.8, 1.0, false);
        draw_series(f, &ap, &acc, colour, 1.0, 0.6, false);
        draw_series(f, &ap, &test, colour, 2.0, 1.0, true);
        fprintf(f, "</g>\n");
    }
    draw_legend(f, runs, n_runs, LEGEND_TOP);
    fprintf(f, "</svg>\n");
}

kiln_status kiln_plot_svg(const char *path, const kiln_curve *runs, int n_runs, const char *title,
                          bool by_time)
{
    if (!path || !runs || n_runs < 1)
        return kiln_error(KILN_ERR_ARG, "kiln_plot_svg: needs a path and at least one run");
    for (int r = 0; r < n_runs; r++)
        if (runs[r].n < 0 || runs[r].n_epochs < 0 || (runs[r].n && !(runs[r].step &&
            runs[r].elapsed && runs[r].loss && runs[r].acc)) || (runs[r].n_epochs &&
            !(runs[r].epoch_step && runs[r].epoch_elapsed && runs[r].test_acc)))
            return kiln_error(KILN_ERR_ARG, "kiln_plot_svg: run %d has missing arrays", r);
    kiln_atomic_file f;
    kiln_status st = kiln_atomic_open(&f, path);
    if (st != KILN_OK)
        return st;
    write_svg(f.fp, runs, n_runs, title, by_time);
    return kiln_atomic_commit(&f);
}
