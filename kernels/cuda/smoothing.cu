/* smoothing.cu (CUDA backend): per-column absolute maxima and column scaling
 * for SmoothQuant (see kernels/cpu/smoothing.c). A block owns 32 columns and
 * its 8 rows of threads stride down the rows; the 8 partial maxima are then
 * combined in shared memory. A max is exact in any order: the CPU's values. */
#include "kernels/cuda/cuda_common.h"

#define TILE_COLS 32
#define TILE_ROWS 8

__global__ void column_abs_max(float *colmax, const float *X, int rows, int cols)
{
    __shared__ float partial[TILE_ROWS][TILE_COLS];
    int c = blockIdx.x * TILE_COLS + threadIdx.x;
    float m = 0.0f;
    for (int r = threadIdx.y; c < cols && r < rows; r += TILE_ROWS)
        m = fmaxf(m, fabsf(X[(size_t)r * cols + c]));
    partial[threadIdx.y][threadIdx.x] = m;
    __syncthreads();
    if (threadIdx.y != 0 || c >= cols)
        return;
    float best = colmax[c];
    for (int k = 0; k < TILE_ROWS; k++)
        best = fmaxf(best, partial[k][threadIdx.x]);
    colmax[c] = best;
}

__global__ void scale_columns(float *W, const float *s, int rows, int cols)
{
    size_t n = (size_t)rows * cols;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        W[i] = __fmul_rn(W[i], s[i % cols]);
}

extern "C" sq_status kn_column_abs_max(float *colmax, const float *X, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_abs_max: bad shape rows=%d cols=%d", rows, cols);
    if (rows == 0)
        return SQ_OK;
    column_abs_max<<<(cols + TILE_COLS - 1) / TILE_COLS, dim3(TILE_COLS, TILE_ROWS)>>>(colmax, X, rows, cols);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_scale_columns(float *W, const float *s, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_scale_columns: bad shape rows=%d cols=%d", rows, cols);
    size_t n = (size_t)rows * cols;
    if (n == 0)
        return SQ_OK;
    size_t blocks = (n + 255) / 256;
    scale_columns<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256>>>(W, s, rows, cols);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
