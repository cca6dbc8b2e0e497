/* calibration_windows.c: random or consecutive windows over a token stream (see header). */
#include "coordinator/calibration_windows.h"

#include <string.h>

#include "core/rng.h"

sq_status sq_draw_calibration_windows(const char *origin, const int32_t *ids, size_t ntokens, int nsamples,
                                      int seqlen, sq_window_sampling sampling, uint64_t seed, int32_t *out)
{
    if (nsamples < 1 || seqlen < 1)
        return sq_fail(SQ_ERR_ARG, "calibration: nsamples (%d) and seqlen (%d) must be positive", nsamples, seqlen);
    size_t total = (size_t)nsamples * (size_t)seqlen;
    if (sampling == SQ_SAMPLING_CONSECUTIVE) {
        if (ntokens < total)
            return sq_fail(SQ_ERR_SPEC, "data.sampling: \"consecutive\" needs data.nsamples x data.seqlen = %d x %d = "
                           "%zu tokens, %s has %zu", nsamples, seqlen, total, origin, ntokens);
        memcpy(out, ids, total * sizeof *ids);
        return SQ_OK;
    }
    if (ntokens < (size_t)seqlen + 1)
        return sq_fail(SQ_ERR_SPEC, "data.seqlen: %s has %zu tokens, fewer than seqlen + 1 = %d: not enough "
                       "calibration text", origin, ntokens, seqlen + 1);
    sq_rng rng;
    sq_rng_seed(&rng, seed);
    uint64_t starts = ntokens - (size_t)seqlen; /* i in [0, ntokens - seqlen - 1] */
    for (int s = 0; s < nsamples; s++) {
        size_t start = (size_t)sq_rng_below(&rng, starts);
        memcpy(out + (size_t)s * seqlen, ids + start, (size_t)seqlen * sizeof *ids);
    }
    return SQ_OK;
}
