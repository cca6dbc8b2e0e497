/* dropout_mask.h: the counter-based mask of kn_dropout (kernels.h), shared by
 * both backends (kernels/cpu/backward.c, kernels/cuda/elementwise.cu) so that they
 * drop exactly the same entries: a GPU run and a CPU run of one training job
 * see the same mask, and a recomputed forward drops what the first one did.
 * keep(i) = u(seed, i) >= p with u = (splitmix64(seed + i) >> 40) / 2^24: the
 * top 24 bits of the hash as a float in [0, 1), exact (24 bits fit a float's
 * significand), so the comparison is the same on any processor. */
#ifndef SQ_KERNELS_DROPOUT_MASK_H
#define SQ_KERNELS_DROPOUT_MASK_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KN_DROPOUT_FN static inline __host__ __device__
#else
#define KN_DROPOUT_FN static inline
#endif

/* splitmix64's output function (Steele, Lea, Flood 2014) on the counter z. */
KN_DROPOUT_FN uint64_t kn_dropout_hash(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Whether entry i survives dropout with probability p under `seed`. */
KN_DROPOUT_FN bool kn_dropout_keep(uint64_t seed, uint64_t i, float p)
{
    float u = (float)(kn_dropout_hash(seed + i) >> 40) * (1.0f / 16777216.0f);
    return u >= p;
}

#endif
