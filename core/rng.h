/* rng.h: the deterministic random stream every seeded choice uses (splitmix64),
 * so that a job rerun with the same seed draws the same calibration windows. */
#ifndef SQ_RNG_H
#define SQ_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state;
} sq_rng;

void sq_rng_seed(sq_rng *rng, uint64_t seed);
uint64_t sq_rng_next(sq_rng *rng);
/* Uniform integer in [0, bound) without modulo bias; bound > 0. */
uint64_t sq_rng_below(sq_rng *rng, uint64_t bound);

#endif
