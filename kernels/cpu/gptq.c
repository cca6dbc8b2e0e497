/* gptq.c (CPU backend): the column walk of one GPTQ block, written once for
 * kn_gptq_block and kn_sparsegpt_block (kernels.h gives the exact steps;
 * block_walk.h checks and gathers the arguments). SparseGPT's block is the
 * same walk with a mask chosen where each prune group starts (prune_mask.h)
 * and, with bits 0, no rounding; the grid arithmetic is quant_math.h's. Every
 * output row is independent, so rows are spread over OpenMP threads. */
#include <stdlib.h>
#include <string.h>

#include "kernels/block_walk.h"
#include "kernels/cpu/prune_mask.h"
#include "kernels/cpu/quant_math.h"
#include "kernels/kernels.h"

/* One thread's buffers, reused for every row it walks. */
typedef struct {
    float *start;    /* [ncols + group_size]: the row as the block started (group grids), or NULL */
    float *score;    /* [prune_group] */
    int32_t *order;  /* [prune_group] */
    uint8_t *pruned; /* [ncols]: the chosen mask over the block */
} row_scratch;

/* Marks, in s->pruned, the prune_count columns of lowest w²/Hinv_cc² in the prune group
 * that starts at column j (w as the walk has left the row). */
static void choose_pruned(const kn_block_walk *b, const float *w, int j, row_scratch *s)
{
    for (int c = 0; c < b->prune_group; c++) {
        float d = b->Hinv[(size_t)(j + c) * b->n + j + c];
        s->score[c] = (w[j + c] * w[j + c]) / (d * d);
    }
    mark_lowest(s->score, b->prune_group, b->prune_count, s->order, s->pruned + (j - b->col0));
}

static void walk_row(const kn_block_walk *b, int r, row_scratch *s)
{
    const int n = b->n, col0 = b->col0, end = b->col0 + b->ncols;
    float *w = b->W + (size_t)r * n;
    if (s->start) {
        int copied = col0 + b->ncols + b->group_size <= n ? b->ncols + b->group_size : n - col0;
        memcpy(s->start, w + col0, (size_t)copied * sizeof(float));
    }
    /* mask[j - col0] nonzero: column j is taken as 0. */
    const uint8_t *mask = b->prune_group > 0 ? s->pruned : b->masked ? b->masked + (size_t)r * n + col0 : NULL;
    for (int j = col0; j < end; j++) {
        if (b->prune_group > 0 && (j - col0) % b->prune_group == 0)
            choose_pruned(b, w, j, s);
        float q = mask && mask[j - col0] ? 0.0f : w[j];
        if (b->quantize) {
            size_t gi = (size_t)r * b->ldg + b->group_of_column[j];
            if (b->group_size > 0 && j % b->group_size == 0) {
                int width = j + b->group_size <= n ? b->group_size : n - j;
                grid_of_row(s->start + (j - col0), width, b->maxq, b->sym, &b->scale[gi], &b->zero[gi]);
            }
            q = quantize_value(q, b->scale[gi], b->zero[gi], b->maxq, &b->codes[(size_t)r * n + j]);
        }
        const float *h = b->Hinv + (size_t)j * n;
        float err = (w[j] - q) / h[j];
        for (int k = j + 1; k < end; k++)
            w[k] -= err * h[k];
        b->Err[(size_t)r * b->ncols + (j - col0)] = err;
        w[j] = q;
    }
}

static sq_status walk_block(const kn_block_walk *b, const char *who)
{
    const bool prune = b->prune_group > 0;
    sq_status st = SQ_OK;
#pragma omp parallel
    {
        row_scratch s = {
            .start = b->group_size > 0 ? malloc(((size_t)b->ncols + b->group_size) * sizeof(float)) : NULL,
            .score = prune ? malloc((size_t)b->prune_group * sizeof(float)) : NULL,
            .order = prune ? malloc((size_t)b->prune_group * sizeof(int32_t)) : NULL,
            .pruned = prune ? malloc((size_t)b->ncols) : NULL,
        };
        bool ready = (s.start || b->group_size == 0) && (!prune || (s.score && s.order && s.pruned));
        if (!ready) {
#pragma omp critical
            st = sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate a row buffer", who);
        }
#pragma omp for
        for (int r = 0; r < b->rows; r++)
            if (ready)
                walk_row(b, r, &s);
        free(s.start), free(s.score), free(s.order), free(s.pruned);
    }
    return st;
}

static sq_status check_groups_of_block(const int32_t *group_of_column, int ldg, int col0, int ncols, const char *who)
{
    for (int j = col0; j < col0 + ncols; j++)
        if (group_of_column[j] < 0 || group_of_column[j] >= ldg)
            return sq_fail(SQ_ERR_ARG, "%s: column %d has group %d outside [0, %d)", who, j, group_of_column[j],
                           ldg);
    return SQ_OK;
}

sq_status kn_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero, int ldg,
                        const int32_t *group_of_column, bool compute_groups, int group_size, int rows, int n,
                        int col0, int ncols, int bits, bool sym, const uint8_t *masked)
{
    kn_block_walk b;
    SQ_TRY(kn_gptq_block_walk(&b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups, group_size,
                              rows, n, col0, ncols, bits, sym, masked));
    SQ_TRY(check_groups_of_block(group_of_column, ldg, col0, ncols, "kn_gptq_block"));
    return walk_block(&b, "kn_gptq_block");
}

sq_status kn_sparsegpt_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                             int ldg, const int32_t *group_of_column, bool compute_groups, int group_size,
                             int rows, int n, int col0, int ncols, int bits, bool sym, int prune_group,
                             int prune_count)
{
    kn_block_walk b;
    SQ_TRY(kn_sparsegpt_block_walk(&b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups,
                                   group_size, rows, n, col0, ncols, bits, sym, prune_group, prune_count));
    if (b.quantize)
        SQ_TRY(check_groups_of_block(group_of_column, ldg, col0, ncols, "kn_sparsegpt_block"));
    return walk_block(&b, "kn_sparsegpt_block");
}
