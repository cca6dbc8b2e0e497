/* rtn.c: round-to-nearest quantization over the kernels interface. */
#include <string.h>

#include "kernels/kernels.h"
#include "quant/rtn.h"

sq_status sq_rtn_quantize(float *W, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res)
{
    memset(res, 0, sizeof *res);
    SQ_TRY(sq_quant_options_check(opt, cols, "rtn"));
    if (rows <= 0)
        return sq_fail(SQ_ERR_ARG, "rtn: out_features must be positive, got %d", rows);
    SQ_TRY(sq_quant_result_alloc(res, rows, cols, opt->bits, opt->group_size, opt->sym));
    int gs = opt->group_size > 0 ? opt->group_size : cols;
    for (int j = 0; j < cols; j++)
        res->g_idx[j] = j / gs;

    sq_status st = SQ_OK;
    float *scale = NULL, *zero = NULL;
    int32_t *groups = NULL;
    uint8_t *codes = NULL;
    size_t ngrid = (size_t)rows * res->ngroups;
    SQ_TRY_GOTO(st, kn_alloc((void **)&scale, ngrid * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&zero, ngrid * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&groups, (size_t)cols * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&codes, (size_t)rows * cols), done);
    for (int g = 0; g < res->ngroups; g++) {
        int width = (g + 1) * gs <= cols ? gs : cols - g * gs;
        SQ_TRY_GOTO(st, kn_quant_grid(scale, zero, res->ngroups, g, W, rows, cols, g * gs, width, opt->bits, opt->sym),
                    done);
    }
    SQ_TRY_GOTO(st, kn_upload(groups, res->g_idx, (size_t)cols * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, kn_quantize_rtn(W, codes, scale, zero, res->ngroups, groups, rows, cols, opt->bits), done);
    SQ_TRY_GOTO(st, kn_download(res->codes, codes, (size_t)rows * cols), done);
    SQ_TRY_GOTO(st, kn_download(res->scales, scale, ngrid * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_download(res->zeros, zero, ngrid * sizeof(float)), done);
done:
    kn_free(scale), kn_free(zero), kn_free(groups), kn_free(codes);
    if (st != SQ_OK)
        sq_quant_result_free(res);
    return st;
}
