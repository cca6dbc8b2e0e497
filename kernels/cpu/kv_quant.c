/* kv_quant.c (CPU backend): fake quantization of rows, used to simulate a
 * quantized KV cache. Each row of `dim` values gets its own asymmetric grid
 * spanning [min, max] with 2^bits levels: scale = (max - min) / (2^bits - 1),
 * x := min + scale * round((x - min) / scale). A constant row is left as is. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_fake_quantize_rows(float *x, int rows, int dim, int bits)
{
    if (rows < 0 || dim <= 0 || bits < 1 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_fake_quantize_rows: bad arguments rows=%d dim=%d bits=%d", rows, dim, bits);
    const float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *xr = x + (size_t)r * dim;
        float lo = xr[0], hi = xr[0];
        for (int i = 1; i < dim; i++) {
            if (xr[i] < lo)
                lo = xr[i];
            if (xr[i] > hi)
                hi = xr[i];
        }
        float scale = (hi - lo) / maxq;
        if (!(scale > 0.0f))
            continue;
        for (int i = 0; i < dim; i++) {
            float q = nearbyintf((xr[i] - lo) / scale);
            if (q > maxq)
                q = maxq;
            xr[i] = lo + scale * q;
        }
    }
    return SQ_OK;
}
