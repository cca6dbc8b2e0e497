/* gptq.cu (CUDA backend): the column walk of one GPTQ block — the sequential,
 * column-by-column part of the solve — written once for kn_gptq_block and
 * kn_sparsegpt_block (kernels.h gives the exact steps; block_walk.h
 * checks and gathers the arguments). SparseGPT's block is the same walk with a mask chosen
 * where each prune group starts and, with bits 0, no rounding.
 *
 * Rows are independent inside a block, so each thread block takes a tile of
 * TILE_ROWS rows and walks the block's columns in order. The tile's slice of W
 * stays in shared memory for the whole walk (with a copy of its starting values
 * for the group grids), and row j of Hinv's block is read into shared memory
 * once for all the tile's rows, the next row fetched during the current
 * column's update so its latency is hidden, like the next column's grid. Per
 * column: (0) SparseGPT only, where a prune group starts: the group's mask
 * (every (row, column) pair counts the columns that sort before it by (score,
 * column) and is pruned when fewer than prune_count do), (1) group grids where
 * a group starts (one warp per row), (2) quantize the column (one thread per
 * row; a masked entry, the tile's mask kept in shared memory too, is quantized
 * as 0), (3) spread the error over the block's later columns (one warp per
 * row); a barrier after each, none after (0) and (1) where nothing starts. The
 * arithmetic matches the CPU reference operation for operation (see
 * quant_math.cuh; no fused multiply-add), so masks, codes and weights agree
 * with it. */
#include "kernels/cuda/cuda_common.h" /* first: it includes kernels.h as C */
#include "kernels/block_walk.h"
#include "kernels/cuda/quant_math.cuh"

#define THREADS 256
#define TILE_ROWS 16

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

/* The mask of the prune group of pg columns that starts at tile column jj: for each
 * of the tile's rows, pruned[r][c] = 1 for the prune_count columns of lowest score
 * w²/Hinv_cc² (w as the walk has left the tile; equal scores: the lower column first).
 * score is [rows][ncols] scratch. Barriers inside: every thread of the block must call it. */
__device__ inline void tile_prune_group(const float *w, const float *h_diag, float *score, uint8_t *pruned,
                                        int rows_here, int ncols, int jj, int pg, int prune_count)
{
    for (int idx = threadIdx.x; idx < rows_here * pg; idx += blockDim.x) {
        int r = idx / pg, c = jj + idx % pg;
        float x = w[r * ncols + c];
        score[r * ncols + c] = __fdiv_rn(__fmul_rn(x, x), __fmul_rn(h_diag[c], h_diag[c]));
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < rows_here * pg; idx += blockDim.x) {
        int r = idx / pg, c = jj + idx % pg;
        const float *s = score + r * ncols;
        float mine = s[c];
        int before = 0;
        for (int k = jj; k < jj + pg; k++)
            before += s[k] < mine || (s[k] == mine && k < c);
        pruned[r * ncols + c] = before < prune_count;
    }
    __syncthreads();
}

