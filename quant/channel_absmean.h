/* channel_absmean.h: AWQ's activation statistic, the mean |x| of each input
 * channel of a linear over every calibration token, summed exactly.
 *
 * Each sequence's column sums of |x| are formed in fp32 (kn_column_abs_sums, the
 * rows in order) and added into an exact fixed-point sum (kernels/fixed_sum.h),
 * one addend per sequence as the Hessians do, so the mean has the same bits
 * however the sequences were split over ranks and micro-batches. */
#ifndef SQ_QUANT_CHANNEL_ABSMEAN_H
#define SQ_QUANT_CHANNEL_ABSMEAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Sequences whose column sums are formed before one pass over the int64 lanes (the same
 * integers as one pass per sequence; the lanes, 12 times the bytes of a sum, are read and
 * written once per batch). */
#define SQ_ABSMEAN_BATCH 64

typedef struct {
    int cols;
    int64_t nseq;   /* sequences accumulated on this rank */
    int64_t *sum;   /* device [KN_FIXED_LANES, cols]: Σ over sequences of their column sums of |x| */
    float *scratch; /* device [SQ_ABSMEAN_BATCH, cols]: column sums of up to that many sequences */
    float *mean;    /* host [cols]: Σ |x| / tokens, after sq_channel_absmean_finish */
} sq_channel_absmean;

sq_status sq_channel_absmean_init(sq_channel_absmean *a, int cols);
void sq_channel_absmean_free(sq_channel_absmean *a);

/* Add `nseq` sequences of equal length whose inputs are X (device, [rows, cols]). */
sq_status sq_channel_absmean_add(sq_channel_absmean *a, const float *X, int rows, int nseq);

/* The int64 count of a->sum, for the all-reduce that adds the ranks' sums. */
size_t sq_channel_absmean_sum_count(const sq_channel_absmean *a);

/* mean = sum / total_tokens (after the ranks' sums were added) into host memory. */
sq_status sq_channel_absmean_finish(sq_channel_absmean *a, int64_t total_tokens);

#endif
