/* stacked_solve.h: GPTQ for the linears of one layer that read the same input
 * (q,k,v; gate,up), solved as one stack of rows: one inverse of their shared
 * Hessian instead of one per linear, and sweeps with several times the rows per
 * launch (the GPTQ block kernel is latency-bound, so the extra rows come nearly
 * free). Each linear's result is what it gets solved alone, row by row (see
 * sq_gptq_solve_stacked). */
#ifndef SQ_WORKER_STACKED_SOLVE_H
#define SQ_WORKER_STACKED_SOLVE_H

#include "core/status.h"
#include "jobs/spec.h"
#include "model/layer.h"
#include "quant/hessian.h"
#include "worker/layer_results.h"

/* Solve linears[0..n) of layer w (all with h->cols inputs) on Hessian h (left as is);
 * their weights stay untouched. Fills out->linear[linears[i]]. */
sq_status sq_solve_gptq_stacked(const sq_layer_weights *w, const int *linears, int n, const sq_hessian *h,
                                const sq_quant_options *opt, sq_layer_results *out);

#endif
