/* gptq.cu (CUDA backend): one GPTQ block — the sequential, column-by-column
 * part of the solve (kernels.h gives the exact steps).
 *
 * Rows are independent inside a block, so each thread block takes a tile of
 * TILE_ROWS rows and walks the block's columns in order. The tile's slice of W
 * stays in shared memory for the whole walk (with a copy of its starting values
 * for the group grids), and row j of Hinv's block is read into shared memory
 * once for all the tile's rows, the next row fetched during the current
 * column's update so its latency is hidden, like the next column's grid. Per
 * column: (1) group grids where a group starts (one warp per row), (2)
 * quantize the column (one thread per row; a masked entry, the tile's mask
 * kept in shared memory too, is quantized as 0), (3) spread the error over
 * the block's later columns (one warp per row); a barrier after each, none
 * after (1) where no group starts. The arithmetic matches the CPU reference operation
 * for operation (see quant_math.cuh), so codes agree with it. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/quant_math.cuh"

#define THREADS 256
#define TILE_ROWS 16

struct gptq_args {
    float *W;
    uint8_t *codes;
    float *Err;
    const float *Hinv;
    float *scale, *zero;
    const int32_t *group_of_column;
    const uint8_t *masked; /* NULL: nothing masked */
    int ldg, group_size, rows, n, col0, ncols, tile_rows;
    bool groups_here, sym;
    float maxq;
};

