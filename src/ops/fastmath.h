/* exp and erf for float lanes: branch-free, so loops over them vectorise (glibc's expf and erff
 * do not); accurate to a few units in the last place (exp) and 1.2e-7 absolute (erf),
 * checked against libm in tests/test_kernels.c. */
#ifndef KILN_OPS_FASTMATH_H
#define KILN_OPS_FASTMATH_H

#include <stdint.h>

/* e^x; inputs below -87 give about 1e-38 instead of 0, above 88 clamp near FLT_MAX. */
static inline float kiln_exp(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    /* x = n ln2 + r, |r| <= ln2 / 2: n rounded to nearest by adding and removing 1.5 x 2^23 */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666418f + r * (0.00833336077f +
                      r * (0.00138873165f + r * 0.000198492617f))))));
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)n + 127) << 23};   /* 2^n */
    return p * scale.f;
}

/* erf(x) from Numerical Recipes' Chebyshev fit of erfc (fractional error below 1.2e-7). */
static inline float kiln_erf(float x)
{
    float z = x < 0 ? -x : x, t = 1.0f / (1.0f + 0.5f * z);
    float e = -z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f +
              t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    float erfc = t * kiln_exp(e);
    return x < 0 ? erfc - 1.0f : 1.0f - erfc;
}

#endif
