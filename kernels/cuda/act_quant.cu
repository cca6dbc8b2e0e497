/* act_quant.cu (CUDA backend): per-token symmetric fake quantization (see
 * kernels/cpu/act_quant.c), one thread block per row: scale = max|x| / qmax,
 * x := scale * clamp(rint(x / scale), -qmax - 1, qmax). Rounding is
 * half-to-even and no multiply-add is fused, so the CPU's values come out. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

__global__ void fake_quantize_tokens(float *x, int dim, float qmax)
{
    float *xr = x + (size_t)blockIdx.x * dim;
    float amax = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        amax = fmaxf(amax, fabsf(xr[i]));
    amax = block_reduce(amax, reduce_max());
    float scale = __fdiv_rn(amax, qmax);
    if (!(scale > 0.0f))
        return;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float q = fminf(fmaxf(rintf(__fdiv_rn(xr[i], scale)), -qmax - 1.0f), qmax);
        xr[i] = __fmul_rn(scale, q);
    }
}

extern "C" sq_status kn_fake_quantize_tokens(float *x, int rows, int dim, int bits)
{
    if (rows < 0 || dim <= 0 || bits < 2 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_fake_quantize_tokens: bad arguments rows=%d dim=%d bits=%d", rows, dim, bits);
    if (rows == 0)
        return SQ_OK;
    fake_quantize_tokens<<<rows, 256>>>(x, dim, (float)((1 << (bits - 1)) - 1));
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
