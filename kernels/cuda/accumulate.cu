/* accumulate.cu (CUDA backend): exact fixed-point accumulation of fp32
 * contributions (Hessian sums; kernels/fixed_sum.h, the same integers as the
 * CPU backend) and zeroing of raw device memory. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/fixed_sum.h"

__global__ void fixed_accumulate_kernel(int64_t *acc, const float *x, size_t n, int count, size_t stride)
{
    GRID_STRIDE(i, n) kn_fixed_add(acc, n, i, x, count, stride);
}

/* *bad ends as the lowest invalid entry (it starts at n). */
__global__ void fixed_to_f32_kernel(float *out, const int64_t *acc, double scale, size_t n, unsigned long long *bad)
{
    GRID_STRIDE(i, n)
    {
        if (!kn_fixed_value(acc[i], acc[n + i], acc[2 * n + i], scale, &out[i]))
            atomicMin(bad, (unsigned long long)i);
    }
}

extern "C" sq_status kn_zero(void *dev, size_t bytes)
{
    CUDA_CHECK(cudaMemsetAsync(dev, 0, bytes));
    return SQ_OK;
}

extern "C" sq_status kn_fixed_accumulate(int64_t *acc, const float *x, size_t n, int count, size_t stride)
{
    if (count < 1 || (count > 1 && stride < n))
        return sq_fail(SQ_ERR_ARG, "kn_fixed_accumulate: %d arrays %zu apart cannot hold %zu entries each", count,
                       stride, n);
    if (n == 0)
        return SQ_OK;
    fixed_accumulate_kernel<<<kn_cuda_blocks(n, 256), 256>>>(acc, x, n, count, stride);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_fixed_to_f32(float *out, const int64_t *acc, double scale, size_t n)
{
    if (n == 0)
        return SQ_OK;
    unsigned long long *dbad = NULL, bad = n;
    SQ_TRY(kn_alloc((void **)&dbad, sizeof bad));
    sq_status st = kn_cuda_status(cudaMemcpy(dbad, &bad, sizeof bad, cudaMemcpyHostToDevice), __FILE__, __LINE__,
                                  "cudaMemcpy");
    if (st == SQ_OK) {
        fixed_to_f32_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, acc, scale, n, dbad);
        st = kn_cuda_status(cudaGetLastError(), __FILE__, __LINE__, "fixed_to_f32_kernel");
    }
    if (st == SQ_OK)
        st = kn_cuda_status(cudaMemcpy(&bad, dbad, sizeof bad, cudaMemcpyDeviceToHost), __FILE__, __LINE__,
                            "cudaMemcpy");
    kn_free(dbad);
    if (st == SQ_OK && bad < n)
        st = sq_fail(SQ_ERR_NUMERIC,
                     "sum entry %llu: an addend was not finite or beyond ±2^47 (activations out of range)", bad);
    return st;
}
