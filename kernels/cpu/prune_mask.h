/* prune_mask.h (CPU backend): which entries of a group a pruning step zeroes —
 * the `count` lowest scores, found by sorting the group's columns by (score,
 * column) so that ties always go to the lower column. Shared by prune.c
 * (Wanda, magnitude) and gptq.c (SparseGPT's mask, chosen as the walk goes). */
#ifndef SQ_KERNELS_CPU_PRUNE_MASK_H
#define SQ_KERNELS_CPU_PRUNE_MASK_H

#include <stdint.h>
#include <stdlib.h>

/* Ascending score, then ascending column (the sort key of every mask here). */
static inline int by_score_then_column(const void *a, const void *b, void *scores)
{
    const float *score = scores;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (score[i] != score[j])
        return score[i] < score[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* pruned[c] = 1 for the `count` lowest of score[0 .. group), 0 for the rest;
 * `order` is scratch of `group` entries. */
static inline void mark_lowest(const float *score, int group, int count, int32_t *order, uint8_t *pruned)
{
    for (int c = 0; c < group; c++)
        order[c] = c;
    qsort_r(order, (size_t)group, sizeof *order, by_score_then_column, (void *)score);
    for (int k = 0; k < group; k++)
        pruned[order[k]] = k < count;
}

#endif
