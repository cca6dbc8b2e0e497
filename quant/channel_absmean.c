/* channel_absmean.c: exact per-channel sums of |x| for AWQ (see channel_absmean.h). */
#include "quant/channel_absmean.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/fixed_sum.h"
#include "kernels/kernels.h"

sq_status sq_channel_absmean_init(sq_channel_absmean *a, int cols)
{
    memset(a, 0, sizeof *a);
    if (cols <= 0)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: in_features must be positive, got %d", cols);
    a->cols = cols;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&a->sum, sq_channel_absmean_sum_count(a) * sizeof(int64_t)), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&a->scratch, (size_t)SQ_ABSMEAN_BATCH * cols * sizeof(float)), fail);
    SQ_TRY_GOTO(st, kn_zero(a->sum, sq_channel_absmean_sum_count(a) * sizeof(int64_t)), fail);
    return SQ_OK;
fail:
    sq_channel_absmean_free(a);
    return st;
}

void sq_channel_absmean_free(sq_channel_absmean *a)
{
    kn_free(a->sum);
    kn_free(a->scratch);
    free(a->mean);
    memset(a, 0, sizeof *a);
}

size_t sq_channel_absmean_sum_count(const sq_channel_absmean *a) { return (size_t)KN_FIXED_LANES * a->cols; }

sq_status sq_channel_absmean_add(sq_channel_absmean *a, const float *X, int rows, int nseq)
{
    if (nseq <= 0 || rows <= 0 || rows % nseq != 0)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: %d rows are not %d sequences of equal length", rows, nseq);
    if (!a->sum)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: already finished");
    if (a->nseq + nseq > KN_FIXED_MAX_ADDENDS)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: more than %d sequences", KN_FIXED_MAX_ADDENDS);
    int seq_rows = rows / nseq;
    for (int s0 = 0; s0 < nseq; s0 += SQ_ABSMEAN_BATCH) {
        int count = nseq - s0 < SQ_ABSMEAN_BATCH ? nseq - s0 : SQ_ABSMEAN_BATCH;
        for (int c = 0; c < count; c++)
            SQ_TRY(kn_column_abs_sums(a->scratch + (size_t)c * a->cols, X + (size_t)(s0 + c) * seq_rows * a->cols,
                                      seq_rows, a->cols));
        SQ_TRY(kn_fixed_accumulate(a->sum, a->scratch, (size_t)a->cols, count, (size_t)a->cols));
    }
    a->nseq += nseq;
    return SQ_OK;
}

sq_status sq_channel_absmean_finish(sq_channel_absmean *a, int64_t total_tokens)
{
    if (!a->sum)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: already finished");
    if (total_tokens <= 0)
        return sq_fail(SQ_ERR_ARG, "channel mean |x|: no tokens");
    a->mean = malloc((size_t)a->cols * sizeof *a->mean);
    if (!a->mean)
        return sq_fail(SQ_ERR_NOMEM, "channel mean |x|: cannot hold %d means", a->cols);
    sq_status st = kn_fixed_to_f32(a->scratch, a->sum, 1.0 / (double)total_tokens, (size_t)a->cols);
    if (st == SQ_OK)
        st = kn_download(a->mean, a->scratch, (size_t)a->cols * sizeof(float));
    if (st != SQ_OK)
        return sq_fail_context(st, "mean |x| of %d inputs", a->cols);
    kn_free(a->sum);
    a->sum = NULL;
    return SQ_OK;
}
