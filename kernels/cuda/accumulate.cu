/* accumulate.cu (CUDA backend): exact fixed-point accumulation of fp32
 * contributions (Hessian sums; kernels/fixed_sum.h, the same integers as the
 * CPU backend) and zeroing of raw device memory. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/fixed_sum.h"

__global__ void fixed_accumulate_kernel(int64_t *acc, const float *x, size_t n, int count, size_t stride)
{
    GRID_STRIDE(i, n) kn_fixed_add(acc, n, i, x, count, stride);
}

/* The upper triangle's entries of a cols x cols matrix; the others are skipped unread. */
__global__ void fixed_accumulate_upper_kernel(int64_t *acc, const float *x, int cols, int count, size_t stride)
{
    const size_t n = (size_t)cols * cols;
    GRID_STRIDE(i, n)
    {
        if (i / cols <= i % cols)
            kn_fixed_add(acc, n, i, x, count, stride);
    }
}

/* *bad ends as the lowest invalid entry (it starts at n); with upper_cols > 0 only the upper
 * triangle of that many columns is converted. */
__global__ void fixed_to_f32_kernel(float *out, const int64_t *acc, double scale, size_t n, int upper_cols,
                                    unsigned long long *bad)
{
    GRID_STRIDE(i, n)
    {
        if (upper_cols > 0 && i / upper_cols > i % upper_cols)
            continue;
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

extern "C" sq_status kn_fixed_accumulate_upper(int64_t *acc, const float *x, int cols, int count, size_t stride)
{
    size_t n = (size_t)(cols > 0 ? cols : 0) * (size_t)(cols > 0 ? cols : 0);
    if (cols <= 0 || count < 1 || (count > 1 && stride < n))
        return sq_fail(SQ_ERR_ARG, "kn_fixed_accumulate_upper: %d arrays %zu apart cannot hold %d x %d entries each",
                       count, stride, cols, cols);
    fixed_accumulate_upper_kernel<<<kn_cuda_blocks(n, 256), 256>>>(acc, x, cols, count, stride);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* kn_fixed_to_f32 and its upper-triangle form (upper_cols > 0). */
static sq_status fixed_to_f32(float *out, const int64_t *acc, double scale, size_t n, int upper_cols)
{
    if (n == 0)
        return SQ_OK;
    unsigned long long *dbad = NULL, bad = n;
    SQ_TRY(kn_alloc((void **)&dbad, sizeof bad));
    sq_status st = kn_cuda_status(cudaMemcpy(dbad, &bad, sizeof bad, cudaMemcpyHostToDevice), __FILE__, __LINE__,
                                  "cudaMemcpy");
    if (st == SQ_OK) {
        fixed_to_f32_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, acc, scale, n, upper_cols, dbad);
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

extern "C" sq_status kn_fixed_to_f32(float *out, const int64_t *acc, double scale, size_t n)
{
    return fixed_to_f32(out, acc, scale, n, 0);
}

extern "C" sq_status kn_fixed_to_f32_symmetric(float *out, const int64_t *acc, double scale, int cols)
{
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_fixed_to_f32_symmetric: bad size %d", cols);
    SQ_TRY(fixed_to_f32(out, acc, scale, (size_t)cols * cols, cols));
    return kn_cuda_copy_upper_to_lower(out, cols);
}
