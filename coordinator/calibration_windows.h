/* calibration_windows.h: draw the calibration samples from a tokenized corpus.
 *
 * As GPTQ's reference data loader does: each of `nsamples` windows starts at a
 * uniformly random token index i in [0, ntokens - seqlen - 1] and holds tokens
 * [i, i + seqlen). The stream is seeded from the spec (core/rng), so the same
 * spec draws the same windows on every rank and every rerun. */
#ifndef SQ_COORDINATOR_CALIBRATION_WINDOWS_H
#define SQ_COORDINATOR_CALIBRATION_WINDOWS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* out holds nsamples * seqlen ids. SQ_ERR_ARG naming `origin` if the corpus is
 * shorter than seqlen + 1 tokens. */
sq_status sq_draw_calibration_windows(const char *origin, const int32_t *ids, size_t ntokens, int nsamples,
                                      int seqlen, uint64_t seed, int32_t *out);

#endif
