/* The one random number generator of ropex: explicit 64-bit state (splitmix64), so a run's
 * randomness is a value that checkpoints can store and restore. */
#ifndef ROPEX_RNG_H
#define ROPEX_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct { uint64_t state; } Rng;

static inline uint64_t rng_next(Rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* uniform in [0, 1) with 53 random bits */
static inline double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }
/* standard normal (Box-Muller; one value per call, deterministic) */
static inline double rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

#endif
