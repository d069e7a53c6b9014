/* Both reference models' forward output, loss and every parameter gradient on one batch against
 * PyTorch's (tests/ref/torch_ref.py writes the reference with Debian's python3-torch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "core/graph.h"
#include "io/graph_file.h"
#include "kiln/kiln_train.h"

/* max |a - b| / max |b|: the tensor's relative error. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static const float *tensor(const kiln_st_file *f, const char *name, size_t n)
{
    const kiln_st_tensor *t = kiln_st_find(f, name);
    CHECK(t && t->dtype == KILN_DT_F32 && t->nbytes == n * sizeof(float), "reference tensor %s missing or wrong size",
          name);
    return t && t->nbytes == n * sizeof(float) ? t->data : NULL;
}

static void check_model(const char *which, const char *spec_file)
{
    const char *src = getenv("KILN_SOURCE_DIR");
    char cmd[2048], ref[256], spec[1024];
    snprintf(ref, sizeof ref, "torch_ref_%s.safetensors", which);
    snprintf(spec, sizeof spec, "%s/examples/%s", src ? src : "..", spec_file);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/ref/torch_ref.py %s %s --batch 16", src ? src : "..",
             which, ref);
    int rc = system(cmd);
    CHECK(rc == 0, "PyTorch reference generator failed (%d): is python3-torch installed (scripts/setup-deps)?", rc);
    if (rc)
        return;
    kiln_st_file *f = kiln_st_open(ref);
    kiln_graph_t *g = kiln_spec_load(spec);
    CHECK(f && g, "%s", kiln_last_error());
    if (!f || !g)
        return;
    int batch = 16, classes = 10;
    kiln_st_tensor ts[16];
    int n = kiln_graph_tensors(g, ts, 16);
    for (int i = 0; i < n; i++) {
        const float *p = tensor(f, ts[i].name, ts[i].nbytes / sizeof(float));
        if (p)
            memcpy((void *)ts[i].data, p, ts[i].nbytes);
    }
    const float *x = tensor(f, "input", (size_t)batch * 784), *lab = tensor(f, "labels", (size_t)batch);
    const float *ref_logits = tensor(f, "logits", (size_t)batch * classes), *ref_loss = tensor(f, "loss", 1);
    if (!x || !lab || !ref_logits || !ref_loss)
        return;
    int y[16];
    for (int i = 0; i < batch; i++)
        y[i] = (int)lab[i];
    kiln_tape_t *t = kiln_tape_create(g, batch, false, 0);
    const float *logits = kiln_tape_forward(t, x, batch, true);
    float dlogits[160];
    float loss = kiln_loss_softmax_ce(logits, y, batch, classes, dlogits, NULL);
    double e = rel_err(logits, ref_logits, (size_t)batch * classes);
    printf("%s: logits relative error %.2e\n", which, e);
    CHECK(e < 1e-4, "%s logits differ from PyTorch: %.3e", which, e);
    e = fabs(loss - ref_loss[0]) / fabs(ref_loss[0]);
    printf("%s: loss %.7f (PyTorch %.7f), relative error %.2e\n", which, loss, ref_loss[0], e);
    CHECK(e < 1e-4, "%s loss differs from PyTorch: %.3e", which, e);
    kiln_tape_backward(t, dlogits);
    const float *grads = kiln_tape_param_grads(t);
    for (int i = 0; i < n; i++) {
        char gname[300];
        snprintf(gname, sizeof gname, "grad.%.127s", ts[i].name);
        size_t cnt = ts[i].nbytes / sizeof(float);
        const float *rg = tensor(f, gname, cnt);
        if (!rg)
            continue;
        size_t off = (size_t)((const float *)ts[i].data - g->params);
        e = rel_err(grads + off, rg, cnt);
        printf("%s: gradient %-12s relative error %.2e\n", which, ts[i].name, e);
        CHECK(e < 1e-4, "%s gradient of %s differs from PyTorch: %.3e", which, ts[i].name, e);
    }
    kiln_tape_free(t);
    kiln_graph_free(g);
    kiln_st_close(f);
    remove(ref);
}

int main(void)
{
    check_model("mlp", "fashion_mlp.kiln");
    check_model("cnn", "fashion_cnn.kiln");
    return check_report();
}
