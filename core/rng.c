/* rng.c: splitmix64 (Steele, Lea, Flood 2014) and unbiased bounded draws by rejection. */
#include "core/rng.h"

void sq_rng_seed(sq_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t sq_rng_next(sq_rng *rng)
{
    uint64_t z = (rng->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t sq_rng_below(sq_rng *rng, uint64_t bound)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound; /* largest multiple of bound */
    uint64_t x;
    do
        x = sq_rng_next(rng);
    while (x >= limit);
    return x % bound;
}
