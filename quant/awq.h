/* awq.h: AWQ (Lin et al. 2023, activation-aware weight quantization) for the
 * linears that read one input, over the kernels interface:
 *
 *  scale search: for α = i/n_grid, i = 0 .. n_grid-1,
 *      t_c = max(mean_c^α, 1e-4)  (double; mean_c the input's mean |x|, 0^0 = 1)
 *      s_c = fp32(t_c / sqrt(max_c t · min_c t))
 *      Q   = RTN(W · diag(s)) · diag(1/s)        (fp32, 1/s as fp32 reciprocals)
 *      loss(α) = Σ_rows Σ_c ΔW[r,c] (ΔW H)[r,c], ΔW = Q − W, H the input's Hessian
 *  (= 2/n · Σ_x ‖Q x − W x‖², the output error over the calibration tokens); the
 *  first α of least loss wins and its s is returned. The caller folds s into the
 *  weights (W·diag(s)) and 1/s into what feeds the input.
 *
 *  clip search (on the scaled weights): for every (row, group) the clip limit
 *  r·max|w_group| with r = 1 − i/n_grid, i = 0 .. n_grid/2 − 1, whose quantized
 *  clamped group has the least output error Δw_g H_gg Δw_gᵀ (Δw against the
 *  unclamped weights; the first r of least error wins); W is clamped to it.
 *
 * RTN is the step's own grid (quant/rtn.h, kn_quant_grid: ranges include 0), so
 * the search measures the quantizer that follows when the step's `then` is rtn. */
#ifndef SQ_QUANT_AWQ_H
#define SQ_QUANT_AWQ_H

#include <stdbool.h>

#include "core/status.h"
#include "quant/quant_result.h"

/* The awq step's own options (its quantization lives in sq_quant_options).
 * Defaults: n_grid 20, clip true, then rtn. */
typedef struct {
    int n_grid;     /* α grid size, 1 .. 1000 (also the clip grid: n_grid/2 ratios) */
    bool clip;      /* the weight-clipping search */
    bool then_gptq; /* "then": "gptq" quantizes the scaled weights with GPTQ, else RTN */
} sq_awq_options;

/* What a scale search found. */
typedef struct {
    int best;          /* the grid index of the chosen α (α = best / n_grid) */
    double loss;       /* its loss */
    double loss_plain; /* the loss at α = 0 (s = 1: plain RTN) */
} sq_awq_search;

/* Search s for W (device, [rows, cols]) with the input's Hessian H (device, [cols, cols]) and
 * mean |x| (host, [cols]); scales (host, [cols]) receives the chosen s. W and H are untouched. */
sq_status sq_awq_search_scales(const float *W, int rows, int cols, const float *H, const float *mean,
                               const sq_quant_options *q, int n_grid, float *scales, sq_awq_search *found);

/* Clip W (device, [rows, cols]) in place with its input's Hessian H (device, [cols, cols]). */
sq_status sq_awq_clip(float *W, int rows, int cols, const float *H, const sq_quant_options *q, int n_grid);

#endif
