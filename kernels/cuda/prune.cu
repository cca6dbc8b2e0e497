/* prune.cu (CUDA backend): pruning by lowest score (Wanda, magnitude), the
 * zero mask GPTQ keeps (kn_mark_zeros) and the SparseGPT block (kernels.h
 * gives the exact steps of each).
 *
 * kn_prune_lowest sorts each (row, group) segment of scores with CUB's stable
 * segmented sort — columns go in by index, so equal scores keep the lower
 * column first, as the CPU backend's (score, column) order does — and zeroes
 * the first `count` of each segment. Rows are taken in chunks so the sort's
 * buffers stay small whatever the layer's size.
 *
 * kn_sparsegpt_block is gptq.cu's tile walk (a tile of rows per thread block,
 * the tile in shared memory, Hinv's next row fetched during the current
 * column's update) plus the mask: where a prune group starts, every (row,
 * column) pair of the group counts the columns that sort before it by
 * (score, column) and is pruned when fewer than prune_count do. The
 * arithmetic matches the CPU reference operation for operation (no fused
 * multiply-add), so masks, codes and weights agree with it. */
#include <cub/device/device_segmented_sort.cuh>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/quant_math.cuh"

#define THREADS 256
#define TILE_ROWS 16
/* Scores sorted at once by kn_prune_lowest (whole rows, at least one). */
#define SORT_CHUNK (1 << 22)

/* ---- kn_prune_lowest ---------------------------------------------------- */

__global__ void score_columns(float *score, int32_t *column, const float *W, const float *col_scale, int n,
                              int group, size_t total)
{
    GRID_STRIDE(idx, total)
    {
        float w = fabsf(W[idx]);
        int c = (int)(idx % n);
        score[idx] = col_scale ? __fmul_rn(w, col_scale[c]) : w;
        column[idx] = c % group;
    }
}

/* sorted_column holds each segment's columns in ascending score order. */
__global__ void zero_lowest(float *W, const int32_t *sorted_column, int group, int count, size_t total)
{
    GRID_STRIDE(idx, total)
    {
        if ((int)(idx % group) < count)
            W[idx - idx % group + sorted_column[idx]] = 0.0f;
    }
}

__global__ void segment_offsets(int *offsets, int group, int segments)
{
    GRID_STRIDE(i, (size_t)segments + 1) offsets[i] = (int)i * group;
}

/* Sort buffers of one chunk. */
typedef struct {
    float *score, *sorted_score;
    int32_t *column, *sorted_column;
    int *offsets;
    void *temp;
    size_t temp_bytes;
} sort_buffers;

static void free_sort_buffers(sort_buffers *b)
{
    cudaFree(b->score), cudaFree(b->sorted_score), cudaFree(b->column), cudaFree(b->sorted_column);
    cudaFree(b->offsets), cudaFree(b->temp);
}

static sq_status alloc_sort_buffers(sort_buffers *b, size_t items, int segments)
{
    CUDA_CHECK(cudaMalloc((void **)&b->score, items * sizeof(float)));
    CUDA_CHECK(cudaMalloc((void **)&b->sorted_score, items * sizeof(float)));
    CUDA_CHECK(cudaMalloc((void **)&b->column, items * sizeof(int32_t)));
    CUDA_CHECK(cudaMalloc((void **)&b->sorted_column, items * sizeof(int32_t)));
    CUDA_CHECK(cudaMalloc((void **)&b->offsets, ((size_t)segments + 1) * sizeof(int)));
    CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(NULL, b->temp_bytes, b->score, b->sorted_score, b->column,
                                                         b->sorted_column, (int64_t)items, segments, b->offsets,
                                                         b->offsets + 1));
    CUDA_CHECK(cudaMalloc(&b->temp, b->temp_bytes ? b->temp_bytes : 1));
    return SQ_OK;
}

