/* awq.c: AWQ's scale and clip searches over the kernels interface (see awq.h). */
#include "quant/awq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/rtn.h"

/* Device buffers of one search over a [rows, cols] weight. */
typedef struct {
    float *neg_w; /* −W */
    float *trial; /* the candidate, then its error ΔW */
    float *err_h; /* ΔW · H (blocks of H for the clip search) */
    double *dots; /* [rows, ngroups] */
    sq_rtn_scratch rtn;
} search_buffers;

static void buffers_free(search_buffers *b)
{
    kn_free(b->neg_w), kn_free(b->trial), kn_free(b->err_h), kn_free(b->dots);
    sq_rtn_scratch_free(&b->rtn);
    memset(b, 0, sizeof *b);
}

static sq_status buffers_alloc(search_buffers *b, const float *W, int rows, int cols, int ngroups,
                               const sq_quant_options *q)
{
    memset(b, 0, sizeof *b);
    size_t bytes = (size_t)rows * cols * sizeof(float);
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&b->neg_w, bytes), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&b->trial, bytes), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&b->err_h, bytes), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&b->dots, (size_t)rows * ngroups * sizeof(double)), fail);
    SQ_TRY_GOTO(st, sq_rtn_scratch_alloc(&b->rtn, rows, cols, q), fail);
    SQ_TRY_GOTO(st, kn_copy(b->neg_w, W, bytes), fail);
    SQ_TRY_GOTO(st, kn_scale(b->neg_w, -1.0f, (size_t)rows * cols), fail);
    return SQ_OK;
fail:
    buffers_free(b);
    return st;
}

/* The scales of grid point i (awq.h): t = max(mean^α, 1e-4), s = t / sqrt(max t · min t). */
static void scales_at(const float *mean, int cols, int i, int n_grid, float *s, float *inv)
{
    double alpha = (double)i / n_grid, tmax = 0.0, tmin = INFINITY;
    for (int c = 0; c < cols; c++) {
        double t = fmax(pow((double)mean[c], alpha), 1e-4);
        tmax = fmax(tmax, t);
        tmin = fmin(tmin, t);
    }
    double norm = sqrt(tmax * tmin);
    for (int c = 0; c < cols; c++) {
        s[c] = (float)(fmax(pow((double)mean[c], alpha), 1e-4) / norm);
        inv[c] = 1.0f / s[c];
    }
}

sq_status sq_awq_search_scales(const float *W, int rows, int cols, const float *H, const float *mean,
                               const sq_quant_options *q, int n_grid, float *scales, sq_awq_search *found)
{
    if (rows <= 0 || cols <= 0 || n_grid < 1)
        return sq_fail(SQ_ERR_ARG, "awq: bad search rows=%d cols=%d n_grid=%d", rows, cols, n_grid);
    search_buffers b;
    SQ_TRY(buffers_alloc(&b, W, rows, cols, 1, q));
    float *s = malloc((size_t)cols * sizeof *s), *inv = malloc((size_t)cols * sizeof *inv);
    double *dots = malloc((size_t)rows * sizeof *dots);
    float *dev_s = NULL, *dev_inv = NULL;
    size_t bytes = (size_t)rows * cols * sizeof(float), n = (size_t)rows * cols;
    sq_status st = s && inv && dots ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "awq: cannot hold %d scales", cols);
    SQ_TRY_GOTO(st, st, done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_s, (size_t)cols * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_inv, (size_t)cols * sizeof(float)), done);
    *found = (sq_awq_search){.best = -1};
    for (int i = 0; i < n_grid; i++) {
        scales_at(mean, cols, i, n_grid, s, inv);
        SQ_TRY_GOTO(st, kn_upload(dev_s, s, (size_t)cols * sizeof(float)), done);
        SQ_TRY_GOTO(st, kn_upload(dev_inv, inv, (size_t)cols * sizeof(float)), done);
        SQ_TRY_GOTO(st, kn_copy(b.trial, W, bytes), done);
        SQ_TRY_GOTO(st, kn_scale_rows_columns(b.trial, NULL, dev_s, rows, cols), done);
        SQ_TRY_GOTO(st, sq_rtn_fake_quantize(b.trial, q, &b.rtn), done);
        SQ_TRY_GOTO(st, kn_scale_rows_columns(b.trial, NULL, dev_inv, rows, cols), done);
        SQ_TRY_GOTO(st, kn_add_inplace(b.trial, b.neg_w, n), done);
        SQ_TRY_GOTO(st, kn_gemm(false, false, rows, cols, cols, 1.0f, b.trial, cols, H, cols, 0.0f, b.err_h, cols),
                    done);
        SQ_TRY_GOTO(st, kn_group_row_dots(b.dots, b.trial, b.err_h, rows, cols, cols), done);
        SQ_TRY_GOTO(st, kn_download(dots, b.dots, (size_t)rows * sizeof(double)), done);
        double loss = 0.0;
        for (int r = 0; r < rows; r++)
            loss += dots[r];
        if (!isfinite(loss)) {
            st = sq_fail(SQ_ERR_NUMERIC, "awq: the output error at alpha %d/%d is not finite", i, n_grid);
            goto done;
        }
        if (i == 0)
            found->loss_plain = loss;
        if (found->best < 0 || loss < found->loss) {
            found->best = i;
            found->loss = loss;
            memcpy(scales, s, (size_t)cols * sizeof *s);
        }
    }
