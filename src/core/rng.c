/* xoshiro256** generator (Blackman & Vigna), seeded through splitmix64. */
#include <math.h>
#include "core/rng.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void kiln_rng_seed(kiln_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t kiln_rng_next(kiln_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float kiln_rng_uniform(kiln_rng *r)
{
    return (float)(kiln_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint32_t kiln_rng_below(kiln_rng *r, uint32_t n)
{
    return (uint32_t)(((kiln_rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

void kiln_rng_shuffle(kiln_rng *r, int *perm, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)kiln_rng_below(r, (uint32_t)i + 1);
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

float kiln_rng_normal(kiln_rng *r)
{
    double u1 = ((double)(kiln_rng_next(r) >> 11) + 1.0) * 0x1.0p-53;   /* in (0, 1]: log is finite */
    double u2 = (double)(kiln_rng_next(r) >> 11) * 0x1.0p-53;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
