/* quant_math.cuh (CUDA backend): the min/max grid and the round-to-nearest
 * step shared by quantize.cu, gptq.cu and prune.cu, and the group grids of a
 * tile that gptq.cu and prune.cu both compute. The arithmetic is the CPU
 * reference's, operation for operation: IEEE division, round-half-to-even
 * (rintf, like nearbyintf and torch.round), and no fused multiply-add, so the
 * two backends give the same codes. */
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

/* The grids of a tile's rows for the group that starts at tile column jj
 * (column j = col0 + jj of W), over `width` columns: one warp per row reduces
 * the row's min/max, its lane 0 writes the grid to scale/zero[(row0 + r) * ldg
 * + g] and to row_scale/row_zero[r]. The group's values are W as the block
 * started: inside the block from the tile's copy w_start [rows][ncols], past
 * the block's end from W itself (row stride n), which the launch never writes.
 * Ends with a barrier: every thread of the block must call it. */
__device__ inline void tile_group_grids(const float *W, const float *w_start, int row0, int rows_here, int ncols,
                                        int n, int col0, int jj, int width, int g, int ldg, float maxq, bool sym,
                                        float *scale, float *zero, float *row_scale, float *row_zero)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, j = col0 + jj;
    for (int r = warp; r < rows_here; r += blockDim.x / 32) {
        const float *global_row = W + (size_t)(row0 + r) * n;
        float xmin = 0.0f, xmax = 0.0f;
        for (int c = lane; c < width; c += 32) {
            float x = jj + c < ncols ? w_start[r * ncols + jj + c] : global_row[j + c];
            xmin = fminf(xmin, x);
            xmax = fmaxf(xmax, x);
        }
        for (int offset = 16; offset > 0; offset /= 2) {
            xmin = fminf(xmin, __shfl_xor_sync(0xffffffffu, xmin, offset));
            xmax = fmaxf(xmax, __shfl_xor_sync(0xffffffffu, xmax, offset));
        }
        if (lane == 0) {
            size_t gi = (size_t)(row0 + r) * ldg + g;
            grid_from_range(xmin, xmax, maxq, sym, &scale[gi], &zero[gi]);
            row_scale[r] = scale[gi];
            row_zero[r] = zero[gi];
        }
    }
    __syncthreads();
}

#endif
