/* quant_math.cuh (CUDA backend): the min/max grid and the round-to-nearest
 * step shared by quantize.cu (RTN) and gptq.cu (the GPTQ and SparseGPT walk).
 * The arithmetic is the CPU reference's, operation for operation: IEEE
 * division, round-half-to-even (rintf, like nearbyintf and torch.round), and
 * no fused multiply-add, so the two backends give the same codes. */
#ifndef SQ_KERNELS_CUDA_QUANT_MATH_CUH
#define SQ_KERNELS_CUDA_QUANT_MATH_CUH

#include <stdint.h>

/* Grid from the running min/max of a group (xmin, xmax already include 0). */
__device__ inline void grid_from_range(float xmin, float xmax, float maxq, bool sym, float *scale, float *zero)
{
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.0f)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = __fdiv_rn(__fsub_rn(xmax, xmin), maxq);
    *scale = s;
    *zero = sym ? __fdiv_rn(maxq + 1.0f, 2.0f) : rintf(__fdiv_rn(-xmin, s));
}

/* Code of w on grid (s, z), and the dequantized value. */
__device__ inline float quantize_value(float w, float s, float z, float maxq, uint8_t *code)
{
    float q = __fadd_rn(rintf(__fdiv_rn(w, s)), z);
    q = fminf(fmaxf(q, 0.0f), maxq);
    *code = (uint8_t)q;
    return __fmul_rn(s, __fsub_rn(q, z));
}

#endif
