/* norm.cu (CUDA backend): RMSNorm and its backward, one thread block per row.
 * The row sums (mean of squares; Σ x w dy in the backward) are accumulated in
 * double, as the CPU reference does. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

/* Σ x_i² over the row, in double, every thread of the block getting it. */
__device__ double row_sum_squares(const float *xr, int dim)
{
    double sum_sq = 0.0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        sum_sq += (double)xr[i] * xr[i];
    return block_reduce(sum_sq, reduce_sum());
}

__global__ void rmsnorm_rows(float *out, const float *x, const float *weight, int dim, float eps)
{
    const float *xr = x + (size_t)blockIdx.x * dim;
    float *orow = out + (size_t)blockIdx.x * dim;
    float inv_rms = (float)(1.0 / sqrt(row_sum_squares(xr, dim) / dim + eps));
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        orow[i] = __fmul_rn(__fmul_rn(xr[i], inv_rms), weight[i]);
}

/* kernels.h: dx_j += inv w_j dy_j - x_j inv³ / dim Σ_i x_i w_i dy_i. */
__global__ void rmsnorm_backward_rows(float *dx, const float *dy, const float *x, const float *weight, int dim,
                                      float eps)
{
    const float *xr = x + (size_t)blockIdx.x * dim, *dyr = dy + (size_t)blockIdx.x * dim;
    float *dxr = dx + (size_t)blockIdx.x * dim;
    double sum_sq = row_sum_squares(xr, dim);
    double dot = 0.0; /* Σ x_i w_i dy_i: the path through inv */
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        dot += (double)xr[i] * weight[i] * dyr[i];
    dot = block_reduce(dot, reduce_sum());
    double inv = 1.0 / sqrt(sum_sq / dim + eps);
    double through_inv = dot * inv * inv * inv / dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        dxr[i] += (float)(inv * weight[i] * dyr[i] - xr[i] * through_inv);
}

static sq_status check_shape(const char *who, int rows, int dim)
{
    if (rows < 0 || dim <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape rows=%d dim=%d", who, rows, dim);
    return SQ_OK;
}

extern "C" sq_status kn_rmsnorm(float *out, const float *x, const float *weight, int rows, int dim, float eps)
{
    SQ_TRY(check_shape("kn_rmsnorm", rows, dim));
    if (rows == 0)
        return SQ_OK;
    rmsnorm_rows<<<rows, 256>>>(out, x, weight, dim, eps);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *weight, int rows,
                                         int dim, float eps)
{
    SQ_TRY(check_shape("kn_rmsnorm_backward", rows, dim));
    if (rows == 0)
        return SQ_OK;
    rmsnorm_backward_rows<<<rows, 256>>>(dx, dy, x, weight, dim, eps);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
