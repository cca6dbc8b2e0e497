/* prune.h: the Hessian-free pruning baselines SparseGPT is measured against,
 * Wanda and magnitude pruning, and the per-row zero count all three share.
 * Both keep the weights that survive unchanged (no reconstruction); ties in
 * the score are broken by column index (the lower index is pruned first), so
 * the mask is a deterministic function of W (and diag H). */
#ifndef SQ_QUANT_PRUNE_H
#define SQ_QUANT_PRUNE_H

#include <stdbool.h>

#include "core/status.h"

/* sparsegpt, wanda, magnitude. sparsity in [0,1) for unstructured, or prune_n:prune_m
 * (e.g. 2:4, given as "pattern": "2:4"); sparsegpt may also quantize (bits > 0). */
typedef struct {
    double sparsity;
    int prune_n; /* 0 when unstructured */
    int prune_m;
    int block_size;      /* sparsegpt: mask-selection block, default 128 */
    double damp_percent; /* sparsegpt, default 0.01 */
    int bits;            /* sparsegpt joint quantization, 0 = none */
    int group_size;
    bool sym;
} sq_sparse_options;

/* Wanda (Sun et al. 2023): score |W_ij|·‖x_j‖ where ‖x_j‖² ∝ H_jj (only the diagonal of the device
 * Hessian H is read); within each output row remove the lowest opt->sparsity fraction, or N of every M. */
sq_status sq_wanda_prune(float *W, const float *H, int rows, int cols, const sq_sparse_options *opt);

/* Magnitude: score |W_ij|, unstructured over each output row (same per-row count as Wanda, so
 * the two compare fairly) or N:M. */
sq_status sq_magnitude_prune(float *W, int rows, int cols, const sq_sparse_options *opt);

/* The number of zeros a row of `cols` must have for opt (floor(sparsity*cols) or cols/M*N). */
int sq_prune_count(const sq_sparse_options *opt, int cols);

/* The checks all three share: sparsity in [0, 1), or a pattern N:M with 0 < N < M and cols
 * a multiple of M; rows and cols positive. `who` prefixes messages. */
sq_status sq_sparse_options_check(const sq_sparse_options *opt, int rows, int cols, const char *who);

#endif
