/* symmetric.cu (CUDA backend): completing a symmetric matrix from its upper
 * triangle, after cuBLAS syrk or cuSOLVER potri wrote only one half. Tiles of
 * 32×32 go through shared memory so that both the reads and the writes of the
 * transpose are coalesced. */
#include "kernels/cuda/cuda_common.h"

#define TILE 32

/* Block (bx, by) with by >= bx writes lower-triangle tile (row tile by, column tile bx)
 * from the upper-triangle tile (row tile bx, column tile by). */
__global__ void copy_upper_to_lower_tiles(float *A, int n)
{
    __shared__ float tile[TILE][TILE + 1];
    int bx = blockIdx.x, by = blockIdx.y;
    if (by < bx)
        return;
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int r = bx * TILE + i, c = by * TILE + threadIdx.x;
        if (r < n && c < n)
            tile[i][threadIdx.x] = A[(size_t)r * n + c];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
        int r = by * TILE + i, c = bx * TILE + threadIdx.x;
        if (r < n && c < n && r > c)
            A[(size_t)r * n + c] = tile[threadIdx.x][i];
    }
}

extern "C" sq_status kn_cuda_copy_upper_to_lower(float *A, int n)
{
    if (n <= 1)
        return SQ_OK;
    int tiles = (n + TILE - 1) / TILE;
    copy_upper_to_lower_tiles<<<dim3(tiles, tiles), dim3(TILE, 8)>>>(A, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
