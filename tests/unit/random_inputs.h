/* random_inputs.h: the random inputs of the kernel tests (test_kernels_cpu.c,
 * test_kernels_backward.c): a 64-bit linear congruential generator (Knuth's
 * MMIX constants) and buffers of uniform floats. Each test program sets
 * rng_state before its tests run, to a fixed seed or to the clock with the
 * seed printed so that a failing run can be repeated. Include after cmocka.h. */
#ifndef SQ_TESTS_UNIT_RANDOM_INPUTS_H
#define SQ_TESTS_UNIT_RANDOM_INPUTS_H

#include <stdint.h>
#include <stdlib.h>

static uint64_t rng_state;

/* Uniform in [0, 1), from the top 53 bits of the state. */
static inline double uniform(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* n floats uniform in [lo, hi), malloc'ed (the caller frees them). */
static inline float *random_floats(size_t n, double lo, double hi)
{
    float *x = malloc(sizeof(float) * n);
    assert_non_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * uniform());
    return x;
}

#endif
