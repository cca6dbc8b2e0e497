/* norm.c (CPU backend): RMSNorm, the normalisation of every Llama-family layer.
 * The mean of squares is accumulated in double so long rows lose no precision. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_rmsnorm(float *out, const float *x, const float *weight, int rows, int dim, float eps)
{
    if (rows < 0 || dim <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_rmsnorm: bad shape rows=%d dim=%d", rows, dim);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *orow = out + (size_t)r * dim;
        double sum_sq = 0.0;
        for (int i = 0; i < dim; i++)
            sum_sq += (double)xr[i] * xr[i];
        float inv_rms = (float)(1.0 / sqrt(sum_sq / dim + eps));
        for (int i = 0; i < dim; i++)
            orow[i] = xr[i] * inv_rms * weight[i];
    }
    return SQ_OK;
}
