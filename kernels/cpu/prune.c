/* prune.c (CPU backend): pruning by lowest score (Wanda, magnitude), the
 * zero mask GPTQ keeps after a pruning step, and the SparseGPT inner block
 * loop — kn_gptq_block's column walk with a mask chosen as the walk goes (see
 * kernels.h). The lowest scores of a group are found by
 * sorting its columns by (score, column), so ties always go to the lower
 * column; rows are independent and spread over OpenMP threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/quant_math.h"
#include "kernels/kernels.h"

/* Ascending score, then ascending column (the sort key of every mask here). */
static int by_score_then_column(const void *a, const void *b, void *scores)
{
    const float *score = scores;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (score[i] != score[j])
        return score[i] < score[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* pruned[c] = 1 for the `count` lowest of score[0 .. group), 0 for the rest;
 * `order` is scratch of `group` entries. */
static void mark_lowest(const float *score, int group, int count, int32_t *order, uint8_t *pruned)
{
    for (int c = 0; c < group; c++)
        order[c] = c;
    qsort_r(order, (size_t)group, sizeof *order, by_score_then_column, (void *)score);
    for (int k = 0; k < group; k++)
        pruned[order[k]] = k < count;
}

static sq_status check_groups(int n, int group, int count, const char *who)
{
    if (group <= 0 || n % group != 0 || count < 0 || count > group)
        return sq_fail(SQ_ERR_ARG, "%s: %d of every %d columns cannot be pruned from %d", who, count, group, n);
    return SQ_OK;
}

sq_status kn_prune_lowest(float *W, const float *col_scale, int rows, int n, int group, int count)
{
    if (rows < 0 || n <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_prune_lowest: bad shape rows=%d n=%d", rows, n);
    SQ_TRY(check_groups(n, group, count, "kn_prune_lowest"));
    sq_status st = SQ_OK;
#pragma omp parallel
    {
        float *score = malloc((size_t)group * sizeof(float));
        int32_t *order = malloc((size_t)group * sizeof(int32_t));
        uint8_t *pruned = malloc((size_t)group);
        if (!score || !order || !pruned) {
#pragma omp critical
            st = sq_fail(SQ_ERR_NOMEM, "kn_prune_lowest: cannot allocate a group of %d", group);
        }
#pragma omp for
        for (int r = 0; r < rows; r++) {
            if (!score || !order || !pruned)
                continue;
            for (int c0 = 0; c0 < n; c0 += group) {
                float *w = W + (size_t)r * n + c0;
                for (int c = 0; c < group; c++)
                    score[c] = col_scale ? fabsf(w[c]) * col_scale[c0 + c] : fabsf(w[c]);
                mark_lowest(score, group, count, order, pruned);
                for (int c = 0; c < group; c++)
                    if (pruned[c])
                        w[c] = 0.0f;
            }
        }
        free(score), free(order), free(pruned);
    }
    return st;
}

sq_status kn_mark_zeros(uint8_t *mask, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        mask[i] = x[i] == 0.0f;
    return SQ_OK;
}

/* Buffers of one row's walk through a SparseGPT block. */
typedef struct {
    float *start;    /* columns [col0, col0 + ncols + window) as the block started (group grids) */
    float *score;    /* [prune_group] */
    int32_t *order;  /* [prune_group] */
    uint8_t *pruned; /* [ncols] */
} row_scratch;

sq_status kn_sparsegpt_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                             int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                             int rows, int n, int col0, int ncols, int bits, bool sym, int prune_group,
                             int prune_count)
{
    if (bits < 0 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: bits must be 0 or in [1, 8], got %d", bits);
    if (rows < 0 || ncols <= 0 || col0 < 0 || col0 + ncols > n)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: block [%d, %d) outside %d columns", col0, col0 + ncols, n);
    SQ_TRY(check_groups(ncols, prune_group, prune_count, "kn_sparsegpt_block"));
    if (bits > 0)
        for (int j = col0; j < col0 + ncols; j++)
            if (group_of_column[j] < 0 || group_of_column[j] >= ldg)
                return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: column %d has group %d outside [0, %d)", j,
                               group_of_column[j], ldg);
    bool groups_here = bits > 0 && compute_groups && group_size > 0;
    int window = groups_here ? group_size : 0;
    float maxq = (float)((1 << bits) - 1);
    int end = col0 + ncols;
    sq_status st = SQ_OK;
#pragma omp parallel
    {
        row_scratch s = {
            .start = malloc(((size_t)ncols + window) * sizeof(float)),
            .score = malloc((size_t)prune_group * sizeof(float)),
            .order = malloc((size_t)prune_group * sizeof(int32_t)),
            .pruned = malloc((size_t)ncols),
        };
        bool ready = s.start && s.score && s.order && s.pruned;
        if (!ready) {
#pragma omp critical
            st = sq_fail(SQ_ERR_NOMEM, "kn_sparsegpt_block: cannot allocate a row buffer");
        }
#pragma omp for
        for (int r = 0; r < rows; r++) {
            if (!ready)
                continue;
            float *w = W + (size_t)r * n;
            int copied = ncols + window;
            if (col0 + copied > n)
                copied = n - col0;
            memcpy(s.start, w + col0, (size_t)copied * sizeof(float));
            for (int j = col0; j < end; j++) {
                if ((j - col0) % prune_group == 0) {
                    for (int c = 0; c < prune_group; c++) {
                        float d = Hinv[(size_t)(j + c) * n + j + c];
                        s.score[c] = (w[j + c] * w[j + c]) / (d * d);
                    }
                    mark_lowest(s.score, prune_group, prune_count, s.order, s.pruned + (j - col0));
                }
                float q = s.pruned[j - col0] ? 0.0f : w[j];
                if (bits > 0) {
                    size_t gi = (size_t)r * ldg + group_of_column[j];
                    if (groups_here && j % group_size == 0) {
                        int width = j + group_size <= n ? group_size : n - j;
                        grid_of_row(s.start + (j - col0), width, maxq, sym, &scale[gi], &zero[gi]);
                    }
                    q = quantize_value(q, scale[gi], zero[gi], maxq, &codes[(size_t)r * n + j]);
                }
                const float *h = Hinv + (size_t)j * n;
                float err = (w[j] - q) / h[j];
                for (int k = j + 1; k < end; k++)
                    w[k] -= err * h[k];
                Err[(size_t)r * ncols + (j - col0)] = err;
                w[j] = q;
            }
        }
        free(s.start), free(s.score), free(s.order), free(s.pruned);
    }
    return st;
}
