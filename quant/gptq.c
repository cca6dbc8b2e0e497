/* gptq.c: the GPTQ solve for one linear over the kernels interface. The O(n³)
 * and O(rows·n²) work runs on the device; the host only orders columns, keeps
 * g_idx and sums the reported loss. With preserve_sparsity the zeros of W are
 * marked once, in the solve's column order, and kn_gptq_block keeps them. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/gptq.h"

/* Descending by diagonal value, ties by column index (a stable order). */
static int by_descending_diag(const void *a, const void *b, void *diag_values)
{
    const float *diag = diag_values;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (diag[i] != diag[j])
        return diag[i] > diag[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* Device buffers of one solve. */
typedef struct {
    float *diag, *Wp, *Hp, *Err, *err_norms, *scale, *zero;
    int32_t *perm, *group_of_column;
    uint8_t *codes, *masked; /* masked: only with preserve_sparsity */
} gptq_buffers;

static void free_buffers(gptq_buffers *b)
{
    kn_free(b->diag), kn_free(b->Wp), kn_free(b->Hp), kn_free(b->Err), kn_free(b->err_norms), kn_free(b->scale), kn_free(b->zero);
    kn_free(b->perm), kn_free(b->group_of_column), kn_free(b->codes), kn_free(b->masked);
}

static sq_status alloc_buffers(gptq_buffers *b, int rows, int cols, int ngroups, int block, int nparts, bool masked)
{
    size_t cells = (size_t)rows * cols;
    SQ_TRY(kn_alloc((void **)&b->diag, (size_t)cols * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->Wp, cells * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->Hp, (size_t)cols * cols * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->Err, (size_t)rows * block * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->err_norms, (size_t)nparts * cols * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->scale, (size_t)rows * ngroups * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->zero, (size_t)rows * ngroups * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->perm, (size_t)cols * sizeof(int32_t)));
    SQ_TRY(kn_alloc((void **)&b->group_of_column, (size_t)cols * sizeof(int32_t)));
    if (masked)
        SQ_TRY(kn_alloc((void **)&b->masked, cells));
    return kn_alloc((void **)&b->codes, cells);
}

/* Steps 1-5: grids that do not depend on the solve, dead columns, column
 * order and damping; leaves the permuted W in b->Wp, its zeros in b->masked
 * (when allocated) and Hinv in b->Hp. */
static sq_status prepare(float *W, float *H, int rows, int cols, const sq_quant_options *opt, int ngroups,
                         gptq_buffers *b, float *diag, int32_t *perm, int32_t *group_of_column)
{
    int gs = opt->group_size;
    if (gs <= 0)
        SQ_TRY(kn_quant_grid(b->scale, b->zero, 1, 0, W, rows, cols, 0, cols, opt->bits, opt->sym));
    SQ_TRY(kn_hessian_prepare(H, W, rows, cols, 0.0f));
    SQ_TRY(kn_diagonal(b->diag, H, cols));
    SQ_TRY(kn_download(diag, b->diag, (size_t)cols * sizeof(float)));
    if (gs > 0 && opt->static_groups)
        for (int g = 0; g < ngroups; g++) {
            int width = (g + 1) * gs <= cols ? gs : cols - g * gs;
            SQ_TRY(kn_quant_grid(b->scale, b->zero, ngroups, g, W, rows, cols, g * gs, width, opt->bits, opt->sym));
        }
    for (int i = 0; i < cols; i++)
        perm[i] = i;
    if (opt->desc_act)
        qsort_r(perm, (size_t)cols, sizeof *perm, by_descending_diag, diag);
    for (int i = 0; i < cols; i++) {
        int column = opt->static_groups ? perm[i] : i;
        group_of_column[i] = gs > 0 ? column / gs : 0;
    }
    SQ_TRY(kn_upload(b->perm, perm, (size_t)cols * sizeof(int32_t)));
    SQ_TRY(kn_upload(b->group_of_column, group_of_column, (size_t)cols * sizeof(int32_t)));
    SQ_TRY(kn_permute_columns(b->Wp, W, b->perm, rows, cols));
    SQ_TRY(kn_permute_symmetric(b->Hp, H, b->perm, cols));
    if (b->masked)
        SQ_TRY(kn_mark_zeros(b->masked, b->Wp, (size_t)rows * cols));
    double mean = 0;
    for (int i = 0; i < cols; i++)
        mean += diag[i];
    mean /= cols;
    SQ_TRY(kn_hessian_prepare(b->Hp, b->Wp, rows, cols, (float)(opt->damp_percent * mean)));
    return kn_inverse_cholesky_upper(b->Hp, cols);
}

/* Step 6: the blocked column sweep over b->Wp with Hinv in b->Hp; the loss of each
 * part (its rows of the stack) is summed into loss[part], column by column, from
 * the squared error norms the sweep leaves on the device (read back once, at the end). */
static sq_status sweep(int cols, const sq_quant_options *opt, int ngroups, int nparts, const int *part_rows,
                       gptq_buffers *b, float *err_norms_host, double *loss)
{
    int rows = 0;
    for (int p = 0; p < nparts; p++)
        rows += part_rows[p], loss[p] = 0;
    bool compute_groups = opt->group_size > 0 && !opt->static_groups;
    for (int i1 = 0; i1 < cols; i1 += opt->block_size) {
        int count = cols - i1 < opt->block_size ? cols - i1 : opt->block_size;
        int i2 = i1 + count;
        SQ_TRY(kn_gptq_block(b->Wp, b->codes, b->Err, b->Hp, b->scale, b->zero, ngroups, b->group_of_column,
                             compute_groups, opt->group_size, rows, cols, i1, count, opt->bits, opt->sym, b->masked));
        if (i2 < cols)
            SQ_TRY(kn_gemm(false, false, rows, cols - i2, count, -1.0f, b->Err, count, b->Hp + (size_t)i1 * cols + i2,
                           cols, 1.0f, b->Wp + i2, cols));
        for (int p = 0, row0 = 0; p < nparts; row0 += part_rows[p++])
            SQ_TRY(kn_column_sq_norms(b->err_norms + (size_t)p * cols + i1, b->Err + (size_t)row0 * count,
                                      part_rows[p], count, 0.0f));
    }
    SQ_TRY(kn_download(err_norms_host, b->err_norms, (size_t)nparts * cols * sizeof(float)));
    for (int p = 0; p < nparts; p++)
        for (int c = 0; c < cols; c++)
            loss[p] += 0.5 * (double)err_norms_host[(size_t)p * cols + c];
    return SQ_OK;
}

/* Step 7 for one part: its codes (original column order), grids and g_idx. */
static sq_status part_results(const gptq_buffers *b, const uint8_t *codes_perm, const int32_t *perm, int row0,
                              const sq_quant_options *opt, sq_quant_result *res)
{
    int rows = res->rows, cols = res->cols;
    if (codes_perm) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < cols; i++)
                res->codes[(size_t)r * cols + perm[i]] = codes_perm[(size_t)(row0 + r) * cols + i];
    } else { /* the identity order */
        SQ_TRY(kn_download(res->codes, b->codes + (size_t)row0 * cols, (size_t)rows * cols));
    }
    size_t grids = (size_t)rows * res->ngroups;
    SQ_TRY(kn_download(res->scales, b->scale + (size_t)row0 * res->ngroups, grids * sizeof(float)));
    SQ_TRY(kn_download(res->zeros, b->zero + (size_t)row0 * res->ngroups, grids * sizeof(float)));
    bool by_solve_order = opt->desc_act && !opt->static_groups && opt->group_size > 0;
    for (int i = 0; i < cols; i++)
        res->g_idx[by_solve_order ? perm[i] : i] = opt->group_size > 0 ? i / opt->group_size : 0;
    return SQ_OK;
}

