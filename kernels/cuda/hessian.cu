/* hessian.cu (CUDA backend): calibration statistics — the Hessian H = Xᵀ X,
 * squared column norms, the diagonal, and the dead-column / damping preparation
 * GPTQ and SparseGPT apply before inverting.
 *
 * H runs on the tensor cores from an fp16 copy of X (half.cu) with fp32
 * accumulation: each product of two fp16 values is exact in fp32, so this is the
 * fp32 Xᵀ X of X rounded to 11 significant bits, the precision the forward's
 * linears already work in, at many times the fp32 SYRK's rate. It is a full GEMM
 * (the tensor cores have no SYRK); the upper triangle is then mirrored so that H
 * is exactly symmetric. Row-major X[rows, cols] is column-major Xᵀ[cols, rows], so
 * column-major H = Xᵀ·(Xᵀ)ᵀ is a GEMM of X with its transpose. */
#include "kernels/cuda/cuda_common.h"

/* H = beta H + alpha XᵀX as one GEMM, not mirrored. */
static sq_status xtx_product(float *H, const float *X, int rows, int cols, float alpha, float beta, const char *who)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape rows=%d cols=%d", who, rows, cols);
    const void *X16;
    SQ_TRY(kn_cuda_to_half(X, (size_t)rows * cols, 0, &X16));
    CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_T, cols, cols, rows, &alpha, X16, CUDA_R_16F,
                              cols, X16, CUDA_R_16F, cols, &beta, H, CUDA_R_32F, cols, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    return SQ_OK;
}

extern "C" sq_status kn_hessian_accumulate(float *H, const float *X, int rows, int cols, float alpha, float beta)
{
    SQ_TRY(xtx_product(H, X, rows, cols, alpha, beta, "kn_hessian_accumulate"));
    return kn_cuda_copy_upper_to_lower(H, cols);
}

extern "C" sq_status kn_hessian_upper(float *H, const float *X, int rows, int cols)
{
    return xtx_product(H, X, rows, cols, 1.0f, 0.0f, "kn_hessian_upper");
}

/* One thread per column walks the rows in order, as the CPU loop does; neighbouring
 * threads read neighbouring columns, so each row is read coalesced. */
__global__ void column_sq_norms_kernel(float *norms, const float *X, int rows, int cols, float beta)
{
    GRID_STRIDE(c, (size_t)cols)
    {
        float acc = beta == 0.0f ? 0.0f : norms[c] * beta; /* beta 0: norms is not read */
        for (int r = 0; r < rows; r++) {
            float x = X[(size_t)r * cols + c];
            acc = __fadd_rn(acc, __fmul_rn(x, x));
        }
        norms[c] = acc;
    }
}

extern "C" sq_status kn_column_sq_norms(float *norms, const float *X, int rows, int cols, float beta)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_sq_norms: bad shape rows=%d cols=%d", rows, cols);
    column_sq_norms_kernel<<<kn_cuda_blocks((size_t)cols, 128), 128>>>(norms, X, rows, cols, beta);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void diagonal_kernel(float *diag, const float *A, int n)
{
    GRID_STRIDE(i, (size_t)n) diag[i] = A[i * n + i];
}

extern "C" sq_status kn_diagonal(float *diag, const float *A, int n)
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_diagonal: negative size %d", n);
    if (n == 0)
        return SQ_OK;
    diagonal_kernel<<<kn_cuda_blocks((size_t)n, 256), 256>>>(diag, A, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* Runs before damp_diagonal, so it still sees the dead columns' zeros. */
__global__ void zero_dead_columns(float *W, const float *H, int rows, int n)
{
    size_t total = (size_t)rows * n;
    GRID_STRIDE(idx, total)
    {
        size_t i = idx % n;
        if (H[i * n + i] == 0.0f)
            W[idx] = 0.0f;
    }
}

__global__ void damp_diagonal(float *H, int n, float damp)
{
    GRID_STRIDE(i, (size_t)n)
    {
        float *hii = &H[i * n + i];
        if (*hii == 0.0f)
            *hii = 1.0f;
        *hii += damp;
    }
}

extern "C" sq_status kn_hessian_prepare(float *H, float *W, int rows, int n, float damp)
{
    if (rows < 0 || n < 0)
        return sq_fail(SQ_ERR_ARG, "kn_hessian_prepare: bad shape rows=%d n=%d", rows, n);
    if (n == 0)
        return SQ_OK;
    if (rows > 0) {
        zero_dead_columns<<<kn_cuda_blocks((size_t)rows * n, 256), 256>>>(W, H, rows, n);
        CUDA_CHECK_LAUNCH();
    }
    damp_diagonal<<<kn_cuda_blocks((size_t)n, 256), 256>>>(H, n, damp);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
