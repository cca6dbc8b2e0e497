/* act_quant.c (CPU backend): per-token symmetric fake quantization, the
 * dynamic int activations of a W8A8 model (vLLM's per-token int8 quantization
 * of a linear's input) simulated in fp32: each row's scale is max|x| / qmax,
 * qmax = 2^(bits-1) - 1, and x := scale * clamp(round_half_even(x / scale),
 * -qmax - 1, qmax). A row of zeros stays zero. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_fake_quantize_tokens(float *x, int rows, int dim, int bits)
{
    if (rows < 0 || dim <= 0 || bits < 2 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_fake_quantize_tokens: bad arguments rows=%d dim=%d bits=%d", rows, dim, bits);
    const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * dim;
        float amax = 0.0f;
        for (int i = 0; i < dim; i++)
            amax = fmaxf(amax, fabsf(xr[i]));
        float scale = amax / qmax;
        if (!(scale > 0.0f))
            continue;
        for (int i = 0; i < dim; i++) {
            float q = nearbyintf(xr[i] / scale);
            xr[i] = scale * fminf(fmaxf(q, qmin), qmax);
        }
    }
    return SQ_OK;
}
