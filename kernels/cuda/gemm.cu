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
 * TF32 has, at twice TF32's rate; half.cu), accumulating and writing fp32.
 * kn_linear_backward's input gradient dx = dy W runs there too, on bf16 copies
 * (loss gradients are far below fp16's smallest normal; bf16 has fp32's range),
 * fp32 accumulation and output; its weight gradient dW += dyᵀ x (only LoRA
 * factors train, so W is small) is plain fp32 through kn_gemm. */
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

extern "C" sq_status kn_cuda_add_bias(float *out, const float *bias, int rows, int cols)
{
    size_t total = (size_t)rows * cols;
    if (total == 0)
        return SQ_OK;
    add_bias_rows<<<kn_cuda_blocks(total, 256), 256>>>(out, bias, rows, cols);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* Each block's fp16 copy of x starts on a 256-byte boundary, as a lone call's copy (its slot's
 * start) does, so cuBLAS picks the same kernel for every block as it would for a lone call. */
#define BLOCK_ALIGN_HALVES 128 /* 256 bytes of fp16 */

/* kn_linear_per_block, and kn_linear as its one block; `who` names the caller in errors. */
static sq_status linear_blocks(const char *who, float *out, const float *x, const float *weight, const float *bias,
                               int blocks, int rows, int in_features, int out_features)
{
    if (blocks < 0 || rows < 0 || in_features < 0 || out_features < 0)
        return sq_fail(SQ_ERR_ARG, "%s: negative dimension (blocks=%d rows=%d in=%d out=%d)", who, blocks, rows,
                       in_features, out_features);
    if (blocks == 0 || rows == 0 || out_features == 0)
        return SQ_OK;
    const float one = 1.0f, zero = 0.0f;
    const size_t block_in = (size_t)rows * in_features;
    const size_t stride = (block_in + BLOCK_ALIGN_HALVES - 1) / BLOCK_ALIGN_HALVES * BLOCK_ALIGN_HALVES;
    const void *x16, *w16;
    SQ_TRY(kn_cuda_to_half_blocks(x, block_in, blocks, stride, 0, &x16));
    SQ_TRY(kn_cuda_to_half(weight, (size_t)out_features * in_features, 1, &w16));
    for (int b = 0; b < blocks; b++) {
        float *out_b = out + (size_t)b * rows * out_features;
        CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, out_features, rows, in_features, &one,
                                  w16, CUDA_R_16F, in_features, (const char *)x16 + (size_t)b * stride * 2,
                                  CUDA_R_16F, in_features, &zero, out_b, CUDA_R_32F, out_features, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
        if (bias)
            SQ_TRY(kn_cuda_add_bias(out_b, bias, rows, out_features));
    }
    return SQ_OK;
}

extern "C" sq_status kn_linear(float *out, const float *x, const float *weight, const float *bias, int rows,
                               int in_features, int out_features)
{
    return linear_blocks("kn_linear", out, x, weight, bias, 1, rows, in_features, out_features);
}

extern "C" sq_status kn_linear_per_block(float *out, const float *x, const float *weight, const float *bias,
                                         int blocks, int rows, int in_features, int out_features)
{
    return linear_blocks("kn_linear_per_block", out, x, weight, bias, blocks, rows, in_features, out_features);
}

extern "C" sq_status kn_linear_backward(float *dx, float *dweight, const float *dy, const float *x,
                                        const float *weight, int rows, int in_features, int out_features,
                                        bool accumulate_dx)
{
    if (rows < 0 || in_features < 0 || out_features < 0)
        return sq_fail(SQ_ERR_ARG, "kn_linear_backward: negative dimension (rows=%d in=%d out=%d)", rows,
                       in_features, out_features);
    /* forward: y[rows,out] = x[rows,in] Wᵀ[in,out] */
    if (dx && rows > 0 && in_features > 0) { /* dx[rows,in] (+)= dy[rows,out] W[out,in] */
        if (out_features == 0) /* an empty sum: dx = 0, or unchanged */
            return accumulate_dx ? SQ_OK : kn_zero(dx, (size_t)rows * in_features * sizeof(float)); /* dW is empty */
        const float one = 1.0f, beta = accumulate_dx ? 1.0f : 0.0f;
        const void *dy16, *w16;
        SQ_TRY(kn_cuda_to_bf16(dy, (size_t)rows * out_features, 0, &dy16));
        SQ_TRY(kn_cuda_to_bf16(weight, (size_t)out_features * in_features, 1, &w16));
        CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, in_features, rows, out_features, &one,
                                  w16, CUDA_R_16BF, in_features, dy16, CUDA_R_16BF, out_features, &beta, dx,
                                  CUDA_R_32F, in_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (dweight) /* dW[out,in] += dyᵀ[out,rows] x[rows,in] */
        SQ_TRY(kn_gemm(true, false, out_features, in_features, rows, 1.0f, dy, out_features, x, in_features, 1.0f,
                       dweight, in_features));
    return SQ_OK;
}
