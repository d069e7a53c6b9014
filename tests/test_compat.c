/* Model files written by the release before the N-d IR (tests/data/model_v1*.safetensors, made
 * from tests/data/model_v1.kiln by that release's `kiln train` and `kiln quantize`) still load
 * and give the outputs that release gave on the first 8 Fashion-MNIST test images
 * (tests/data/model_v1*_out.npy, written by its `kiln run --output`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check.h"
#include "kiln/dataset.h"
#include "kiln/kiln.h"
#include "kiln/tensor_io.h"

static void check_file(const char *dir, const char *model, const char *outputs, const kiln_dataset *test)
{
    char mp[512], op[512];
    snprintf(mp, sizeof mp, "%s/tests/data/%s", dir, model);
    snprintf(op, sizeof op, "%s/tests/data/%s", dir, outputs);
    kiln_model_t *m = kiln_model_load(mp);
    CHECK(m != NULL, "%s: %s", model, kiln_last_error());
    kiln_tensor_f32 want = {0};
    CHECK(kiln_npy_read(op, &want) == KILN_OK && want.ndim == 2 && want.dims[0] == 8 && want.dims[1] == 10,
          "%s: %s", outputs, kiln_last_error());
    if (!m || want.numel != 80) {
        kiln_model_free(m);
        kiln_tensor_f32_free(&want);
        return;
    }
    kiln_session_t *s = kiln_session_create(m, &(kiln_session_options){.max_batch = 8});
    float x[8 * 784], y[80];
    int idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    kiln_dataset_gather(test, idx, 8, x, NULL);
    CHECK(kiln_session_run(s, x, 8, y) == KILN_OK, "%s: run: %s", model, kiln_last_error());
    double worst = 0;
    for (int i = 0; i < 80; i++)
        worst = fmax(worst, fabs((double)y[i] - want.data[i]));
    CHECK(worst < 1e-4, "%s: outputs differ from the old release's by %g", model, worst);
    printf("%s: loads, outputs within %.2g of the old release's\n", model, worst);
    kiln_session_free(s);
    kiln_model_free(m);
    kiln_tensor_f32_free(&want);
}

int main(void)
{
    const char *dir = getenv("KILN_SOURCE_DIR") ? getenv("KILN_SOURCE_DIR") : ".";
    kiln_dataset test = {0};
    CHECK(kiln_dataset_load("fashion-mnist", false, &test) == KILN_OK, "dataset: %s", kiln_last_error());
    if (test.n >= 8) {
        check_file(dir, "model_v1.safetensors", "model_v1_out.npy", &test);
        check_file(dir, "model_v1_int8.safetensors", "model_v1_int8_out.npy", &test);
    }
    kiln_dataset_free(&test);
    return check_report();
}
