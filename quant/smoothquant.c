/* smoothquant.c: SmoothQuant's scales and their folding into a norm and its
 * linears, over the kernels interface (see smoothquant.h). */
#include "quant/smoothquant.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

void sq_smooth_scales(const float *act_max, const float *weight_max, int n, double alpha, float *s)
{
    for (int j = 0; j < n; j++) {
        double w = weight_max[j] > SQ_SMOOTH_MIN ? weight_max[j] : SQ_SMOOTH_MIN;
        double v = pow(act_max[j], alpha) / pow(w, 1.0 - alpha);
        s[j] = (float)(v > SQ_SMOOTH_MIN ? v : SQ_SMOOTH_MIN);
    }
}

/* weight_max[j] = max |W_k[i, j]| over every row of every linear (device scratch, host result). */
static sq_status weight_ranges(float *const *W, const int *rows, int count, int n, float *weight_max)
{
    float *dev_max = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_max, (size_t)n * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_zero(dev_max, (size_t)n * sizeof(float)), done);
    for (int k = 0; k < count; k++)
        SQ_TRY_GOTO(st, kn_column_abs_max(dev_max, W[k], rows[k], n), done);
    st = kn_download(weight_max, dev_max, (size_t)n * sizeof(float));
done:
    kn_free(dev_max);
    return st;
}

sq_status sq_smooth_fold(const float *act_max, double alpha, float *norm, sq_dtype dtype, float *const *W,
                         const int *rows, int count, int n, float *s)
{
    if (n <= 0 || count <= 0 || !(alpha >= 0.0 && alpha <= 1.0))
        return sq_fail(SQ_ERR_ARG, "smoothquant: bad arguments n=%d count=%d alpha=%g", n, count, alpha);
    float *weight_max = malloc((size_t)n * sizeof *weight_max), *dev_s = NULL;
    void *stored = malloc((size_t)n * sq_dtype_size(dtype));
    sq_status st = weight_max && stored ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "smoothquant: out of memory");
    SQ_TRY_GOTO(st, st, done);
    SQ_TRY_GOTO(st, weight_ranges(W, rows, count, n, weight_max), done);
    sq_smooth_scales(act_max, weight_max, n, alpha, s);
    for (int j = 0; j < n; j++)
        norm[j] /= s[j];
    /* the norm as the checkpoint will store it, so the job computes with what it writes */
    SQ_TRY_GOTO(st, sq_convert_from_f32(stored, dtype, norm, (size_t)n), done);
    SQ_TRY_GOTO(st, sq_convert_to_f32(norm, stored, dtype, (size_t)n), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_s, (size_t)n * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_upload(dev_s, s, (size_t)n * sizeof(float)), done);
    for (int k = 0; k < count; k++)
        SQ_TRY_GOTO(st, kn_scale_columns(W[k], dev_s, rows[k], n), done);
done:
    kn_free(dev_s);
    free(weight_max);
    free(stored);
    return st;
}