/* PRUNE: kn_sparsegpt_block's walk (the mask chosen per prune group); else kn_gptq_block's. */
template <bool PRUNE> __global__ void __launch_bounds__(THREADS) walk_block_tiles(kn_block_walk a, int tile_rows)
{
    extern __shared__ float smem[];
    const int R = tile_rows, ncols = a.ncols, tile = R * ncols;
    const bool use_mask = PRUNE || a.masked, quantize = !PRUNE || a.quantize, groups_here = a.group_size > 0;
    float *w = smem;                                   /* [R][ncols]: the tile as the walk updates it */
    float *w_start = w + tile;                         /* [R][ncols] when grids are computed: the tile at the start */
    float *score = w_start + (groups_here ? tile : 0); /* [R][ncols] when PRUNE: scores of a prune group */
    float *h_rows = score + (PRUNE ? tile : 0);        /* [2][ncols]: Hinv[j][col0 ..], double-buffered */
    float *h_diag = h_rows + 2 * ncols;                /* [ncols] when PRUNE: Hinv_cc over the block */
    float *err = h_diag + (PRUNE ? ncols : 0);         /* [R] */
    float *row_scale = err + R;                        /* [R] */
    float *row_zero = row_scale + R;                   /* [R] */
    int *groups = (int *)(row_zero + R);               /* [ncols]: group_of_column over the block */
    uint8_t *mask = (uint8_t *)(groups + ncols);       /* [R][ncols] when PRUNE or a.masked: entries taken as 0 */
    const int row0 = blockIdx.x * R;
    const int rows_here = min(R, a.rows - row0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    for (int idx = threadIdx.x; idx < rows_here * ncols; idx += blockDim.x) {
        int r = idx / ncols, c = idx % ncols;
        float value = a.W[(size_t)(row0 + r) * a.n + a.col0 + c];
        w[idx] = value;
        if (groups_here)
            w_start[idx] = value;
        if (!PRUNE && a.masked)
            mask[idx] = a.masked[(size_t)(row0 + r) * a.n + a.col0 + c];
    }
    for (int k = threadIdx.x; k < ncols; k += blockDim.x) {
        h_rows[k] = a.Hinv[(size_t)a.col0 * a.n + a.col0 + k];
        if (PRUNE)
            h_diag[k] = a.Hinv[(size_t)(a.col0 + k) * a.n + a.col0 + k];
        groups[k] = quantize ? a.group_of_column[a.col0 + k] : 0;
    }
    if (quantize && threadIdx.x < rows_here) {
        size_t gi = (size_t)(row0 + threadIdx.x) * a.ldg + a.group_of_column[a.col0];
        row_scale[threadIdx.x] = a.scale[gi];
        row_zero[threadIdx.x] = a.zero[gi];
    }
    __syncthreads(); /* the steps below read rows of the tile that other warps loaded */
    for (int jj = 0; jj < ncols; jj++) {
        const int j = a.col0 + jj;
        const float *h_row = h_rows + (jj % 2) * ncols;
        float *h_next = h_rows + ((jj + 1) % 2) * ncols;
        const int g = groups[jj];
        /* The same for every thread of the block, so the barriers inside are safe. */
        if (PRUNE && jj % a.prune_group == 0)
            tile_prune_group(w, h_diag, score, mask, rows_here, ncols, jj, a.prune_group, a.prune_count);
        if (groups_here && j % a.group_size == 0) {
            tile_group_grids(a.W, w_start, row0, rows_here, ncols, a.n, a.col0, jj, min(a.group_size, a.n - j), g,
                             a.ldg, a.maxq, a.sym, a.scale, a.zero, row_scale, row_zero);
        }
        if (threadIdx.x < rows_here) {
            int r = threadIdx.x;
            float wj = w[r * ncols + jj];
            float q = use_mask && mask[r * ncols + jj] ? 0.0f : wj;
            if (quantize) {
                uint8_t code;
                q = quantize_value(q, row_scale[r], row_zero[r], a.maxq, &code);
                a.codes[(size_t)(row0 + r) * a.n + j] = code;
            }
            float e = __fdiv_rn(__fsub_rn(wj, q), h_row[jj]);
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
        if (quantize && jj + 1 < ncols && threadIdx.x < rows_here) {
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

/* Shared memory of one tile, as walk_block_tiles lays it out. */
static size_t smem_bytes(int tile_rows, int ncols, bool groups_here, bool prune, bool masked)
{
    size_t tile = (size_t)tile_rows * ncols;
    return sizeof(float) * ((1 + groups_here + prune) * tile + (2 + prune) * (size_t)ncols + 3 * (size_t)tile_rows) +
           sizeof(int) * (size_t)ncols + (prune || masked ? tile : 0);
}

/* Launches the walk over b.rows rows in tiles of up to TILE_ROWS rows (fewer where a
 * tile would not fit in the device's shared memory). */
template <bool PRUNE> static sq_status launch_walk(const kn_block_walk &b, const char *who)
{
    int device = 0, smem_limit = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    bool groups_here = b.group_size > 0, masked = b.masked != NULL;
    int tile_rows = TILE_ROWS;
    while (tile_rows > 1 && smem_bytes(tile_rows, b.ncols, groups_here, PRUNE, masked) > (size_t)smem_limit)
        tile_rows /= 2;
    size_t smem = smem_bytes(tile_rows, b.ncols, groups_here, PRUNE, masked);
    if (smem > (size_t)smem_limit)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: a block of %d columns needs %zu bytes of shared memory, more than "
                       "the device's %d", who, b.ncols, smem, smem_limit);
    CUDA_CHECK(cudaFuncSetAttribute(walk_block_tiles<PRUNE>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    walk_block_tiles<PRUNE><<<(b.rows + tile_rows - 1) / tile_rows, THREADS, smem>>>(b, tile_rows);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

static sq_status check_groups_of_block(const int32_t *group_of_column, int ldg, int col0, int ncols, const char *who)
{
    if (ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad group count ldg=%d", who, ldg);
    return kn_cuda_check_indices(group_of_column + col0, (size_t)ncols, ldg, who, "group_of_column[col0 ..]");
}

extern "C" sq_status kn_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                                   int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                                   int rows, int n, int col0, int ncols, int bits, bool sym,
                                   const uint8_t *masked)
{
    kn_block_walk b;
    SQ_TRY(kn_gptq_block_walk(&b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups, group_size,
                              rows, n, col0, ncols, bits, sym, masked));
    SQ_TRY(check_groups_of_block(group_of_column, ldg, col0, ncols, "kn_gptq_block"));
    return rows == 0 ? SQ_OK : launch_walk<false>(b, "kn_gptq_block");
}

extern "C" sq_status kn_sparsegpt_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale,
                                        float *zero, int ldg, const int32_t *group_of_column, bool compute_groups,
                                        int group_size, int rows, int n, int col0, int ncols, int bits, bool sym,
                                        int prune_group, int prune_count)
{
    kn_block_walk b;
    SQ_TRY(kn_sparsegpt_block_walk(&b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups,
                                   group_size, rows, n, col0, ncols, bits, sym, prune_group, prune_count));
    if (b.quantize)
        SQ_TRY(check_groups_of_block(group_of_column, ldg, col0, ncols, "kn_sparsegpt_block"));
    return rows == 0 ? SQ_OK : launch_walk<true>(b, "kn_sparsegpt_block");
}
