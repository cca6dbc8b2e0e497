/* permute.cu (CUDA backend): the act-order permutations of GPTQ — a symmetric
 * permutation of the Hessian and column gathers/scatters of the weight. The
 * permutation (device int32) is range-checked on the GPU first. */
#include "kernels/cuda/cuda_common.h"

__global__ void permute_symmetric_kernel(float *B, const float *A, const int32_t *perm, int n)
{
    size_t total = (size_t)n * n;
    GRID_STRIDE(idx, total) B[idx] = A[(size_t)perm[idx / n] * n + perm[idx % n]];
}

__global__ void permute_columns_kernel(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    size_t total = (size_t)rows * n;
    GRID_STRIDE(idx, total) B[idx] = A[idx - idx % n + perm[idx % n]];
}

__global__ void unpermute_columns_kernel(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    size_t total = (size_t)rows * n;
    GRID_STRIDE(idx, total) B[idx - idx % n + perm[idx % n]] = A[idx];
}

static sq_status check_shape(int rows, int n, const char *who)
{
    if (rows < 0 || n < 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape rows=%d n=%d", who, rows, n);
    return SQ_OK;
}

extern "C" sq_status kn_permute_symmetric(float *B, const float *A, const int32_t *perm, int n)
{
    SQ_TRY(check_shape(n, n, "kn_permute_symmetric"));
    if (n == 0)
        return SQ_OK;
    SQ_TRY(kn_cuda_check_indices(perm, (size_t)n, n, "kn_permute_symmetric", "perm"));
    permute_symmetric_kernel<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(B, A, perm, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_permute_columns(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    SQ_TRY(check_shape(rows, n, "kn_permute_columns"));
    if (n == 0)
        return SQ_OK;
    SQ_TRY(kn_cuda_check_indices(perm, (size_t)n, n, "kn_permute_columns", "perm"));
    if (rows == 0)
        return SQ_OK;
    permute_columns_kernel<<<kn_cuda_blocks((size_t)rows * n, 256), 256>>>(B, A, perm, rows, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_unpermute_columns(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    SQ_TRY(check_shape(rows, n, "kn_unpermute_columns"));
    if (n == 0)
        return SQ_OK;
    SQ_TRY(kn_cuda_check_indices(perm, (size_t)n, n, "kn_unpermute_columns", "perm"));
    if (rows == 0)
        return SQ_OK;
    unpermute_columns_kernel<<<kn_cuda_blocks((size_t)rows * n, 256), 256>>>(B, A, perm, rows, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
