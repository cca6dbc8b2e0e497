/* calibration_windows.h: cut the calibration samples from a tokenized corpus.
 *
 * data.sampling "random" (the default), as GPTQ's reference data loader does:
 * each of `nsamples` windows starts at a uniformly random token index i in
 * [0, ntokens - seqlen - 1] and holds tokens [i, i + seqlen). The stream is
 * seeded from the spec (core/rng), so the same spec draws the same windows on
 * every rank and every rerun.
 *
 * data.sampling "consecutive", to replay the windows another tool used: window
 * i holds tokens [i * seqlen, (i + 1) * seqlen), i = 0 .. nsamples - 1 (a file of
 * exactly nsamples * seqlen ids is cut into its windows in order); tokens past
 * nsamples * seqlen are not used; the seed plays no part. */
#ifndef SQ_COORDINATOR_CALIBRATION_WINDOWS_H
#define SQ_COORDINATOR_CALIBRATION_WINDOWS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "jobs/spec.h"

/* out holds nsamples * seqlen ids. Too few tokens — random: fewer than
 * seqlen + 1; consecutive: fewer than nsamples * seqlen — is SQ_ERR_SPEC naming
 * `origin` and the data fields at fault. */
sq_status sq_draw_calibration_windows(const char *origin, const int32_t *ids, size_t ntokens, int nsamples,
                                      int seqlen, sq_window_sampling sampling, uint64_t seed, int32_t *out);

#endif
