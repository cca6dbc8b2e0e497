/* cholesky.cu (CUDA backend): the SPD inverse and the upper Cholesky factor
 * GPTQ needs, through cuSOLVER (potrf, potri).
 *
 * A row-major symmetric matrix is its own column-major view. Column-major
 * lower Cholesky A = L Lᵀ stores L where row-major reads Lᵀ = U, so asking
 * cuSOLVER for the LOWER factor gives the row-major upper factor (A = Uᵀ U).
 * potri then leaves the inverse in that same (row-major upper) triangle,
 * which is mirrored. A positive pivot count in devInfo means "not positive
 * definite" and becomes SQ_ERR_NUMERIC. */
#include "kernels/cuda/cuda_common.h"

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

typedef enum { FACTOR_ONLY, FACTOR_AND_INVERT } solve_kind;

static sq_status read_info(const int *dev_info, const char *who, const char *step, int n)
{
    int info = 0;
    CUDA_CHECK(cudaMemcpy(&info, dev_info, sizeof info, cudaMemcpyDeviceToHost));
    if (info > 0)
        return sq_fail(SQ_ERR_NUMERIC, "%s: matrix %dx%d is not positive definite (%s, pivot %d)", who, n, n, step,
                       info);
    if (info < 0)
        return sq_fail(SQ_ERR_ARG, "%s: %s argument %d invalid", who, step, -info);
    return SQ_OK;
}

static sq_status factor(float *A, int n, solve_kind kind, const char *who)
{
    cusolverDnHandle_t solver = kn_cuda_solver();
    const cublasFillMode_t lower = CUBLAS_FILL_MODE_LOWER;
    int work_potrf = 0, work_potri = 0;
    CUSOLVER_CHECK(cusolverDnSpotrf_bufferSize(solver, lower, n, A, n, &work_potrf));
    if (kind == FACTOR_AND_INVERT)
        CUSOLVER_CHECK(cusolverDnSpotri_bufferSize(solver, lower, n, A, n, &work_potri));
    int work_len = work_potrf > work_potri ? work_potrf : work_potri;
    float *work = NULL;
    int *dev_info = NULL;
    sq_status st = CUDA_STATUS(cudaMalloc((void **)&work, sizeof(float) * (size_t)(work_len > 0 ? work_len : 1)));
    if (st == SQ_OK)
        st = CUDA_STATUS(cudaMalloc((void **)&dev_info, sizeof(int)));
    if (st == SQ_OK)
        st = CUSOLVER_STATUS(cusolverDnSpotrf(solver, lower, n, A, n, work, work_len, dev_info));
    if (st == SQ_OK)
        st = read_info(dev_info, who, "potrf", n);
    if (st == SQ_OK && kind == FACTOR_AND_INVERT) {
        st = CUSOLVER_STATUS(cusolverDnSpotri(solver, lower, n, A, n, work, work_len, dev_info));
        if (st == SQ_OK)
            st = read_info(dev_info, who, "potri", n);
    }
    cudaFree(work);
    cudaFree(dev_info);
    return st;
}

extern "C" sq_status kn_spd_inverse(float *A, int n)
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_spd_inverse: negative size %d", n);
    if (n == 0)
        return SQ_OK;
    SQ_TRY(factor(A, n, FACTOR_AND_INVERT, "kn_spd_inverse"));
    return kn_cuda_copy_upper_to_lower(A, n);
}

__global__ void zero_strict_lower(float *A, int n)
{
    size_t total = (size_t)n * n;
    GRID_STRIDE(idx, total)
    {
        if (idx / n > idx % n)
            A[idx] = 0.0f;
    }
}

extern "C" sq_status kn_cholesky_upper(float *A, int n)
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_cholesky_upper: negative size %d", n);
    if (n == 0)
        return SQ_OK;
    SQ_TRY(factor(A, n, FACTOR_ONLY, "kn_cholesky_upper"));
    zero_strict_lower<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(A, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
