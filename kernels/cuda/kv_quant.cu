/* kv_quant.cu (CUDA backend): fake quantization of rows (simulated quantized
 * KV cache), one thread block per row: the row's [min, max] spans 2^bits
 * levels, x := min + scale * round((x - min) / scale); a constant row is left
 * as is. Rounding is half-to-even and no multiply-add is fused, as on the CPU. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

__global__ void fake_quantize_rows(float *x, int dim, float maxq)
{
    float *xr = x + (size_t)blockIdx.x * dim;
    float lo = INFINITY, hi = -INFINITY;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        lo = fminf(lo, xr[i]);
        hi = fmaxf(hi, xr[i]);
    }
    lo = block_reduce(lo, reduce_min());
    hi = block_reduce(hi, reduce_max());
    float scale = (hi - lo) / maxq;
    if (!(scale > 0.0f))
        return;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float q = fminf(rintf((xr[i] - lo) / scale), maxq);
        xr[i] = __fadd_rn(lo, __fmul_rn(scale, q));
    }
}

extern "C" sq_status kn_fake_quantize_rows(float *x, int rows, int dim, int bits)
{
    if (rows < 0 || dim <= 0 || bits < 1 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_fake_quantize_rows: bad arguments rows=%d dim=%d bits=%d", rows, dim, bits);
    if (rows == 0)
        return SQ_OK;
    fake_quantize_rows<<<rows, 256>>>(x, dim, (float)((1 << bits) - 1));
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
