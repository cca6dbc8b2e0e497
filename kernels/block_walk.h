/* block_walk.h: one GPTQ or SparseGPT block walk as both backends take it
 * (kernels/cpu/gptq.c, kernels/cuda/gptq.cu): the arguments of kn_gptq_block
 * and kn_sparsegpt_block checked alike, so that a call one backend refuses the
 * other refuses with the same message, and gathered into one struct; the
 * prune-group check also serves kn_prune_lowest (prune.c, prune.cu). Group
 * indices are checked by each backend where they live (host or device memory). */
#ifndef SQ_KERNELS_BLOCK_WALK_H
#define SQ_KERNELS_BLOCK_WALK_H

#include "kernels/kernels.h"

/* A block walk: columns [col0, col0 + ncols) of W[rows, n], how each column is rounded,
 * and which entries are taken as 0 (kernels.h gives the steps). */
typedef struct {
    float *W;
    uint8_t *codes;
    float *Err;
    const float *Hinv;
    float *scale, *zero;
    const int32_t *group_of_column;
    int ldg, rows, n, col0, ncols;
    int group_size; /* > 0: compute the grids of the groups that start in the block; 0: they are given */
    bool quantize;  /* round each column onto its grid (SparseGPT with bits 0 does not) */
    bool sym;
    float maxq;
    const uint8_t *masked;        /* [rows, n]: entries quantized as 0, or NULL (kn_gptq_block) */
    int prune_group, prune_count; /* prune_group > 0: the mask is chosen as the walk goes (kn_sparsegpt_block) */
} kn_block_walk;

/* Refuses a split of n columns into groups of `group` that cannot prune `count` of each. */
static inline sq_status kn_check_prune_groups(int n, int group, int count, const char *who)
{
    if (group <= 0 || n % group != 0 || count < 0 || count > group)
        return sq_fail(SQ_ERR_ARG, "%s: %d of every %d columns cannot be pruned from %d", who, count, group, n);
    return SQ_OK;
}

/* Checks rows and the block, and fills what both walks share (bits 0: no rounding). */
static inline sq_status kn_block_walk_of(kn_block_walk *b, float *W, uint8_t *codes, float *Err, const float *Hinv,
                                         float *scale, float *zero, int ldg, const int32_t *group_of_column,
                                         bool compute_groups, int group_size, int rows, int n, int col0, int ncols,
                                         int bits, bool sym, const char *who)
{
    if (rows < 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad row count %d", who, rows);
    if (ncols <= 0 || col0 < 0 || col0 + ncols > n)
        return sq_fail(SQ_ERR_ARG, "%s: block [%d, %d) outside %d columns", who, col0, col0 + ncols, n);
    kn_block_walk walk = {
        .W = W, .codes = codes, .Err = Err, .Hinv = Hinv, .scale = scale, .zero = zero,
        .group_of_column = group_of_column, .ldg = ldg, .rows = rows, .n = n, .col0 = col0, .ncols = ncols,
        .group_size = bits > 0 && compute_groups && group_size > 0 ? group_size : 0, .quantize = bits > 0,
        .sym = sym, .maxq = (float)((1 << (bits > 0 ? bits : 1)) - 1), .masked = NULL, .prune_group = 0,
        .prune_count = 0,
    };
    *b = walk;
    return SQ_OK;
}

/* kn_gptq_block's arguments, checked (but group_of_column) and gathered. */
static inline sq_status kn_gptq_block_walk(kn_block_walk *b, float *W, uint8_t *codes, float *Err, const float *Hinv,
                                           float *scale, float *zero, int ldg, const int32_t *group_of_column,
                                           bool compute_groups, int group_size, int rows, int n, int col0,
                                           int ncols, int bits, bool sym, const uint8_t *masked)
{
    if (bits < 1 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "kn_gptq_block: bits must be in [1, 8], got %d", bits);
    SQ_TRY(kn_block_walk_of(b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups, group_size,
                            rows, n, col0, ncols, bits, sym, "kn_gptq_block"));
    b->masked = masked;
    return SQ_OK;
}

/* kn_sparsegpt_block's arguments, checked (but group_of_column) and gathered. */
static inline sq_status kn_sparsegpt_block_walk(kn_block_walk *b, float *W, uint8_t *codes, float *Err,
                                                const float *Hinv, float *scale, float *zero, int ldg,
                                                const int32_t *group_of_column, bool compute_groups, int group_size,
                                                int rows, int n, int col0, int ncols, int bits, bool sym,
                                                int prune_group, int prune_count)
{
    if (bits < 0 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "kn_sparsegpt_block: bits must be 0 or in [1, 8], got %d", bits);
    SQ_TRY(kn_block_walk_of(b, W, codes, Err, Hinv, scale, zero, ldg, group_of_column, compute_groups, group_size,
                            rows, n, col0, ncols, bits, sym, "kn_sparsegpt_block"));
    SQ_TRY(kn_check_prune_groups(ncols, prune_group, prune_count, "kn_sparsegpt_block"));
    b->prune_group = prune_group;
    b->prune_count = prune_count;
    return SQ_OK;
}

#endif
