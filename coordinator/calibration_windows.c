/* calibration_windows.c: seeded random windows over a token stream (see header). */
#include "coordinator/calibration_windows.h"

#include <string.h>

#include "core/rng.h"

sq_status sq_draw_calibration_windows(const char *origin, const int32_t *ids, size_t ntokens, int nsamples,
                                      int seqlen, uint64_t seed, int32_t *out)
{
    if (nsamples < 1 || seqlen < 1)
        return sq_fail(SQ_ERR_ARG, "calibration: nsamples (%d) and seqlen (%d) must be positive", nsamples, seqlen);
    if (ntokens < (size_t)seqlen + 1)
        return sq_fail(SQ_ERR_ARG, "%s: %zu tokens, fewer than seqlen + 1 = %d: not enough calibration text", origin,
                       ntokens, seqlen + 1);
    sq_rng rng;
    sq_rng_seed(&rng, seed);
    uint64_t starts = ntokens - (size_t)seqlen; /* i in [0, ntokens - seqlen - 1] */
    for (int s = 0; s < nsamples; s++) {
        size_t start = (size_t)sq_rng_below(&rng, starts);
        memcpy(out + (size_t)s * seqlen, ids + start, (size_t)seqlen * sizeof *ids);
    }
    return SQ_OK;
}