sq_status sq_gptq_solve_stacked(float *W, float *H, int cols, const sq_quant_options *opt, int nparts,
                                const int *part_rows, sq_quant_result *parts)
{
    memset(parts, 0, (size_t)(nparts > 0 ? nparts : 0) * sizeof *parts);
    SQ_TRY(sq_quant_options_check(opt, cols, "gptq"));
    if (opt->block_size <= 0)
        return sq_fail(SQ_ERR_ARG, "gptq: block_size must be positive, got %d", opt->block_size);
    if (!(opt->damp_percent > 0 && opt->damp_percent < 1))
        return sq_fail(SQ_ERR_ARG, "gptq: damp_percent must be in (0, 1), got %g", opt->damp_percent);
    if (nparts <= 0)
        return sq_fail(SQ_ERR_ARG, "gptq: no linear to solve (%d parts)", nparts);
    int rows = 0;
    for (int p = 0; p < nparts; p++) {
        if (part_rows[p] <= 0)
            return sq_fail(SQ_ERR_ARG, "gptq: out_features must be positive, got %d", part_rows[p]);
        rows += part_rows[p];
    }
    sq_status st = SQ_OK;
    for (int p = 0; p < nparts; p++)
        SQ_TRY_GOTO(st, sq_quant_result_alloc(&parts[p], part_rows[p], cols, opt->bits, opt->group_size, opt->sym),
                    done);
    int ngroups = parts[0].ngroups;
    gptq_buffers b = {0};
    int block = opt->block_size < cols ? opt->block_size : cols;
    float *diag = malloc((size_t)cols * sizeof(float));
    int32_t *perm = malloc((size_t)cols * sizeof(int32_t));
    int32_t *group_of_column = malloc((size_t)cols * sizeof(int32_t));
    float *err_norms_host = malloc((size_t)nparts * cols * sizeof(float));
    double *loss = malloc((size_t)nparts * sizeof(double));
    uint8_t *codes_perm = opt->desc_act ? malloc((size_t)rows * cols) : NULL;
    if (!diag || !perm || !group_of_column || !err_norms_host || !loss || (opt->desc_act && !codes_perm)) {
        st = sq_fail(SQ_ERR_NOMEM, "gptq: cannot allocate host buffers for a %dx%d linear", rows, cols);
        goto done_host;
    }
    SQ_TRY_GOTO(st, alloc_buffers(&b, rows, cols, ngroups, block, nparts, opt->preserve_sparsity), done_host);
    SQ_TRY_GOTO(st, prepare(W, H, rows, cols, opt, ngroups, &b, diag, perm, group_of_column), done_host);
    SQ_TRY_GOTO(st, sweep(cols, opt, ngroups, nparts, part_rows, &b, err_norms_host, loss), done_host);
    /* Step 7: back to the original column order. */
    SQ_TRY_GOTO(st, kn_unpermute_columns(W, b.Wp, b.perm, rows, cols), done_host);
    if (codes_perm)
        SQ_TRY_GOTO(st, kn_download(codes_perm, b.codes, (size_t)rows * cols), done_host);
    for (int p = 0, row0 = 0; p < nparts; row0 += part_rows[p++]) {
        parts[p].loss = loss[p];
        SQ_TRY_GOTO(st, part_results(&b, codes_perm, perm, row0, opt, &parts[p]), done_host);
    }
done_host:
    free_buffers(&b);
    free(diag), free(perm), free(group_of_column), free(err_norms_host), free(loss), free(codes_perm);
done:
    if (st != SQ_OK)
        for (int p = 0; p < nparts; p++)
            sq_quant_result_free(&parts[p]);
    return st;
}

sq_status sq_gptq_solve(float *W, float *H, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res)
{
    return sq_gptq_solve_stacked(W, H, cols, opt, 1, &rows, res);
}
