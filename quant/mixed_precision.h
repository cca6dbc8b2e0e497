/* mixed_precision.h: per-linear bit widths under an average-bits budget (the
 * gptq and rtn option avg_bits, with candidate_bits).
 *
 * Sensitivity: for each linear W [out, in] with input Hessian H (quant/hessian.h,
 * H = 2/n Σ x xᵀ) and each candidate width b, the Hessian-weighted error of
 * round-to-nearest at b bits with the step's group_size and sym,
 *     e_b = trace((W − Q_b(W)) H (W − Q_b(W))ᵀ),
 * a double sum in a fixed order (kn_sum_products), so it does not depend on the
 * rank or thread count.
 *
 * Allocation: the budget counts code bits only, weighted by parameter count:
 * Σ b_i·params_i ≤ avg_bits·Σ params_i (the scales and zero points are not
 * counted; the report states their share as well). Every linear starts at the
 * smallest candidate; then, greedily, the move of one linear from its width to
 * a wider candidate with the largest error reduction per added bit·parameter,
 * (e_now − e_wider) / ((wider − now)·params), among the moves that fit the
 * budget and reduce the error, is made, until none is left. Ties go to the
 * first move in the fixed order (layer, linear q,k,v,o,gate,up,down, narrower
 * target first): the choice is a pure function of the errors. */
#ifndef SQ_QUANT_MIXED_PRECISION_H
#define SQ_QUANT_MIXED_PRECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"
#include "model/config.h"
#include "quant/quant_result.h"

#define SQ_SENSITIVITY_REPORT "sensitivity_report.json"

typedef struct {
    int num_layers;        /* entries are layer-major, SQ_LINEAR_COUNT per layer */
    int n;                 /* num_layers · SQ_LINEAR_COUNT */
    int n_candidates;
    int candidate_bits[4]; /* ascending */
    int *out, *in;         /* [n] each linear's shape */
    double *errors;        /* [n, n_candidates] e_b */
    int *bits;             /* [n] the chosen widths */
} sq_bit_plan;

/* Sizes from cfg, candidates from opt; errors 0, bits unset. */
sq_status sq_bit_plan_alloc(sq_bit_plan *plan, const sq_model_config *cfg, const sq_quant_options *opt);
void sq_bit_plan_free(sq_bit_plan *plan);

/* errors[c] = e_b for b = opt->candidate_bits[c]; W [rows, cols] and H [cols, cols] on the device, unchanged. */
sq_status sq_linear_sensitivity(const float *W, const float *H, int rows, int cols, const sq_quant_options *opt,
                                double *errors);

/* The greedy allocation above into plan->bits. */
sq_status sq_bit_plan_allocate(sq_bit_plan *plan, double avg_bits);

/* Σ b·params / Σ params; with_overhead adds each group's fp16 scale and b-bit zero point. */
double sq_bit_plan_average(const sq_bit_plan *plan, int group_size, bool with_overhead);
/* The width most linears got (ties: the narrower), recorded as the checkpoint's base "bits". */
int sq_bit_plan_base_bits(const sq_bit_plan *plan);

/* sensitivity_report.json (new reference):
 *   {"format": "shardq-sensitivity/1", "avg_bits", "candidate_bits", "group_size", "sym",
 *    "budget": "...", "achieved_avg_bits", "achieved_avg_bits_with_overhead",
 *    "linears": [{"name": "model.layers.0.self_attn.q_proj", "shape": [out, in], "params",
 *                 "errors": {"2": e, "3": e, ...}, "bits": b}, ...]} */
json_t *sq_bit_plan_report(const sq_bit_plan *plan, const sq_quant_options *opt);
/* Read a report back into `plan` (allocated for this model and opt): every linear and width
 * must be there, in order; `where` names the file in messages. */
sq_status sq_bit_plan_from_report(sq_bit_plan *plan, const json_t *report, const char *where);

/* The name of entry i ("model.layers.L.<linear>"). */
void sq_bit_plan_linear_name(int i, char *out, size_t size);

#endif
