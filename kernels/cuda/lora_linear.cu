/* lora_linear.cu (CUDA backend): kn_linear_lora, a LoRA linear in two tensor-core
 * products instead of three.
 *
 *   u   = x Aᵀ                                   [rows, r]
 *   out = x Wᵀ + scale · u Bᵀ = [x | u] · [W | scale·B]ᵀ   (K = in + r, padded to 8)
 *
 * Done as kn_linear then an fp32 u·Bᵀ product, the low-rank term reads and
 * writes the whole output a second time (for a 7B layer at 8192 rows that is
 * about as long as the term's own arithmetic many times over), and x is
 * converted to fp16 twice. Here x is converted once into the left part of a
 * [rows, K] fp16 buffer, u is computed from it and written into the columns
 * after x, W and scale·B are laid side by side in a [out, K] fp16 buffer, and one
 * product with K = in + r gives the output. fp16 operands with fp32 accumulation,
 * as kn_linear (half.cu says why); the padding columns are zeros on both sides.
 *
 * The two buffers are scratch kept between calls (grown as needed, freed by
 * kn_shutdown); all work is on the one stream, so a call may reuse them as soon
 * as the previous one is queued. */
#include <cuda_fp16.h>

#include "kernels/cuda/cuda_common.h"

static kn_cuda_scratch xu_buffer, wb_buffer; /* [rows, K] and [out, K] fp16 */

extern "C" void kn_cuda_lora_linear_shutdown(void)
{
    kn_cuda_scratch_free(&xu_buffer);
    kn_cuda_scratch_free(&wb_buffer);
}

/* Columns [col0, col0 + cols) of the fp16 matrix dst [rows, ld] := scale · src [rows, cols]
 * (fp32, contiguous); with pad_to > 0 the row's columns [col0 + cols + skip, pad_to) are
 * zeroed too, leaving `skip` columns for a later call to fill. Rows on the grid's y axis and
 * columns on x, so no thread divides to find its element. */
__global__ void to_half_columns(__half *dst, int ld, int col0, const float *src, int rows, int cols, float scale,
                                int skip, int pad_to)
{
    const int width = pad_to > 0 ? pad_to - col0 : cols;
    for (int r = blockIdx.y; r < rows; r += gridDim.y) {
        __half *row = dst + (size_t)r * ld + col0;
        const float *in = src + (size_t)r * cols;
        for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < width; c += gridDim.x * blockDim.x) {
            if (c < cols)
                row[c] = __float2half_rn(scale * in[c]);
            else if (c >= cols + skip)
                row[c] = __float2half_rn(0.0f);
        }
    }
}

static sq_status fill_columns(__half *dst, int ld, int col0, const float *src, int rows, int cols, float scale,
                              int skip, int pad_to)
{
    const int width = pad_to > 0 ? pad_to - col0 : cols;
    if (rows == 0 || width == 0)
        return SQ_OK;
    const dim3 grid((unsigned)((width + 255) / 256), (unsigned)(rows < 65535 ? rows : 65535));
    to_half_columns<<<grid, 256>>>(dst, ld, col0, src, rows, cols, scale, skip, pad_to);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_linear_lora(float *out, float *u, const float *x, const float *weight, const float *bias,
                                    const float *A, const float *B, float scale, int rows, int in_features,
                                    int out_features, int r)
{
    if (rows < 0 || in_features <= 0 || out_features < 0 || r <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_linear_lora: bad shape (rows=%d in=%d out=%d r=%d)", rows, in_features,
                       out_features, r);
    if (rows == 0)
        return SQ_OK;
    const int K = (in_features + r + 7) / 8 * 8; /* 16-byte aligned rows for the tensor cores */
    const float one = 1.0f, zero = 0.0f;
    SQ_TRY(kn_cuda_scratch_reserve(&xu_buffer, (size_t)rows * K * sizeof(__half)));
    SQ_TRY(kn_cuda_scratch_reserve(&wb_buffer, (size_t)(out_features > 0 ? out_features : 1) * K * sizeof(__half)));
    __half *xu = (__half *)xu_buffer.data, *wb = (__half *)wb_buffer.data;
    /* x into columns [0, in), zeros after the r columns of u */
    SQ_TRY(fill_columns(xu, K, 0, x, rows, in_features, 1.0f, r, K));
    /* u[rows, r] = x Aᵀ from the fp16 x (column-major view: uᵀ = A · xᵀ) */
    const void *a16;
    SQ_TRY(kn_cuda_to_half(A, (size_t)r * in_features, 1, &a16));
    CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, r, rows, in_features, &one, a16, CUDA_R_16F,
                              in_features, xu, CUDA_R_16F, K, &zero, u, CUDA_R_32F, r, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
    if (out_features == 0)
        return SQ_OK;
    /* u into columns [in, in + r); W and scale·B side by side, zeros in the padding */
    SQ_TRY(fill_columns(xu, K, in_features, u, rows, r, 1.0f, 0, 0));
    SQ_TRY(fill_columns(wb, K, 0, weight, out_features, in_features, 1.0f, r, K));
    SQ_TRY(fill_columns(wb, K, in_features, B, out_features, r, scale, 0, 0));
    /* out[rows, out] = [x | u] · [W | scale·B]ᵀ */
    CUBLAS_CHECK(cublasGemmEx(kn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, out_features, rows, K, &one, wb,
                              CUDA_R_16F, K, xu, CUDA_R_16F, K, &zero, out, CUDA_R_32F, out_features,
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return bias ? kn_cuda_add_bias(out, bias, rows, out_features) : SQ_OK;
}
