/* norm.cu (CUDA backend): RMSNorm, one thread block per row. The mean of
 * squares is accumulated in double, as the CPU reference does. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

__global__ void rmsnorm_rows(float *out, const float *x, const float *weight, int dim, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    double sum_sq = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        sum_sq += (double)xr[i] * xr[i];
    sum_sq = block_reduce(sum_sq, reduce_sum());
    float inv_rms = (float)(1.0 / sqrt(sum_sq / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        orow[i] = __fmul_rn(__fmul_rn(xr[i], inv_rms), weight[i]);
}

extern "C" sq_status kn_rmsnorm(float *out, const float *x, const float *weight, int rows, int dim, float eps)
{
    if (rows < 0 || dim <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_rmsnorm: bad shape rows=%d dim=%d", rows, dim);
    if (rows == 0)
        return SQ_OK;
    rmsnorm_rows<<<rows, 256>>>(out, x, weight, dim, eps);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
