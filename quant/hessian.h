/* hessian.h: the Hessian of one linear layer's inputs, H = 2/n · Σ x xᵀ over the
 * calibration sequences (n counts sequences, not tokens, as AutoGPTQ does).
 *
 * Each sequence's XᵀX is computed in fp32 (the same bits whatever the thread
 * count: see kn_hessian_accumulate) and added into an exact fixed-point sum
 * (kernels/fixed_sum.h), and H is formed once at the end. Integer sums do not
 * depend on the order of their additions, so H has the same bits however the
 * sequences were split over ranks and micro-batches: GPTQ's error feedback
 * turns any difference in H into different integers, so this is what makes 1,
 * 2 or 3 ranks agree exactly. Only the upper triangle of each product is summed
 * and H is mirrored once at the end: the same floats as summing mirrored products,
 * at half the memory traffic, and no per-sequence mirror pass. All buffers live on
 * the device and are updated through the kernels interface. */
#ifndef SQ_QUANT_HESSIAN_H
#define SQ_QUANT_HESSIAN_H

#include <stdint.h>

#include "core/status.h"

/* Sequence products are formed `batch` at a time (up to this many bytes of scratch, at most
 * SQ_HESSIAN_BATCH_MAX), then added to the sum in one pass: the integer sum is the same for
 * any batch, and the int64 lanes, 12 times the bytes of one product, are read and written
 * once per batch instead of once per sequence. A 7B down_proj's product is 485 MB: 8 per pass
 * (2 GiB allowed 4, and its lanes' traffic was then a third of the Hessian phase's time). */
#define SQ_HESSIAN_SCRATCH_BYTES ((size_t)4 << 30)
#define SQ_HESSIAN_BATCH_MAX 32

typedef struct {
    int cols;         /* the linear's in_features */
    int batch;        /* sequence products per pass over the sum */
    int64_t nsamples; /* sequences accumulated on this rank */
    int64_t *sum;     /* device [KN_FIXED_LANES, cols, cols]: Σ XᵀX, exact; upper triangle only */
    float *scratch;   /* device [batch, cols, cols]: XᵀX of up to `batch` sequences */
    float *H;         /* device [cols, cols]: 2/n · sum, after sq_hessian_finish */
} sq_hessian;

/* Allocate a zero Hessian for a linear with `cols` inputs. */
sq_status sq_hessian_init(sq_hessian *h, int cols);
void sq_hessian_free(sq_hessian *h);

/* Add `nseq` sequences of equal length whose inputs are X (device, [rows, cols]). */
sq_status sq_hessian_add(sq_hessian *h, const float *X, int rows, int nseq);

/* The int64 count of h->sum, for the all-reduce that adds the ranks' sums. */
size_t sq_hessian_sum_count(const sq_hessian *h);

/* Form H = 2/total_nsamples · sum (after the per-rank sums were added together,
 * see sq_comm_allreduce_sum_i64) and release the accumulation buffers. */
sq_status sq_hessian_finish(sq_hessian *h, int64_t total_nsamples);

#endif
