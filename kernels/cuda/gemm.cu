/* gemm.cu (CUDA backend): matrix products through cuBLAS.
 *
 * cuBLAS is column-major; a row-major matrix is its column-major transpose, so
 * row-major C = op(A) op(B) is computed as column-major Cᵀ = op(B)ᵀ op(A)ᵀ by
 * swapping the operands (and m with n).
 *
 * Precision: kn_gemm is plain fp32 (it also carries GPTQ's lazy updates, which
 * DESIGN keeps in fp32). kn_linear is the forward pass's layer product, where
 * DESIGN allows reduced-precision inputs with fp32 accumulation, so it runs on
 * the tensor cores on fp16 copies of x and the weight (11 significant bits, as
 * TF32 has, at twice TF32's rate; half.cu), accumulating and writing fp32. */
#include "kernels/cuda/cuda_common.h"

extern "C" sq_status kn_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float *A,
                             int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return sq_fail(SQ_ERR_ARG, "kn_gemm: negative dimension (m=%d n=%d k=%d)", m, n, k);
    if (m == 0 || n == 0)
        return SQ_OK;
    CUBLAS_CHECK(cublasSgemm(kn_cuda_blas(), transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                             transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, B, ldb, A, lda, &beta, C,
                             ldc));
    return SQ_OK;
}

__global__ void add_bias_rows(float *out, const float *bias, int rows, int cols)
{
    size_t total = (size_t)rows * cols;
    GRID_STRIDE(i, total)
        out[i] += bias[i % cols];
}

extern "C" sq_status kn_linear(float *out, const float *x, const float *weight, const float *bias, int rows,
                               int in_features, int out_features)
{
    if (rows < 0 || in_features < 0 || out_features < 0)
        return sq_fail(SQ_ERR_ARG, "kn_linear: negative dimension (rows=%d in=%d out=%d)", rows, in_features,
                       out_features);
    if (rows == 0 || out_features == 0)
        return SQ_OK;
    const float one = 1.0f, zero = 0.0f;
    const void *x16, *w16;
    SQ_TRY(kn_cuda_to_half(x, (size_t)rows * in_features, 0, &x16));
    SQ_TRY(kn_cuda_to_half(weight, (size_t)out_features * in_features, 1, &w16));
    CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, out_features, rows, in_features, &one, w16,
                              CUDA_R_16F, in_features, x16, CUDA_R_16F, in_features, &zero, out, CUDA_R_32F,
                              out_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (bias) {
        size_t total = (size_t)rows * out_features;
        add_bias_rows<<<kn_cuda_blocks(total, 256), 256>>>(out, bias, rows, out_features);
        CUDA_CHECK_LAUNCH();
    }
    return SQ_OK;
}