done:
    kn_free(dev_s), kn_free(dev_inv);
    free(s), free(inv), free(dots);
    buffers_free(&b);
    return st;
}

/* err_h[:, group g] = ΔW[:, group g] · H[group g, group g] for every group. */
static sq_status group_products(const search_buffers *b, const float *H, int rows, int cols, int gs, int ngroups)
{
    for (int g = 0; g < ngroups; g++) {
        int c0 = g * gs, width = c0 + gs <= cols ? gs : cols - c0;
        SQ_TRY(kn_gemm(false, false, rows, width, width, 1.0f, b->trial + c0, cols, H + (size_t)c0 * cols + c0, cols,
                       0.0f, b->err_h + c0, cols));
    }
    return SQ_OK;
}

sq_status sq_awq_clip(float *W, int rows, int cols, const float *H, const sq_quant_options *q, int n_grid)
{
    int gs = q->group_size > 0 ? q->group_size : cols, ngroups = (cols + gs - 1) / gs;
    size_t n = (size_t)rows * cols, cells = (size_t)rows * ngroups, bytes = n * sizeof(float);
    search_buffers b;
    SQ_TRY(buffers_alloc(&b, W, rows, cols, ngroups, q));
    float *host_w = malloc(bytes), *org_max = malloc(cells * sizeof(float)), *limit = malloc(cells * sizeof(float));
    float *best_limit = malloc(cells * sizeof(float));
    double *dots = malloc(cells * sizeof(double)), *best = malloc(cells * sizeof(double));
    float *dev_limit = NULL;
    sq_status st = host_w && org_max && limit && best_limit && dots && best
                       ? SQ_OK
                       : sq_fail(SQ_ERR_NOMEM, "awq clip: cannot hold a %dx%d weight", rows, cols);
    SQ_TRY_GOTO(st, st, done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_limit, cells * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_download(host_w, W, bytes), done);
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ngroups; g++) {
            float m = 0.0f;
            for (int c = g * gs; c < cols && c < (g + 1) * gs; c++)
                m = fmaxf(m, fabsf(host_w[(size_t)r * cols + c]));
            org_max[(size_t)r * ngroups + g] = m;
        }
    int ratios = n_grid / 2 > 0 ? n_grid / 2 : 1;
    for (int i = 0; i < ratios; i++) {
        float ratio = 1.0f - (float)i / (float)n_grid;
        for (size_t k = 0; k < cells; k++)
            limit[k] = org_max[k] * ratio;
        SQ_TRY_GOTO(st, kn_upload(dev_limit, limit, cells * sizeof(float)), done);
        SQ_TRY_GOTO(st, kn_copy(b.trial, W, bytes), done);
        SQ_TRY_GOTO(st, kn_clamp_groups(b.trial, dev_limit, rows, cols, gs), done);
        SQ_TRY_GOTO(st, sq_rtn_fake_quantize(b.trial, q, &b.rtn), done);
        SQ_TRY_GOTO(st, kn_add_inplace(b.trial, b.neg_w, n), done);
        SQ_TRY_GOTO(st, group_products(&b, H, rows, cols, gs, ngroups), done);
        SQ_TRY_GOTO(st, kn_group_row_dots(b.dots, b.trial, b.err_h, rows, cols, gs), done);
        SQ_TRY_GOTO(st, kn_download(dots, b.dots, cells * sizeof(double)), done);
        for (size_t k = 0; k < cells; k++) {
            if (!isfinite(dots[k])) {
                st = sq_fail(SQ_ERR_NUMERIC, "awq clip: the output error of row %zu group %zu is not finite",
                             k / ngroups, k % ngroups);
                goto done;
            }
            if (i == 0 || dots[k] < best[k]) {
                best[k] = dots[k];
                best_limit[k] = limit[k];
            }
        }
    }
    SQ_TRY_GOTO(st, kn_upload(dev_limit, best_limit, cells * sizeof(float)), done);
    st = kn_clamp_groups(W, dev_limit, rows, cols, gs);
done:
    kn_free(dev_limit);
    free(host_w), free(org_max), free(limit), free(best_limit), free(dots), free(best);
    buffers_free(&b);
    return st;
}