__global__ void __launch_bounds__(THREADS) gptq_block_tiles(gptq_args a)
{
    extern __shared__ float smem[];
    const int R = a.tile_rows, ncols = a.ncols;
    float *w = smem;                      /* [R][ncols]: the tile as the walk updates it */
    float *w_start = w + R * ncols;       /* [R][ncols]: the tile as the block started */
    float *h_rows = w_start + R * ncols;  /* [2][ncols]: Hinv[j][col0 ..], double-buffered */
    float *err = h_rows + 2 * ncols;      /* [R] */
    float *row_scale = err + R;           /* [R] */
    float *row_zero = row_scale + R;      /* [R] */
    int *groups = (int *)(row_zero + R);  /* [ncols]: group_of_column over the block */
    uint8_t *masked = (uint8_t *)(groups + ncols); /* [R][ncols] when a.masked: the tile's mask */
    const int row0 = blockIdx.x * R;
    const int rows_here = min(R, a.rows - row0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    for (int idx = threadIdx.x; idx < rows_here * ncols; idx += blockDim.x) {
        int r = idx / ncols, c = idx % ncols;
        float value = a.W[(size_t)(row0 + r) * a.n + a.col0 + c];
        w[idx] = value;
        w_start[idx] = value;
        if (a.masked)
            masked[idx] = a.masked[(size_t)(row0 + r) * a.n + a.col0 + c];
    }
    for (int k = threadIdx.x; k < ncols; k += blockDim.x) {
        h_rows[k] = a.Hinv[(size_t)a.col0 * a.n + a.col0 + k];
        groups[k] = a.group_of_column[a.col0 + k];
    }
    if (threadIdx.x < rows_here) {
        size_t gi = (size_t)(row0 + threadIdx.x) * a.ldg + a.group_of_column[a.col0];
        row_scale[threadIdx.x] = a.scale[gi];
        row_zero[threadIdx.x] = a.zero[gi];
    }
    __syncthreads(); /* the group grids below read rows of w_start that other warps loaded */
    for (int jj = 0; jj < ncols; jj++) {
        const int j = a.col0 + jj;
        const float *h_row = h_rows + (jj % 2) * ncols;
        float *h_next = h_rows + ((jj + 1) % 2) * ncols;
        const int g = groups[jj];
        /* The same for every thread of the block, so the barrier inside is safe. */
        if (a.groups_here && j % a.group_size == 0) {
            tile_group_grids(a.W, w_start, row0, rows_here, ncols, a.n, a.col0, jj, min(a.group_size, a.n - j), g,
                             a.ldg, a.maxq, a.sym, a.scale, a.zero, row_scale, row_zero);
        }
        if (threadIdx.x < rows_here) {
            int r = threadIdx.x;
            float wj = w[r * ncols + jj];
            float kept = a.masked && masked[r * ncols + jj] ? 0.0f : wj;
            uint8_t code;
            float q = quantize_value(kept, row_scale[r], row_zero[r], a.maxq, &code);
            float e = __fdiv_rn(__fsub_rn(wj, q), h_row[jj]);
            a.codes[(size_t)(row0 + r) * a.n + j] = code;
            a.Err[(size_t)(row0 + r) * ncols + jj] = e;
            err[r] = e;
            w[r * ncols + jj] = q;
        }
        __syncthreads();
        /* Fetch the next column's Hinv row and grid while this column's update runs
         * (a grid computed earlier in this launch is already in scale/zero, written
         * before a barrier; one that starts at the next column replaces this). */
        for (int k = jj + 1 + threadIdx.x; k < ncols; k += blockDim.x)
            h_next[k] = a.Hinv[(size_t)(j + 1) * a.n + a.col0 + k];
        if (jj + 1 < ncols && threadIdx.x < rows_here) {
            size_t gi = (size_t)(row0 + threadIdx.x) * a.ldg + groups[jj + 1];
            row_scale[threadIdx.x] = a.scale[gi];
            row_zero[threadIdx.x] = a.zero[gi];
        }
        /* One warp per row, lanes across the later columns: no index division. */
        for (int r = warp; r < rows_here; r += blockDim.x / 32) {
            const float e = err[r];
            float *wr = w + r * ncols;
            for (int k = jj + 1 + lane; k < ncols; k += 32)
                wr[k] = __fsub_rn(wr[k], __fmul_rn(e, h_row[k]));
        }
        __syncthreads();
    }
    for (int idx = threadIdx.x; idx < rows_here * ncols; idx += blockDim.x) {
        int r = idx / ncols, c = idx % ncols;
        a.W[(size_t)(row0 + r) * a.n + a.col0 + c] = w[idx];
    }
}

static size_t smem_bytes(int tile_rows, int ncols, bool masked)
{
    return sizeof(float) * ((size_t)2 * tile_rows * ncols + 2 * (size_t)ncols + 3 * (size_t)tile_rows) +
           sizeof(int) * (size_t)ncols + (masked ? (size_t)tile_rows * ncols : 0);
}

extern "C" sq_status kn_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                                   int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                                   int rows, int n, int col0, int ncols, int bits, bool sym,
                                   const uint8_t *masked)
{
    if (bits < 1 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "kn_gptq_block: bits must be in [1, 8], got %d", bits);
    if (ncols <= 0 || col0 < 0 || col0 + ncols > n)
        return sq_fail(SQ_ERR_ARG, "kn_gptq_block: block [%d, %d) outside %d columns", col0, col0 + ncols, n);
    if (rows < 0 || ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_gptq_block: bad shape rows=%d ldg=%d", rows, ldg);
    SQ_TRY(kn_cuda_check_indices(group_of_column + col0, (size_t)ncols, ldg, "kn_gptq_block",
                                 "group_of_column[col0 ..]"));
    if (rows == 0)
        return SQ_OK;

    int device = 0, smem_limit = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    int tile_rows = TILE_ROWS;
    while (tile_rows > 1 && smem_bytes(tile_rows, ncols, masked) > (size_t)smem_limit)
        tile_rows /= 2;
    size_t smem = smem_bytes(tile_rows, ncols, masked);
    if (smem > (size_t)smem_limit)
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_gptq_block: a block of %d columns needs %zu bytes of shared memory, "
                       "more than the device's %d", ncols, smem, smem_limit);
    CUDA_CHECK(cudaFuncSetAttribute(gptq_block_tiles, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));

    gptq_args a;
    a.W = W;
    a.codes = codes;
    a.Err = Err;
    a.Hinv = Hinv;
    a.scale = scale;
    a.zero = zero;
    a.group_of_column = group_of_column;
    a.masked = masked;
    a.ldg = ldg;
    a.group_size = group_size;
    a.rows = rows;
    a.n = n;
    a.col0 = col0;
    a.ncols = ncols;
    a.tile_rows = tile_rows;
    a.groups_here = compute_groups && group_size > 0;
    a.sym = sym;
    a.maxq = (float)((1 << bits) - 1);
    gptq_block_tiles<<<(rows + tile_rows - 1) / tile_rows, THREADS, smem>>>(a);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
