/* quant_math.h (CPU backend): the min/max grid and the round-to-nearest step
 * shared by quantize.c (RTN) and gptq.c (the GPTQ and SparseGPT walk). The
 * arithmetic follows the reference GPTQ / AutoGPTQ quantizer in fp32, with
 * torch.round's round-half-to-even (nearbyintf under the default rounding
 * mode); kernels/cuda/quant_math.cuh repeats it. */
#ifndef SQ_KERNELS_CPU_QUANT_MATH_H
#define SQ_KERNELS_CPU_QUANT_MATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

/* Grid of one row over `ncols` values x. */
static inline void grid_of_row(const float *x, int ncols, float maxq, bool sym, float *scale, float *zero)
{
    float xmin = 0.0f, xmax = 0.0f;
    for (int c = 0; c < ncols; c++) {
        xmin = fminf(xmin, x[c]);
        xmax = fmaxf(xmax, x[c]);
    }
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.0f)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    *scale = (xmax - xmin) / maxq;
    *zero = sym ? (maxq + 1.0f) / 2.0f : nearbyintf(-xmin / *scale);
}

/* Code of w on grid (s, z), and the dequantized value. */
static inline float quantize_value(float w, float s, float z, float maxq, uint8_t *code)
{
    float q = nearbyintf(w / s) + z;
    q = fminf(fmaxf(q, 0.0f), maxq);
    *code = (uint8_t)q;
    return s * (q - z);
}

#endif
