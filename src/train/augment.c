/* Data augmentation: random crop after zero padding, random horizontal flip. */
#include <string.h>
#include "core/rng.h"
#include "train/trainer.h"

void kiln_augment(float *x, int batch, int c, int h, int w, int crop_pad, bool flip, kiln_rng *rng, float *tmp)
{
    size_t plane = (size_t)h * w;
    for (int b = 0; b < batch; b++) {
        float *img = x + (size_t)b * c * plane;
        int dy = crop_pad ? (int)kiln_rng_below(rng, 2 * crop_pad + 1) - crop_pad : 0;
        int dx = crop_pad ? (int)kiln_rng_below(rng, 2 * crop_pad + 1) - crop_pad : 0;
        bool f = flip && (kiln_rng_next(rng) >> 63);
        if (!dy && !dx && !f)
            continue;
        memcpy(tmp, img, (size_t)c * plane * sizeof(float));
        for (int k = 0; k < c; k++) {
            for (int y = 0; y < h; y++) {
                int sy = y + dy;
                for (int xx = 0; xx < w; xx++) {
                    int sx = (f ? w - 1 - xx : xx) + dx;
                    img[k * plane + (size_t)y * w + xx] =
                        (sy >= 0 && sy < h && sx >= 0 && sx < w) ? tmp[k * plane + (size_t)sy * w + sx] : 0.0f;
                }
            }
        }
    }
}
