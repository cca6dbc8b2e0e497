/* optimizer.c: schedule, clipping and AdamW over an adapter (optimizer.h). */
#include "lora/optimizer.h"

#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

sq_status sq_lora_optimizer_init(sq_lora_optimizer *o, const sq_lora_adapter *a, const sq_lora_optim_options *opt)
{
    memset(o, 0, sizeof *o);
    o->opt = *opt;
    size_t bytes = a->n_params * sizeof(float);
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&o->m, bytes), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&o->v, bytes), fail);
    SQ_TRY_GOTO(st, kn_zero(o->m, bytes), fail);
    SQ_TRY_GOTO(st, kn_zero(o->v, bytes), fail);
    return SQ_OK;
fail:
    sq_lora_optimizer_free(o);
    return st;
}

void sq_lora_optimizer_free(sq_lora_optimizer *o)
{
    kn_free(o->m);
    kn_free(o->v);
    memset(o, 0, sizeof *o);
}

double sq_lora_learning_rate(const sq_lora_optim_options *opt, int t)
{
    int step0 = t - 1; /* transformers' schedulers count from 0 */
    if (step0 < opt->warmup_steps)
        return opt->learning_rate * (double)step0 / (opt->warmup_steps > 0 ? opt->warmup_steps : 1);
    if (!opt->cosine)
        return opt->learning_rate;
    int span = opt->total_steps - opt->warmup_steps;
    double progress = span > 0 ? (double)(step0 - opt->warmup_steps) / span : 1.0;
    return opt->learning_rate * 0.5 * (1.0 + cos(M_PI * progress));
}

sq_status sq_lora_optimizer_step(sq_lora_optimizer *o, sq_lora_adapter *a, double *grad_norm)
{
    const size_t n = a->n_params;
    double *sum_dev = NULL, sum = 0.0;
    SQ_TRY(kn_alloc((void **)&sum_dev, sizeof *sum_dev));
    sq_status st = kn_upload(sum_dev, &sum, sizeof sum);
    if (st == SQ_OK)
        st = kn_sum_squares(sum_dev, a->grads, n);
    if (st == SQ_OK)
        st = kn_download(&sum, sum_dev, sizeof sum);
    kn_free(sum_dev);
    SQ_TRY(st);
    double norm = sqrt(sum);
    if (grad_norm)
        *grad_norm = norm;
    if (!isfinite(norm))
        return sq_fail(SQ_ERR_NUMERIC, "lora: the gradient norm is %g at step %d", norm, o->step + 1);
    if (o->opt.max_grad_norm > 0 && norm > o->opt.max_grad_norm)
        SQ_TRY(kn_scale(a->grads, (float)(o->opt.max_grad_norm / (norm + 1e-6)), n));
    o->step++;
    float lr = (float)sq_lora_learning_rate(&o->opt, o->step);
    SQ_TRY(kn_adamw(a->params, a->grads, o->m, o->v, n, lr, 0.9f, 0.999f, 1e-8f, (float)o->opt.weight_decay,
                    o->step));
    return kn_zero(a->grads, n * sizeof(float));
}
