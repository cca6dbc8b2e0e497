/* hessian.c: per-linear Hessian accumulation with AutoGPTQ's running normalisation. */
#include <string.h>

#include "kernels/kernels.h"
#include "quant/hessian.h"

sq_status sq_hessian_init(sq_hessian *h, int cols)
{
    memset(h, 0, sizeof *h);
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: in_features must be positive, got %d", cols);
    size_t n = (size_t)cols * cols;
    SQ_TRY(kn_alloc((void **)&h->H, n * sizeof(float)));
    h->cols = cols;
    return kn_fill(h->H, 0.0f, n);
}

void sq_hessian_free(sq_hessian *h)
{
    kn_free(h->H);
    memset(h, 0, sizeof *h);
}

sq_status sq_hessian_add(sq_hessian *h, const float *X, int rows, int nseq)
{
    if (nseq <= 0 || rows <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: batch needs positive rows and sequences (rows %d, sequences %d)", rows,
                       nseq);
    double before = (double)h->nsamples;
    h->nsamples += nseq;
    double after = (double)h->nsamples;
    return kn_hessian_accumulate(h->H, X, rows, h->cols, (float)(2.0 / after), (float)(before / after));
}

sq_status sq_hessian_rescale_for_sum(sq_hessian *h, int64_t total_nsamples)
{
    if (total_nsamples < h->nsamples || total_nsamples <= 0)
        return sq_fail(SQ_ERR_ARG, "hessian: total samples %lld smaller than this rank's %lld",
                       (long long)total_nsamples, (long long)h->nsamples);
    float weight = (float)((double)h->nsamples / (double)total_nsamples);
    h->nsamples = total_nsamples;
    /* A product with no rows only scales: H = weight * H. */
    return kn_hessian_accumulate(h->H, h->H, 0, h->cols, 0.0f, weight);
}
