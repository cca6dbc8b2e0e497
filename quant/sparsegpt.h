/* sparsegpt.h: the SparseGPT solve (Frantar & Alistarh 2023) for one linear
 * layer, following the reference implementation (IST-DASLab/sparsegpt):
 *
 *  1. bits > 0 and group_size -1: one grid per output row from W as given;
 *  2. dead inputs (H_ii = 0): H_ii := 1 and W[:, i] := 0;
 *  3. H_ii += damp_percent · mean(diag H);  Hinv = upper Cholesky factor of H⁻¹;
 *  4. blocks of block_size columns, in the original column order:
 *       unstructured: at the block start, per row, the mask is the
 *         floor(sparsity · count) lowest scores w² / Hinv_jj² of the block
 *         (W as it is at the block start);
 *       N:M: at each group of M columns, per row, the N lowest scores of the
 *         group (W as it is when the sweep reaches the group);
 *     each column j: with groups a grid is taken at the group's first column
 *     (from W at that point, as the reference does); q = 0 where masked, else
 *     w (bits 0) or its quantized value; err = (w - q)/Hinv_jj spread over the
 *     rest of the block; then the lazy update W[:, end:] -= Err · Hinv[block, end:].
 * The pruned (and dequantized) weights replace W. */
#ifndef SQ_QUANT_SPARSEGPT_H
#define SQ_QUANT_SPARSEGPT_H

#include "core/status.h"
#include "jobs/spec.h"
#include "quant/quant_result.h"

/* SparseGPT (Frantar & Alistarh 2023) on one linear. W (device, [rows, cols]) is pruned in place:
 * on return pruned entries are exactly 0.0f and the survivors carry the OBS updates; with
 * opt->bits > 0 survivors are also quantized (joint, as the paper does) and W holds the
 * dequantized values, and `res` (allocated here, may be NULL when bits == 0) holds the codes,
 * with pruned entries coded as the zero point. H (device, [cols, cols], quant/hessian.h) is consumed.
 * Unstructured: opt->sparsity with adaptive mask selection per block of opt->block_size columns;
 * N:M (opt->prune_n of every opt->prune_m consecutive inputs zero, per row). */
sq_status sq_sparsegpt_solve(float *W, float *H, int rows, int cols, const sq_sparse_options *opt, sq_quant_result *res);

#endif
