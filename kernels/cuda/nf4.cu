/* nf4.cu (CUDA backend): dequantization of an NF4 base weight (bitsandbytes'
 * 4-bit NormalFloat, lora/nf4.h) and of its double-quantized absmax. Each
 * value is the CPU reference's product (and sum: no fused multiply-add), so
 * the result is the same floats. One thread per packed byte (two weights). */
#include "kernels/cuda/cuda_common.h"
#include "kernels/nf4_table.h"

__constant__ float nf4_table[16] = KN_NF4_VALUES;

/* W[2b] from the high nibble of packed[b], W[2b + 1] from the low one; a 64-block shares absmax. */
__global__ void dequantize_nf4_kernel(float *W, const uint8_t *packed, const float *absmax, size_t bytes)
{
    GRID_STRIDE(b, bytes)
    {
        uint8_t byte = packed[b];
        float scale = absmax[b / 32];
        W[2 * b] = nf4_table[byte >> 4] * scale;
        W[2 * b + 1] = nf4_table[byte & 0x0f] * scale;
    }
}

__global__ void dequantize_blockwise8_kernel(float *out, const uint8_t *q, const float *code8, const float *absmax2,
                                             float offset, size_t n)
{
    GRID_STRIDE(i, n) out[i] = __fadd_rn(__fmul_rn(code8[q[i]], absmax2[i / 256]), offset);
}

extern "C" sq_status kn_dequantize_nf4(float *W, const uint8_t *packed, const float *absmax, size_t n)
{
    if (n % 64)
        return sq_fail(SQ_ERR_ARG, "kn_dequantize_nf4: %zu values is not a whole number of 64-blocks", n);
    if (n == 0)
        return SQ_OK;
    dequantize_nf4_kernel<<<kn_cuda_blocks(n / 2, 256), 256>>>(W, packed, absmax, n / 2);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_dequantize_blockwise8(float *out, const uint8_t *q, const float *code8, const float *absmax2,
                                              float offset, size_t n)
{
    if (n == 0)
        return SQ_OK;
    dequantize_blockwise8_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, q, code8, absmax2, offset, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
