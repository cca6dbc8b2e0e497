/* accumulate.cu (CUDA backend): double-precision accumulation of fp32
 * contributions (Hessian sums) and zeroing of raw device memory. */
#include "kernels/cuda/cuda_common.h"

/* Threads over the whole matrix, those below the diagonal idle: the upper triangle's
 * reads and writes stay coalesced along each row. */
__global__ void accumulate_upper_f64_kernel(double *acc, const float *x, int n)
{
    GRID_STRIDE(idx, (size_t)n * n)
    {
        if (idx % n >= idx / n)
            acc[idx] += (double)x[idx];
    }
}

__global__ void scale_f64_to_f32_kernel(float *out, const double *in, double scale, size_t n)
{
    GRID_STRIDE(i, n) out[i] = (float)(scale * in[i]);
}

extern "C" sq_status kn_zero(void *dev, size_t bytes)
{
    CUDA_CHECK(cudaMemsetAsync(dev, 0, bytes));
    return SQ_OK;
}

extern "C" sq_status kn_accumulate_upper_f64(double *acc, const float *x, int n)
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_accumulate_upper_f64: negative size %d", n);
    if (n == 0)
        return SQ_OK;
    accumulate_upper_f64_kernel<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(acc, x, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_symmetrize_upper(float *A, int n)
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_symmetrize_upper: negative size %d", n);
    return kn_cuda_copy_upper_to_lower(A, n);
}

extern "C" sq_status kn_scale_f64_to_f32(float *out, const double *in, double scale, size_t n)
{
    if (n == 0)
        return SQ_OK;
    scale_f64_to_f32_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, in, scale, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
