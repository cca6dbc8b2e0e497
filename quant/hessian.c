/* hessian.c: per-linear Hessians accumulated sequence by sequence in exact fixed point (see hessian.h). */
#include <string.h>

#include "kernels/fixed_sum.h"
#include "kernels/kernels.h"
#include "quant/hessian.h"

sq_status sq_hessian_init(sq_hessian *h, int cols)
{
    memset(h, 0, sizeof *h);
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: in_features must be positive, got %d", cols);
    size_t n = (size_t)cols * cols, fit = SQ_HESSIAN_SCRATCH_BYTES / (n * sizeof(float));
    h->cols = cols;
    h->batch = fit < 1 ? 1 : fit > SQ_HESSIAN_BATCH_MAX ? SQ_HESSIAN_BATCH_MAX : (int)fit;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->sum, sq_hessian_sum_count(h) * sizeof(int64_t)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->scratch, (size_t)h->batch * n * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->H, n * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_zero(h->sum, sq_hessian_sum_count(h) * sizeof(int64_t)), fail);
    return SQ_OK;
fail:
    sq_hessian_free(h);
    return st;
}

void sq_hessian_free(sq_hessian *h)
{
    kn_free(h->sum);
    kn_free(h->scratch);
    kn_free(h->H);
    memset(h, 0, sizeof *h);
}

size_t sq_hessian_sum_count(const sq_hessian *h) { return (size_t)KN_FIXED_LANES * h->cols * h->cols; }

sq_status sq_hessian_add(sq_hessian *h, const float *X, int rows, int nseq)
{
    if (nseq <= 0 || rows <= 0 || rows % nseq != 0)
        return sq_fail(SQ_ERR_ARG, "hessian: %d rows are not %d sequences of equal length", rows, nseq);
    if (!h->sum)
        return sq_fail(SQ_ERR_ARG, "hessian: already finished");
    if (h->nsamples + nseq > KN_FIXED_MAX_ADDENDS)
        return sq_fail(SQ_ERR_ARG, "hessian: more than %d sequences", KN_FIXED_MAX_ADDENDS);
    int seq_rows = rows / nseq;
    size_t n = (size_t)h->cols * h->cols;
    for (int s0 = 0; s0 < nseq; s0 += h->batch) {
        int count = nseq - s0 < h->batch ? nseq - s0 : h->batch;
        for (int c = 0; c < count; c++)
            SQ_TRY(kn_hessian_upper(h->scratch + (size_t)c * n, X + (size_t)(s0 + c) * seq_rows * h->cols, seq_rows,
                                    h->cols));
        SQ_TRY(kn_fixed_accumulate_upper(h->sum, h->scratch, h->cols, count, n));
    }
    h->nsamples += nseq;
    return SQ_OK;
}

sq_status sq_hessian_finish(sq_hessian *h, int64_t total_nsamples)
{
    if (total_nsamples < h->nsamples || total_nsamples <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: total samples %lld smaller than this rank's %lld",
                       (long long)total_nsamples, (long long)h->nsamples);
    if (!h->sum)
        return sq_fail(SQ_ERR_ARG, "hessian: already finished");
    if (total_nsamples > KN_FIXED_MAX_ADDENDS)
        return sq_fail(SQ_ERR_ARG, "hessian: more than %d sequences", KN_FIXED_MAX_ADDENDS);
    sq_status st = kn_fixed_to_f32_symmetric(h->H, h->sum, 2.0 / (double)total_nsamples, h->cols);
    if (st != SQ_OK)
        return sq_fail_context(st, "Hessian of %d inputs", h->cols);
    h->nsamples = total_nsamples;
    kn_free(h->sum);
    kn_free(h->scratch);
    h->sum = NULL;
    h->scratch = NULL;
    return SQ_OK;
}
