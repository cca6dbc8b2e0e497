/* rtn.c: round-to-nearest quantization over the kernels interface. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/rtn.h"

void sq_rtn_scratch_free(sq_rtn_scratch *s)
{
    kn_free(s->scale), kn_free(s->zero), kn_free(s->groups), kn_free(s->codes);
    memset(s, 0, sizeof *s);
}

sq_status sq_rtn_scratch_alloc(sq_rtn_scratch *s, int rows, int cols, const sq_quant_options *opt)
{
    memset(s, 0, sizeof *s);
    if (rows <= 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "rtn: a %dx%d weight has nothing to quantize", rows, cols);
    int gs = opt->group_size > 0 ? opt->group_size : cols;
    *s = (sq_rtn_scratch){.rows = rows, .cols = cols, .ngroups = (cols + gs - 1) / gs, .group_size = gs};
    size_t ngrid = (size_t)rows * s->ngroups;
    int32_t *groups = malloc((size_t)cols * sizeof *groups);
    sq_status st = groups ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "rtn: cannot map %d columns", cols);
    for (int j = 0; st == SQ_OK && j < cols; j++)
        groups[j] = j / gs;
    SQ_TRY_GOTO(st, st, fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&s->scale, ngrid * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&s->zero, ngrid * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&s->groups, (size_t)cols * sizeof(int32_t)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&s->codes, (size_t)rows * cols), fail);
    SQ_TRY_GOTO(st, kn_upload(s->groups, groups, (size_t)cols * sizeof(int32_t)), fail);
    free(groups);
    return SQ_OK;
fail:
    free(groups);
    sq_rtn_scratch_free(s);
    return st;
}

sq_status sq_rtn_fake_quantize(float *W, const sq_quant_options *opt, sq_rtn_scratch *s)
{
    for (int g = 0; g < s->ngroups; g++) {
        int width = (g + 1) * s->group_size <= s->cols ? s->group_size : s->cols - g * s->group_size;
        SQ_TRY(kn_quant_grid(s->scale, s->zero, s->ngroups, g, W, s->rows, s->cols, g * s->group_size, width,
                             opt->bits, opt->sym));
    }
    return kn_quantize_rtn(W, s->codes, s->scale, s->zero, s->ngroups, s->groups, s->rows, s->cols, opt->bits);
}

sq_status sq_rtn_quantize(float *W, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res)
{
    memset(res, 0, sizeof *res);
    SQ_TRY(sq_quant_options_check(opt, cols, "rtn"));
    if (rows <= 0)
        return sq_fail(SQ_ERR_ARG, "rtn: out_features must be positive, got %d", rows);
    SQ_TRY(sq_quant_result_alloc(res, rows, cols, opt->bits, opt->group_size, opt->sym));
    sq_rtn_scratch s;
    sq_status st;
    SQ_TRY_GOTO(st, sq_rtn_scratch_alloc(&s, rows, cols, opt), fail);
    for (int j = 0; j < cols; j++)
        res->g_idx[j] = j / s.group_size;
    size_t ngrid = (size_t)rows * res->ngroups;
    SQ_TRY_GOTO(st, sq_rtn_fake_quantize(W, opt, &s), done);
    SQ_TRY_GOTO(st, kn_download(res->codes, s.codes, (size_t)rows * cols), done);
    SQ_TRY_GOTO(st, kn_download(res->scales, s.scale, ngrid * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_download(res->zeros, s.zero, ngrid * sizeof(float)), done);
done:
    sq_rtn_scratch_free(&s);
    if (st == SQ_OK)
        return SQ_OK;
fail:
    sq_quant_result_free(res);
    return st;
}
