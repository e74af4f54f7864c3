/*
 * The project's one pseudo-random generator: xoshiro256** seeded through splitmix64 (so
 * nearby seeds give unrelated streams). Deterministic for a seed on every machine: the
 * sampler, model init's random weights and the synthetic traces all draw from it.
 */
#ifndef MS_RNG_H
#define MS_RNG_H

#include <stdint.h>

typedef struct ms_rng {
    uint64_t s[4];
} ms_rng;

/* One splitmix64 step: advances *x, returns the mixed value. */
uint64_t ms_splitmix64(uint64_t *x);
/* State = four splitmix64 draws from seed. */
void ms_rng_seed(ms_rng *r, uint64_t seed);
uint64_t ms_rng_next(ms_rng *r);
double ms_rng_uniform(ms_rng *r); /* [0, 1), 53 bits */
double ms_rng_normal(ms_rng *r);  /* standard normal (Box-Muller) */

#endif
