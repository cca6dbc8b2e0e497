/* optimizer.c (CPU backend): what one optimizer step over the adapter needs —
 * the squared norm for global gradient clipping (summed in index order, in
 * double, so it does not depend on the thread count; the same sum of products
 * also serves the Hessian-weighted errors of mixed precision), a scale, and AdamW
 * written operation for operation as torch.optim.AdamW's single-tensor path. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_sum_products(double *sum, const float *x, const float *y, size_t n)
{
    double acc = *sum;
    for (size_t i = 0; i < n; i++)
        acc += (double)x[i] * y[i];
    *sum = acc;
    return SQ_OK;
}

sq_status kn_sum_squares(double *sum, const float *x, size_t n)
{
    return kn_sum_products(sum, x, x, n);
}

sq_status kn_scale(float *x, float s, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        x[i] *= s;
    return SQ_OK;
}

sq_status kn_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, int t)
{
    if (t < 1)
        return sq_fail(SQ_ERR_ARG, "kn_adamw: step %d must be >= 1", t);
    const float decay = 1.0f - lr * weight_decay;
    const float step_size = lr / (float)(1.0 - pow(beta1, t));
    const float bias2_sqrt = (float)sqrt(1.0 - pow(beta2, t));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        param[i] *= decay;                             /* decoupled weight decay */
        m[i] += (1.0f - beta1) * (g - m[i]);           /* first moment (torch: lerp) */
        v[i] = v[i] * beta2 + (1.0f - beta2) * g * g;  /* second moment */
        float denom = sqrtf(v[i]) / bias2_sqrt + eps;  /* bias-corrected sqrt(v) + eps */
        param[i] += -step_size * (m[i] / denom);
    }
    return SQ_OK;
}
