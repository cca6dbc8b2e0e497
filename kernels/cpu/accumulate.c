/* accumulate.c (CPU backend): double-precision accumulation of fp32 contributions
 * (Hessian sums) and zeroing of raw device memory. */
#include <string.h>

#include "kernels/kernels.h"

sq_status kn_zero(void *dev, size_t bytes)
{
    memset(dev, 0, bytes);
    return SQ_OK;
}

sq_status kn_accumulate_upper_f64(double *acc, const float *x, int n)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++)
            acc[(size_t)i * n + j] += (double)x[(size_t)i * n + j];
    return SQ_OK;
}

sq_status kn_scale_f64_to_f32(float *out, const double *in, double scale, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(scale * in[i]);
    return SQ_OK;
}
