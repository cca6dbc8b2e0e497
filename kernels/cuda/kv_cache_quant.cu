/* kv_cache_quant.cu (CUDA backend): the quantized KV caches of kernels.h with
 * static per-head scales (int8, fp8 e4m3: kernels/kv_cache_grid.h, the CPU's
 * arithmetic), their calibration (per-head absolute maxima, an atomic max on the
 * float's bits: exact in any order) and KIVI's per-channel key groups (one thread
 * per channel and block of tokens, the CPU's operations without fused multiply-add). */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"
#include "kernels/kv_cache_grid.h"

static sq_status check_heads(const char *who, int rows, int heads, int head_dim)
{
    if (rows < 0 || heads <= 0 || head_dim <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad arguments rows=%d heads=%d head_dim=%d", who, rows, heads, head_dim);
    return SQ_OK;
}

__global__ void kv_quantize_static(float *x, const float *scales, size_t n, int width, int head_dim, int fp8)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] = kn_kv_static_round(x[i], scales[(int)(i % width) / head_dim], fp8);
}

extern "C" sq_status kn_kv_quantize_static(float *x, const float *scales, int rows, int heads, int head_dim,
                                           kn_kv_format format)
{
    SQ_TRY(check_heads("kn_kv_quantize_static", rows, heads, head_dim));
    size_t n = (size_t)rows * heads * head_dim;
    if (n == 0)
        return SQ_OK;
    kv_quantize_static<<<(unsigned)((n + 255) / 256), 256>>>(x, scales, n, heads * head_dim, head_dim,
                                                             format == KN_KV_FP8);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* Grid (heads, row chunks): each block reduces its rows of one head, then one atomic max
 * on the bits of a non-negative float (ordered as its int). */
__global__ void kv_head_absmax(float *absmax, const float *x, int rows, int width, int head_dim, int rows_per_block)
{
    const int h = blockIdx.x, r0 = blockIdx.y * rows_per_block;
    const int r1 = min(rows, r0 + rows_per_block);
    float m = 0.0f;
    for (long i = threadIdx.x; i < (long)(r1 - r0) * head_dim; i += blockDim.x)
        m = fmaxf(m, fabsf(x[(size_t)(r0 + i / head_dim) * width + h * head_dim + i % head_dim]));
    m = block_reduce(m, reduce_max());
    if (threadIdx.x == 0)
        atomicMax((int *)&absmax[h], __float_as_int(m));
}

extern "C" sq_status kn_kv_head_absmax(float *absmax, const float *x, int rows, int heads, int head_dim)
{
    SQ_TRY(check_heads("kn_kv_head_absmax", rows, heads, head_dim));
    if (rows == 0)
        return SQ_OK;
    const int rows_per_block = 64;
    dim3 grid((unsigned)heads, (unsigned)((rows + rows_per_block - 1) / rows_per_block));
    kv_head_absmax<<<grid, 256>>>(absmax, x, rows, heads * head_dim, head_dim, rows_per_block);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void kv_channel_groups(float *x, int seq, int channels, int group, int blocks, float maxq, int units)
{
    int u = blockIdx.x * blockDim.x + threadIdx.x;
    if (u >= units)
        return;
    const int c = u % channels, blk = (u / channels) % blocks, b = u / channels / blocks;
    float *base = x + ((size_t)b * seq + (size_t)blk * group) * channels + c;
    float lo = base[0], hi = base[0];
    for (int t = 1; t < group; t++) {
        lo = fminf(lo, base[(size_t)t * channels]);
        hi = fmaxf(hi, base[(size_t)t * channels]);
    }
    float scale = (hi - lo) / maxq;
    if (!(scale > 0.0f))
        return;
    for (int t = 0; t < group; t++) {
        float *v = &base[(size_t)t * channels];
        float q = fminf(rintf(__fdiv_rn(__fsub_rn(*v, lo), scale)), maxq);
        *v = __fadd_rn(lo, __fmul_rn(scale, q));
    }
}

extern "C" sq_status kn_kv_quantize_channel_groups(float *x, int batch, int seq, int channels, int group, int bits)
{
    if (batch < 0 || seq <= 0 || channels <= 0 || group <= 0 || bits < 1 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_kv_quantize_channel_groups: bad arguments batch=%d seq=%d channels=%d "
                       "group=%d bits=%d", batch, seq, channels, group, bits);
    const int blocks = seq / group;
    long units = (long)batch * blocks * channels;
    if (units == 0)
        return SQ_OK;
    if (units > INT32_MAX)
        return sq_fail(SQ_ERR_ARG, "kn_kv_quantize_channel_groups: %ld channel blocks is too many", units);
    kv_channel_groups<<<(unsigned)((units + 255) / 256), 256>>>(x, seq, channels, group, blocks,
                                                                 (float)((1 << bits) - 1), (int)units);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
