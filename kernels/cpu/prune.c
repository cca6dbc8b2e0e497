/* prune.c (CPU backend): pruning by lowest score (Wanda, magnitude) and the
 * zero mask GPTQ keeps after a pruning step (SparseGPT's block is gptq.c's
 * walk). The lowest scores of a group are prune_mask.h's (score, column)
 * order, so ties always go to the lower column; rows are independent and
 * spread over OpenMP threads. */
#include <math.h>
#include <stdlib.h>

#include "kernels/block_walk.h"
#include "kernels/cpu/prune_mask.h"
#include "kernels/kernels.h"

sq_status kn_prune_lowest(float *W, const float *col_scale, int rows, int n, int group, int count)
{
    if (rows < 0 || n <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_prune_lowest: bad shape rows=%d n=%d", rows, n);
    SQ_TRY(kn_check_prune_groups(n, group, count, "kn_prune_lowest"));
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
