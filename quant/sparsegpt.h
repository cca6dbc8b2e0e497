/* sparsegpt.h: the SparseGPT solve (Frantar & Alistarh 2023) for one linear
 * layer, following the reference implementation (IST-DASLab/sparsegpt,
 * fasterprune) step for step:
 *
 *  1. bits > 0 and group_size -1: one grid per output row from W as given;
 *  2. dead inputs (H_ii = 0): H_ii := 1 and W[:, i] := 0;
 *  3. H_ii += damp_percent · mean(diag H);  Hinv = upper Cholesky factor of H⁻¹;
 *  4. blocks of block_size columns in their own order (kn_sparsegpt_block),
 *     each followed by the lazy update W[:, end:] -= Err · Hinv[block, end:]:
 *       unstructured: at the block's start, per row, the lowest scores
 *         w²/Hinv_cc² of the block are pruned, floor(sparsity · end) −
 *         floor(sparsity · start) of them, so every row ends with exactly
 *         sq_prune_count zeros (the reference thresholds the whole block at
 *         once, which lets rows' sparsity differ);
 *       N:M (block_size a multiple of M): at each group of M columns, per
 *         row, the N lowest scores as W is when the sweep reaches the group;
 *     with groups, a group's grid is taken at its first column from W as it
 *     was when the block started, as GPTQ does; pruned entries are quantized
 *     as 0, i.e. to the zero point.
 * The pruned (and dequantized) weights replace W. res->loss is Σ err²/2 as in
 * GPTQ; with bits == 0 a non-NULL res gets rows, cols and loss, and no arrays. */
#ifndef SQ_QUANT_SPARSEGPT_H
#define SQ_QUANT_SPARSEGPT_H

#include "core/status.h"
#include "quant/prune.h"
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
