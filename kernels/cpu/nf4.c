/* nf4.c (CPU backend): dequantization of an NF4 base weight (bitsandbytes'
 * 4-bit NormalFloat, lora/nf4.h) and of its double-quantized absmax. */
#include "kernels/kernels.h"
#include "kernels/nf4_table.h"

static const float nf4_table[16] = KN_NF4_VALUES;

sq_status kn_dequantize_nf4(float *W, const uint8_t *packed, const float *absmax, size_t n)
{
    if (n % 64)
        return sq_fail(SQ_ERR_ARG, "kn_dequantize_nf4: %zu values is not a whole number of 64-blocks", n);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        uint8_t byte = packed[i / 2];
        int code = i % 2 ? byte & 0x0f : byte >> 4;
        W[i] = nf4_table[code] * absmax[i / 64];
    }
    return SQ_OK;
}

sq_status kn_dequantize_blockwise8(float *out, const uint8_t *q, const float *code8, const float *absmax2, float offset,
                                   size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = code8[q[i]] * absmax2[i / 256] + offset;
    return SQ_OK;
}
