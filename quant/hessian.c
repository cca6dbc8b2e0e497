/* hessian.c: per-linear Hessians accumulated sequence by sequence in fp64 (see hessian.h). */
#include <string.h>

#include "kernels/kernels.h"
#include "quant/hessian.h"

sq_status sq_hessian_init(sq_hessian *h, int cols)
{
    memset(h, 0, sizeof *h);
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: in_features must be positive, got %d", cols);
    size_t n = (size_t)cols * cols;
    h->cols = cols;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->sum, n * sizeof(double)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->scratch, n * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&h->H, n * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_zero(h->sum, n * sizeof(double)), fail);
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

sq_status sq_hessian_add(sq_hessian *h, const float *X, int rows, int nseq)
{
    if (nseq <= 0 || rows <= 0 || rows % nseq != 0)
        return sq_fail(SQ_ERR_ARG, "hessian: %d rows are not %d sequences of equal length", rows, nseq);
    if (!h->sum)
        return sq_fail(SQ_ERR_ARG, "hessian: already finished");
    int seq_rows = rows / nseq;
    for (int s = 0; s < nseq; s++) {
        SQ_TRY(kn_hessian_accumulate(h->scratch, X + (size_t)s * seq_rows * h->cols, seq_rows, h->cols, 1.0f, 0.0f));
        SQ_TRY(kn_accumulate_upper_f64(h->sum, h->scratch, h->cols));
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
    SQ_TRY(kn_scale_f64_to_f32(h->H, h->sum, 2.0 / (double)total_nsamples, (size_t)h->cols * h->cols));
    SQ_TRY(kn_symmetrize_upper(h->H, h->cols));
    h->nsamples = total_nsamples;
    kn_free(h->sum);
    kn_free(h->scratch);
    h->sum = NULL;
    h->scratch = NULL;
    return SQ_OK;
}
