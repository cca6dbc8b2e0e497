/* quant_result.h: what a weight quantizer (GPTQ or RTN) produces for one linear
 * W[out, in]: integer codes in the original column order, a scale and zero per
 * (output row, group), and g_idx mapping each input column to its group —
 * everything the GPTQ checkpoint format packs (see quant/gptq_pack.h). */
#ifndef SQ_QUANT_RESULT_H
#define SQ_QUANT_RESULT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/prune.h"

/* rtn and gptq. Defaults: bits 4, group_size 128, sym true, desc_act false,
 * static_groups false, damp_percent 0.01, block_size 128, true_sequential true,
 * preserve_sparsity true when an earlier step of the job pruned, else false. */
typedef struct {
    int bits;          /* 2, 3, 4, 8 */
    int group_size;    /* -1 (per channel) or a positive integer */
    bool sym;
    bool desc_act;     /* gptq only */
    bool static_groups;/* gptq only */
    double damp_percent;   /* gptq only, (0, 1) */
    int block_size;        /* gptq only */
    bool true_sequential;  /* gptq only */
    bool preserve_sparsity;/* gptq only: keep the input's zeros (rtn keeps them anyway) */
    double avg_bits;       /* > 0: mixed precision, per-linear bits from candidate_bits under this
                              parameter-weighted average (quant/mixed_precision.h); `bits` then
                              names the width most linears got */
    int candidate_bits[4]; /* ascending, distinct, from 2,3,4,8 (default all four) */
    int n_candidates;
} sq_quant_options;

typedef struct {
    int rows;        /* out_features */
    int cols;        /* in_features */
    int bits;
    int group_size;  /* as requested: -1 means one group per row */
    int ngroups;     /* ceil(cols / group_size), or 1 */
    bool sym;
    uint8_t *codes;  /* host [rows, cols]: q in [0, 2^bits - 1], W ≈ scale * (q - zero) */
    float *scales;   /* host [rows, ngroups] */
    float *zeros;    /* host [rows, ngroups], integer valued */
    int32_t *g_idx;  /* host [cols]: group of each input column */
    double loss;     /* GPTQ: Σ err²/2 as the reference reports it; RTN: 0 */
} sq_quant_result;

/* Check bits (2, 3, 4, 8), group_size (-1 or positive), block size and damping
 * of `opt` for a linear with `cols` inputs; `who` prefixes messages. */
sq_status sq_quant_options_check(const sq_quant_options *opt, int cols, const char *who);

/* The quantization a sparsegpt step with bits > 0 applies jointly with pruning,
 * as GPTQ options (bits, group_size, sym, damp_percent, block_size; no act-order,
 * no static groups, one solve per layer as the SparseGPT reference does). */
sq_quant_options sq_sparse_joint_quant_options(const sq_sparse_options *opt);

/* Allocate the host arrays for a rows×cols linear (all zero). */
sq_status sq_quant_result_alloc(sq_quant_result *res, int rows, int cols, int bits, int group_size, bool sym);
void sq_quant_result_free(sq_quant_result *res);

#endif
