/* prune.c: Wanda and magnitude pruning over the kernels interface, and the
 * option checks and per-row zero counts shared with SparseGPT. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "quant/prune.h"

int sq_prune_count(const sq_sparse_options *opt, int cols)
{
    if (opt->prune_n > 0)
        return cols / opt->prune_m * opt->prune_n;
    return (int)floor(opt->sparsity * cols);
}

sq_status sq_sparse_options_check(const sq_sparse_options *opt, int rows, int cols, const char *who)
{
    if (rows <= 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: a %dx%d linear cannot be pruned", who, rows, cols);
    if (opt->prune_n > 0 || opt->prune_m > 0) {
        if (!(opt->prune_n > 0 && opt->prune_n < opt->prune_m))
            return sq_fail(SQ_ERR_ARG, "%s: pattern %d:%d must have 0 < N < M", who, opt->prune_n, opt->prune_m);
        if (cols % opt->prune_m != 0)
            return sq_fail(SQ_ERR_ARG, "%s: in_features %d is not a multiple of the pattern's M = %d", who, cols,
                           opt->prune_m);
    } else if (!(opt->sparsity >= 0 && opt->sparsity < 1)) {
        return sq_fail(SQ_ERR_ARG, "%s: sparsity must be in [0, 1), got %g", who, opt->sparsity);
    }
    return SQ_OK;
}

/* Prune `W` by lowest |W_ij| · col_scale[j] (col_scale device, or NULL). */
static sq_status prune_by_score(float *W, const float *col_scale, int rows, int cols, const sq_sparse_options *opt)
{
    if (opt->prune_n > 0)
        return kn_prune_lowest(W, col_scale, rows, cols, opt->prune_m, opt->prune_n);
    return kn_prune_lowest(W, col_scale, rows, cols, cols, sq_prune_count(opt, cols));
}

sq_status sq_wanda_prune(float *W, const float *H, int rows, int cols, const sq_sparse_options *opt)
{
    SQ_TRY(sq_sparse_options_check(opt, rows, cols, "wanda"));
    sq_status st = SQ_OK;
    float *norm = NULL;
    float *host = malloc((size_t)cols * sizeof(float));
    if (!host)
        return sq_fail(SQ_ERR_NOMEM, "wanda: cannot allocate %d input norms", cols);
    SQ_TRY_GOTO(st, kn_alloc((void **)&norm, (size_t)cols * sizeof(float)), done);
    /* ‖x_j‖ = sqrt(H_jj) up to the factor 2/n, which does not change the order. */
    SQ_TRY_GOTO(st, kn_diagonal(norm, H, cols), done);
    SQ_TRY_GOTO(st, kn_download(host, norm, (size_t)cols * sizeof(float)), done);
    for (int j = 0; j < cols; j++) {
        if (!(host[j] >= 0)) {
            st = sq_fail(SQ_ERR_NUMERIC, "wanda: Hessian diagonal %d is %g, not a sum of squares", j, host[j]);
            goto done;
        }
        host[j] = host[j] > 0 ? sqrtf(host[j]) : 0.0f; /* +0, never -0: both backends order it alike */
    }
    SQ_TRY_GOTO(st, kn_upload(norm, host, (size_t)cols * sizeof(float)), done);
    st = prune_by_score(W, norm, rows, cols, opt);
done:
    kn_free(norm);
    free(host);
    return st;
}

sq_status sq_magnitude_prune(float *W, int rows, int cols, const sq_sparse_options *opt)
{
    SQ_TRY(sq_sparse_options_check(opt, rows, cols, "magnitude"));
    return prune_by_score(W, NULL, rows, cols, opt);
}
