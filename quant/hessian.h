/* hessian.h: the Hessian of one linear layer's inputs, H = 2/n · Σ x xᵀ, built up
 * batch by batch as calibration samples stream through the layer.
 *
 * n counts sequences (not tokens), and the running normalisation is AutoGPTQ's:
 * for a batch of b sequences with rows X[b*seq, cols],
 *     H *= n / (n + b);  n += b;  H += (2/n) XᵀX,
 * so after any number of batches H = 2/n Σ xxᵀ over all of them. H lives in a
 * device buffer and is updated through the kernels interface. */
#ifndef SQ_QUANT_HESSIAN_H
#define SQ_QUANT_HESSIAN_H

#include <stdint.h>

#include "core/status.h"

typedef struct {
    int cols;         /* the linear's in_features */
    int64_t nsamples; /* sequences accumulated so far */
    float *H;         /* device, [cols, cols], symmetric */
} sq_hessian;

/* Allocate a zero Hessian for a linear with `cols` inputs. */
sq_status sq_hessian_init(sq_hessian *h, int cols);
void sq_hessian_free(sq_hessian *h);

/* Add a batch of `nseq` sequences whose inputs are X (device, [rows, cols]). */
sq_status sq_hessian_add(sq_hessian *h, const float *X, int rows, int nseq);

/* Before summing per-rank Hessians (all-reduce), weight this rank's share:
 * H *= nsamples / total_nsamples, nsamples := total_nsamples. The sum of the
 * rescaled Hessians is then the Hessian of all samples. */
sq_status sq_hessian_rescale_for_sum(sq_hessian *h, int64_t total_nsamples);

#endif
