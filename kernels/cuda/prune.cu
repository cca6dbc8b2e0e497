/* prune.cu (CUDA backend): pruning by lowest score (Wanda, magnitude) and the
 * zero mask GPTQ keeps (kn_mark_zeros); kernels.h gives the exact steps of
 * each, and SparseGPT's block is gptq.cu's walk.
 *
 * kn_prune_lowest sorts each (row, group) segment of scores with CUB's stable
 * segmented sort — columns go in by index, so equal scores keep the lower
 * column first, as the CPU backend's (score, column) order does — and zeroes
 * the first `count` of each segment. Rows are taken in chunks so the sort's
 * buffers stay small whatever the layer's size. */
#include <cub/device/device_segmented_sort.cuh>

#include "kernels/cuda/cuda_common.h" /* first: it includes kernels.h as C */
#include "kernels/block_walk.h"

#define THREADS 256
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
    kn_free(b->score), kn_free(b->sorted_score), kn_free(b->column), kn_free(b->sorted_column);
    kn_free(b->offsets), kn_free(b->temp);
}

static sq_status alloc_sort_buffers(sort_buffers *b, size_t items, int segments)
{
    SQ_TRY(kn_alloc((void **)&b->score, items * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->sorted_score, items * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->column, items * sizeof(int32_t)));
    SQ_TRY(kn_alloc((void **)&b->sorted_column, items * sizeof(int32_t)));
    SQ_TRY(kn_alloc((void **)&b->offsets, ((size_t)segments + 1) * sizeof(int)));
    CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(NULL, b->temp_bytes, b->score, b->sorted_score, b->column,
                                                         b->sorted_column, (int64_t)items, segments, b->offsets,
                                                         b->offsets + 1));
    SQ_TRY(kn_alloc(&b->temp, b->temp_bytes ? b->temp_bytes : 1));
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
    SQ_TRY(kn_check_prune_groups(n, group, count, "kn_prune_lowest"));
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