/* Prune rows [row0, row0 + rows) of W; the buffers hold at least that many rows. */
static sq_status prune_chunk(float *W, const float *col_scale, int rows, int n, int group, int count,
                             sort_buffers *b)
{
    size_t items = (size_t)rows * n;
    int segments = (int)(items / group);
    unsigned blocks = kn_cuda_blocks(items, THREADS);
    segment_offsets<<<kn_cuda_blocks((size_t)segments + 1, THREADS), THREADS>>>(b->offsets, group, segments);
    CUDA_CHECK_LAUNCH();
    score_columns<<<blocks, THREADS>>>(b->score, b->column, W, col_scale, n, group, items);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(b->temp, b->temp_bytes, b->score, b->sorted_score,
                                                         b->column, b->sorted_column, (int64_t)items, segments,
                                                         b->offsets, b->offsets + 1));
    zero_lowest<<<blocks, THREADS>>>(W, b->sorted_column, group, count, items);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_prune_lowest(float *W, const float *col_scale, int rows, int n, int group, int count)
{
    if (rows < 0 || n <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_prune_lowest: bad shape rows=%d n=%d", rows, n);
    if (group <= 0 || n % group != 0 || count < 0 || count > group)
        return sq_fail(SQ_ERR_ARG, "kn_prune_lowest: %d of every %d columns cannot be pruned from %d", count, group,
                       n);
    if (rows == 0 || count == 0)
        return SQ_OK;
    int chunk_rows = SORT_CHUNK / n > 0 ? SORT_CHUNK / n : 1;
    if (chunk_rows > rows)
        chunk_rows = rows;
    sort_buffers b = {};
    sq_status st = alloc_sort_buffers(&b, (size_t)chunk_rows * n, (int)((size_t)chunk_rows * n / group));
    for (int r0 = 0; st == SQ_OK && r0 < rows; r0 += chunk_rows) {
        int here = rows - r0 < chunk_rows ? rows - r0 : chunk_rows;
        st = prune_chunk(W + (size_t)r0 * n, col_scale, here, n, group, count, &b);
    }
    free_sort_buffers(&b);
    return st;
}

/* ---- kn_mark_zeros ------------------------------------------------------- */

__global__ void mark_zeros(uint8_t *mask, const float *x, size_t n)
{
    GRID_STRIDE(i, n) mask[i] = x[i] == 0.0f;
}

extern "C" sq_status kn_mark_zeros(uint8_t *mask, const float *x, size_t n)
{
    if (n == 0)
        return SQ_OK;
    mark_zeros<<<kn_cuda_blocks(n, THREADS), THREADS>>>(mask, x, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

/* ---- kn_sparsegpt_block -------------------------------------------------- */

struct sparsegpt_args {
    float *W;
    uint8_t *codes;
    float *Err;
    const float *Hinv;
    float *scale, *zero;
    const int32_t *group_of_column;
    int ldg, group_size, rows, n, col0, ncols, tile_rows, prune_group, prune_count;
    bool quantize, groups_here, sym;
    float maxq;
};

__global__ void __launch_bounds__(THREADS) sparsegpt_block_tiles(sparsegpt_args a)
{
    extern __shared__ float smem[];
    const int R = a.tile_rows, ncols = a.ncols;
    float *w = smem;                                       /* [R][ncols]: the tile as the walk updates it */
    float *score = w + R * ncols;                          /* [R][ncols]: scores of the current prune group */
    float *w_start = score + R * ncols;                    /* [R][ncols] when groups_here: the tile at the start */
    float *h_rows = w_start + (a.groups_here ? R * ncols : 0); /* [2][ncols]: Hinv[j][col0 ..], double-buffered */
    float *h_diag = h_rows + 2 * ncols;                    /* [ncols]: Hinv_cc over the block */
    float *err = h_diag + ncols;                           /* [R] */
    float *row_scale = err + R;                            /* [R] */
    float *row_zero = row_scale + R;                       /* [R] */
    int *groups = (int *)(row_zero + R);                   /* [ncols]: group_of_column over the block */
    uint8_t *pruned = (uint8_t *)(groups + ncols);         /* [R][ncols] */
    const int row0 = blockIdx.x * R;
    const int rows_here = min(R, a.rows - row0);
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

    for (int idx = threadIdx.x; idx < rows_here * ncols; idx += blockDim.x) {
        int r = idx / ncols, c = idx % ncols;
        float value = a.W[(size_t)(row0 + r) * a.n + a.col0 + c];
        w[idx] = value;
        if (a.groups_here)
            w_start[idx] = value;
    }
    for (int k = threadIdx.x; k < ncols; k += blockDim.x) {
        h_rows[k] = a.Hinv[(size_t)a.col0 * a.n + a.col0 + k];
        h_diag[k] = a.Hinv[(size_t)(a.col0 + k) * a.n + a.col0 + k];
        groups[k] = a.quantize ? a.group_of_column[a.col0 + k] : 0;
    }
    if (a.quantize && threadIdx.x < rows_here) {
        size_t gi = (size_t)(row0 + threadIdx.x) * a.ldg + a.group_of_column[a.col0];
        row_scale[threadIdx.x] = a.scale[gi];
        row_zero[threadIdx.x] = a.zero[gi];
    }
    __syncthreads();
    for (int jj = 0; jj < ncols; jj++) {
        const int j = a.col0 + jj;
        const float *h_row = h_rows + (jj % 2) * ncols;
        float *h_next = h_rows + ((jj + 1) % 2) * ncols;
        const int g = groups[jj];
        /* The same for every thread of the block, so the barriers inside are safe. */
        if (jj % a.prune_group == 0) {
            const int pg = a.prune_group;
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
                pruned[r * ncols + c] = before < a.prune_count;
            }
            __syncthreads();
        }
        if (a.groups_here && j % a.group_size == 0) {
            tile_group_grids(a.W, w_start, row0, rows_here, ncols, a.n, a.col0, jj, min(a.group_size, a.n - j), g,
                             a.ldg, a.maxq, a.sym, a.scale, a.zero, row_scale, row_zero);
        }
        if (threadIdx.x < rows_here) {
            int r = threadIdx.x;
            float wj = w[r * ncols + jj];
            float q = pruned[r * ncols + jj] ? 0.0f : wj;
            if (a.quantize) {
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
        for (int k = jj + 1 + threadIdx.x; k < ncols; k += blockDim.x)
            h_next[k] = a.Hinv[(size_t)(j + 1) * a.n + a.col0 + k];
        if (a.quantize && jj + 1 < ncols && threadIdx.x < rows_here) {
            size_t gi = (size_t)(row0 + threadIdx.x) * a.ldg + groups[jj + 1];
            row_scale[threadIdx.x] = a.scale[gi];
            row_zero[threadIdx.x] = a.zero[gi];
        }
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

static size_t smem_bytes(int tile_rows, int ncols, bool groups_here)
{
    size_t tile = (size_t)tile_rows * ncols;
    return sizeof(float) * ((2 + groups_here) * tile + 3 * (size_t)ncols + 3 * (size_t)tile_rows) +
           sizeof(int) * (size_t)ncols + tile;
}

extern "C" sq_status kn_sparsegpt_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale,
                                        float *zero, int ldg, const int32_t *group_of_column, bool compute_groups,
                                        int group_size, int rows, int n, int col0, int ncols, int bits, bool sym,
                                        int prune_group, int prune_count)
{
    if (bits < 0 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: bits must be 0 or in [1, 8], got %d", bits);
    if (rows < 0 || ncols <= 0 || col0 < 0 || col0 + ncols > n)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: block [%d, %d) outside %d columns", col0, col0 + ncols, n);
    if (prune_group <= 0 || ncols % prune_group != 0 || prune_count < 0 || prune_count > prune_group)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: %d of every %d columns cannot be pruned from %d",
                       prune_count, prune_group, ncols);
    if (bits > 0) {
        if (ldg <= 0)
            return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: bad group count ldg=%d", ldg);
        SQ_TRY(kn_cuda_check_indices(group_of_column + col0, (size_t)ncols, ldg, "kn_sparsegpt_block",
                                     "group_of_column[col0 ..]"));
    }
    if (rows == 0)
        return SQ_OK;

    bool groups_here = bits > 0 && compute_groups && group_size > 0;
    int device = 0, smem_limit = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    int tile_rows = TILE_ROWS;
    while (tile_rows > 1 && smem_bytes(tile_rows, ncols, groups_here) > (size_t)smem_limit)
        tile_rows /= 2;
    size_t smem = smem_bytes(tile_rows, ncols, groups_here);
    if (smem > (size_t)smem_limit)
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_sparsegpt_block: a block of %d columns needs %zu bytes of shared "
                       "memory, more than the device's %d", ncols, smem, smem_limit);
    CUDA_CHECK(cudaFuncSetAttribute(sparsegpt_block_tiles, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));

    sparsegpt_args a;
    a.W = W;
    a.codes = codes;
    a.Err = Err;
    a.Hinv = Hinv;
    a.scale = scale;
    a.zero = zero;
    a.group_of_column = group_of_column;
    a.ldg = ldg;
    a.group_size = group_size;
    a.rows = rows;
    a.n = n;
    a.col0 = col0;
    a.ncols = ncols;
    a.tile_rows = tile_rows;
    a.prune_group = prune_group;
    a.prune_count = prune_count;
    a.quantize = bits > 0;
    a.groups_here = groups_here;
    a.sym = sym;
    a.maxq = (float)((1 << (bits > 0 ? bits : 1)) - 1);
    sparsegpt_block_tiles<<<(rows + tile_rows - 1) / tile_rows, THREADS, smem>>>(a);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
