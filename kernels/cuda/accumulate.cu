/* accumulate.cu (CUDA backend): double-precision accumulation of fp32
 * contributions (Hessian sums) and zeroing of raw device memory. */
#include "kernels/cuda/cuda_common.h"

__global__ void accumulate_f64_kernel(double *acc, const float *x, size_t n)
{
    GRID_STRIDE(i, n) acc[i] += (double)x[i];
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

extern "C" sq_status kn_accumulate_f64(double *acc, const float *x, size_t n)
{
    if (n == 0)
        return SQ_OK;
    accumulate_f64_kernel<<<kn_cuda_blocks(n, 256), 256>>>(acc, x, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_scale_f64_to_f32(float *out, const double *in, double scale, size_t n)
{
    if (n == 0)
        return SQ_OK;
    scale_f64_to_f32_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, in, scale, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
