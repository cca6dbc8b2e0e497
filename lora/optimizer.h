/* optimizer.h: one optimizer step over a LoRA adapter's flat parameter vector:
 * the learning-rate schedule, global-norm gradient clipping, then AdamW
 * (kn_adamw, torch.optim.AdamW's update with betas (0.9, 0.999), eps 1e-8).
 *
 *   lr(t) for step t = 1..T: warmup (t <= W): lr · t / W;
 *     constant: lr;  cosine: lr · (1 + cos(π (t - W) / (T - W))) / 2   (transformers'
 *     get_cosine_schedule_with_warmup with one half-cycle, counted from step 0 = t - 1)
 *   clipping (max_grad_norm > 0): g *= max_grad_norm / (‖g‖ + 1e-6) when ‖g‖ > max_grad_norm,
 *     as torch.nn.utils.clip_grad_norm_; ‖g‖ summed in index order in double. */
#ifndef SQ_LORA_OPTIMIZER_H
#define SQ_LORA_OPTIMIZER_H

#include <stdbool.h>

#include "core/status.h"
#include "lora/adapter.h"

typedef struct {
    double learning_rate, weight_decay, max_grad_norm; /* max_grad_norm 0: no clipping */
    bool cosine;
    int warmup_steps, total_steps;
} sq_lora_optim_options;

typedef struct {
    sq_lora_optim_options opt;
    int step;  /* steps taken */
    float *m, *v; /* device [n_params] */
} sq_lora_optimizer;

sq_status sq_lora_optimizer_init(sq_lora_optimizer *o, const sq_lora_adapter *a, const sq_lora_optim_options *opt);
void sq_lora_optimizer_free(sq_lora_optimizer *o);

/* The learning rate of step t (1-based). */
double sq_lora_learning_rate(const sq_lora_optim_options *opt, int t);

/* Clip a->grads, apply AdamW to a->params, zero a->grads; *grad_norm (optional) gets ‖g‖ before clipping. */
sq_status sq_lora_optimizer_step(sq_lora_optimizer *o, sq_lora_adapter *a, double *grad_norm);

#endif
