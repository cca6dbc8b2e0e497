/* nf4.c (CPU backend): dequantization of an NF4 base weight (bitsandbytes'
 * 4-bit NormalFloat, lora/nf4.h) and of its double-quantized absmax. */
#include "kernels/kernels.h"

/* The 16 NF4 values of the QLoRA paper (Dettmers et al. 2023, appendix E), as bitsandbytes has them. */
static const float nf4_table[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526794f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

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
