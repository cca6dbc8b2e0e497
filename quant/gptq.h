/* gptq.h: the GPTQ solve (Frantar et al. 2022) for one linear layer, following
 * the reference implementation as AutoGPTQ runs it:
 *
 *  1. group_size -1: one grid per output row from W as given;
 *  2. dead inputs (H_ii = 0): H_ii := 1 and W[:, i] := 0;
 *  3. static_groups: every group's grid from W (original column order);
 *  4. desc_act: columns ordered by descending H_ii (stable: ties by index);
 *  5. H_ii += damp_percent · mean(diag H);  Hinv = upper Cholesky factor of H⁻¹;
 *  6. blocks of block_size columns: each column is quantized, its error spread
 *     over the rest of the block (kn_gptq_block), then the lazy update
 *     W[:, end:] -= Err · Hinv[block, end:]; with groups (not static) a group's
 *     grid is taken at its first column from W as it was when the block started;
 *     with preserve_sparsity (after a pruning step), every entry of W that is 0
 *     when the solve starts is quantized as 0 — the zero point, dequantizing to
 *     exactly 0 — and its error (w − 0)/Hinv_jj spread like any other, as
 *     SparseGPT does for its pruned entries; the grids are the same as without
 *     (so a W without zeros gives the same result bit for bit);
 *  7. codes back in the original column order, g_idx as AutoGPTQ writes it:
 *     j/group_size, except desc_act without static_groups where
 *     g_idx[perm[i]] = i/group_size.
 * The dequantized weights replace W so the next layer sees the quantized model. */
#ifndef SQ_QUANT_GPTQ_H
#define SQ_QUANT_GPTQ_H

#include "core/status.h"
#include "quant/quant_result.h"

/* W (device, [rows, cols]) is quantized in place (dequantized values on return);
 * H (device, [cols, cols], from quant/hessian.h) is consumed (overwritten).
 * `res` is allocated here; free it with sq_quant_result_free. */
sq_status sq_gptq_solve(float *W, float *H, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res);

/* Several linears that read the same input, solved at once: W [Σ part_rows, cols] holds
 * their weights stacked by rows (part p's rows follow part p-1's). Every step works row
 * by row, so each part gets what sq_gptq_solve gives it alone (up to the rounding of
 * the lazy-update GEMMs, whose shapes differ), for one inverse of H and one sweep with
 * more rows per launch. parts[p] is allocated here (free each with sq_quant_result_free). */
sq_status sq_gptq_solve_stacked(float *W, float *H, int cols, const sq_quant_options *opt, int nparts,
                                const int *part_rows, sq_quant_result *parts);

#endif
