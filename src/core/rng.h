/* A small, seedable, serialisable random generator (xoshiro256**, seeded by splitmix64). */
#ifndef KILN_CORE_RNG_H
#define KILN_CORE_RNG_H

#include <stdint.h>

/* Generator state; copy it to save, assign it to restore. */
typedef struct { uint64_t s[4]; } kiln_rng;

/* Seeds the generator deterministically from one 64-bit value. */
void kiln_rng_seed(kiln_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t kiln_rng_next(kiln_rng *r);
/* Uniform float in [0, 1). */
float kiln_rng_uniform(kiln_rng *r);
/* Uniform integer in [0, n). */
uint32_t kiln_rng_below(kiln_rng *r, uint32_t n);
/* A standard normal draw (Box-Muller on two uniforms). */
float kiln_rng_normal(kiln_rng *r);
/* Fisher-Yates shuffle of perm[0..n). */
void kiln_rng_shuffle(kiln_rng *r, int *perm, int n);

#endif
