/* quant_result.c: option checks and storage for quantizer outputs. */
#include <stdlib.h>
#include <string.h>

#include "quant/quant_result.h"

sq_status sq_quant_options_check(const sq_quant_options *opt, int cols, const char *who)
{
    if (opt->bits != 2 && opt->bits != 3 && opt->bits != 4 && opt->bits != 8)
        return sq_fail(SQ_ERR_ARG, "%s: bits must be one of 2,3,4,8, got %d", who, opt->bits);
    if (opt->group_size != -1 && opt->group_size <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: group_size must be -1 or positive, got %d", who, opt->group_size);
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: in_features must be positive, got %d", who, cols);
    return SQ_OK;
}

sq_quant_options sq_sparse_joint_quant_options(const sq_sparse_options *opt)
{
    return (sq_quant_options){.bits = opt->bits,
                              .group_size = opt->group_size,
                              .sym = opt->sym,
                              .desc_act = false,
                              .static_groups = false,
                              .damp_percent = opt->damp_percent,
                              .block_size = opt->block_size,
                              .true_sequential = false};
}

sq_status sq_quant_result_alloc(sq_quant_result *res, int rows, int cols, int bits, int group_size, bool sym)
{
    memset(res, 0, sizeof *res);
    res->rows = rows;
    res->cols = cols;
    res->bits = bits;
    res->group_size = group_size;
    res->ngroups = group_size > 0 ? (cols + group_size - 1) / group_size : 1;
    res->sym = sym;
    size_t cells = (size_t)rows * cols, groups = (size_t)rows * res->ngroups;
    res->codes = calloc(cells ? cells : 1, 1);
    res->scales = calloc(groups, sizeof(float));
    res->zeros = calloc(groups, sizeof(float));
    res->g_idx = calloc((size_t)cols, sizeof(int32_t));
    if (!res->codes || !res->scales || !res->zeros || !res->g_idx) {
        sq_quant_result_free(res);
        return sq_fail(SQ_ERR_NOMEM, "cannot allocate quantizer output for a %dx%d linear", rows, cols);
    }
    return SQ_OK;
}

void sq_quant_result_free(sq_quant_result *res)
{
    free(res->codes);
    free(res->scales);
    free(res->zeros);
    free(res->g_idx);
    memset(res, 0, sizeof *res);
}
