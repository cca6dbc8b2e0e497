/* quantize.cu (CUDA backend): per-row min/max quantization grids of one group
 * (one warp per row) and round-to-nearest onto existing grids (one thread per
 * element). Group maps (device int32) are range-checked on the GPU first. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/quant_math.cuh"

static sq_status check_bits(int bits, const char *who)
{
    if (bits < 1 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "%s: bits must be in [1, 8], got %d", who, bits);
    return SQ_OK;
}

__global__ void quant_grid_rows(float *scale, float *zero, int ldg, int g, const float *W, int rows, int ld, int col0,
                                int ncols, float maxq, bool sym)
{
    int lane = threadIdx.x % 32;
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (r >= rows)
        return;
    const float *x = W + (size_t)r * ld + col0;
    float xmin = 0.0f, xmax = 0.0f;
    for (int c = lane; c < ncols; c += 32) {
        xmin = fminf(xmin, x[c]);
        xmax = fmaxf(xmax, x[c]);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        xmin = fminf(xmin, __shfl_xor_sync(0xffffffffu, xmin, offset));
        xmax = fmaxf(xmax, __shfl_xor_sync(0xffffffffu, xmax, offset));
    }
    if (lane == 0)
        grid_from_range(xmin, xmax, maxq, sym, &scale[(size_t)r * ldg + g], &zero[(size_t)r * ldg + g]);
}

extern "C" sq_status kn_quant_grid(float *scale, float *zero, int ldg, int g, const float *W, int rows, int ld,
                                   int col0, int ncols, int bits, bool sym)
{
    SQ_TRY(check_bits(bits, "kn_quant_grid"));
    if (ncols <= 0 || col0 < 0 || col0 + ncols > ld || g < 0 || g >= ldg)
        return sq_fail(SQ_ERR_ARG, "kn_quant_grid: columns [%d, %d) of %d or group %d of %d out of range", col0,
                       col0 + ncols, ld, g, ldg);
    if (rows <= 0)
        return SQ_OK;
    const int warps_per_block = 8;
    quant_grid_rows<<<(rows + warps_per_block - 1) / warps_per_block, warps_per_block * 32>>>(
        scale, zero, ldg, g, W, rows, ld, col0, ncols, (float)((1 << bits) - 1), sym);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void dequantize_kernel(float *W, const uint8_t *codes, const float *scale, const float *zero, int ldg,
                                  const int32_t *group_of_column, int rows, int n)
{
    size_t total = (size_t)rows * n;
    GRID_STRIDE(idx, total)
    {
        size_t r = idx / n, c = idx % n;
        size_t gi = r * ldg + group_of_column[c];
        W[idx] = __fmul_rn(scale[gi], __fsub_rn((float)codes[idx], zero[gi]));
    }
}

extern "C" sq_status kn_dequantize(float *W, const uint8_t *codes, const float *scale, const float *zero, int ldg,
                                   const int32_t *group_of_column, int rows, int n)
{
    if (rows < 0 || n < 0 || ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_dequantize: bad shape rows=%d n=%d ldg=%d", rows, n, ldg);
    SQ_TRY(kn_cuda_check_indices(group_of_column, (size_t)n, ldg, "kn_dequantize", "group_of_column"));
    if (rows == 0 || n == 0)
        return SQ_OK;
    dequantize_kernel<<<kn_cuda_blocks((size_t)rows * n, 256), 256>>>(W, codes, scale, zero, ldg, group_of_column,
                                                                     rows, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void quantize_rtn_kernel(float *W, uint8_t *codes, const float *scale, const float *zero, int ldg,
                                    const int32_t *group_of_column, int rows, int n, float maxq)
{
    size_t total = (size_t)rows * n;
    GRID_STRIDE(idx, total)
    {
        size_t r = idx / n, c = idx % n;
        size_t gi = r * ldg + group_of_column[c];
        W[idx] = quantize_value(W[idx], scale[gi], zero[gi], maxq, &codes[idx]);
    }
}

extern "C" sq_status kn_quantize_rtn(float *W, uint8_t *codes, const float *scale, const float *zero, int ldg,
                                     const int32_t *group_of_column, int rows, int n, int bits)
{
    SQ_TRY(check_bits(bits, "kn_quantize_rtn"));
    if (rows < 0 || n < 0 || ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_quantize_rtn: bad shape rows=%d n=%d ldg=%d", rows, n, ldg);
    SQ_TRY(kn_cuda_check_indices(group_of_column, (size_t)n, ldg, "kn_quantize_rtn", "group_of_column"));
    if (rows == 0 || n == 0)
        return SQ_OK;
    quantize_rtn_kernel<<<kn_cuda_blocks((size_t)rows * n, 256), 256>>>(W, codes, scale, zero, ldg, group_of_column,
                                                                       rows, n, (float)((1 << bits) - 1));
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
