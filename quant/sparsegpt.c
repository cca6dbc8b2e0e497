/* sparsegpt.c: the SparseGPT solve for one linear over the kernels interface,
 * laid out like quant/gptq.c (no column reordering: SparseGPT walks the
 * columns in their own order). The O(n³) and O(rows·n²) work runs on the
 * device; the host only sets the per-block prune counts and sums the loss. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/prune.h"
#include "quant/sparsegpt.h"

/* Device buffers of one solve (the quantization ones only with bits > 0). */
typedef struct {
    float *diag, *Err, *scale, *zero;
    int32_t *group_of_column;
    uint8_t *codes;
} sparsegpt_buffers;

static void free_buffers(sparsegpt_buffers *b)
{
    kn_free(b->diag), kn_free(b->Err), kn_free(b->scale), kn_free(b->zero);
    kn_free(b->group_of_column), kn_free(b->codes);
}

static sq_status alloc_buffers(sparsegpt_buffers *b, int rows, int cols, int block, const sq_quant_result *res)
{
    SQ_TRY(kn_alloc((void **)&b->diag, (size_t)cols * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->Err, (size_t)rows * block * sizeof(float)));
    if (res->bits == 0)
        return SQ_OK;
    SQ_TRY(kn_alloc((void **)&b->scale, (size_t)rows * res->ngroups * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->zero, (size_t)rows * res->ngroups * sizeof(float)));
    SQ_TRY(kn_alloc((void **)&b->group_of_column, (size_t)cols * sizeof(int32_t)));
    return kn_alloc((void **)&b->codes, (size_t)rows * cols);
}

static sq_status check_options(const sq_sparse_options *opt, int rows, int cols)
{
    SQ_TRY(sq_sparse_options_check(opt, rows, cols, "sparsegpt"));
    if (opt->block_size <= 0)
        return sq_fail(SQ_ERR_ARG, "sparsegpt: block_size must be positive, got %d", opt->block_size);
    if (opt->prune_n > 0 && opt->block_size % opt->prune_m != 0)
        return sq_fail(SQ_ERR_ARG, "sparsegpt: block_size %d is not a multiple of the pattern's M = %d",
                       opt->block_size, opt->prune_m);
    if (!(opt->damp_percent > 0 && opt->damp_percent < 1))
        return sq_fail(SQ_ERR_ARG, "sparsegpt: damp_percent must be in (0, 1), got %g", opt->damp_percent);
    if (opt->bits == 0)
        return SQ_OK;
    sq_quant_options quant = {.bits = opt->bits, .group_size = opt->group_size, .sym = opt->sym};
    return sq_quant_options_check(&quant, cols, "sparsegpt");
}

/* Steps 1-3: the whole-row grid, dead columns and damping; leaves the upper
 * Cholesky factor of H⁻¹ in H and the columns' groups in b->group_of_column. */
static sq_status prepare(float *W, float *H, int rows, int cols, const sq_sparse_options *opt,
                         const sq_quant_result *res, sparsegpt_buffers *b, float *diag, int32_t *group_of_column)
{
    if (res->bits > 0) {
        if (opt->group_size <= 0)
            SQ_TRY(kn_quant_grid(b->scale, b->zero, 1, 0, W, rows, cols, 0, cols, opt->bits, opt->sym));
        for (int j = 0; j < cols; j++)
            group_of_column[j] = opt->group_size > 0 ? j / opt->group_size : 0;
        SQ_TRY(kn_upload(b->group_of_column, group_of_column, (size_t)cols * sizeof(int32_t)));
    }
    SQ_TRY(kn_hessian_prepare(H, W, rows, cols, 0.0f));
    SQ_TRY(kn_diagonal(b->diag, H, cols));
    SQ_TRY(kn_download(diag, b->diag, (size_t)cols * sizeof(float)));
    double mean = 0;
    for (int i = 0; i < cols; i++)
        mean += diag[i];
    mean /= cols;
    SQ_TRY(kn_hessian_prepare(H, W, rows, cols, (float)(opt->damp_percent * mean)));
    SQ_TRY(kn_spd_inverse(H, cols));
    return kn_cholesky_upper(H, cols);
}

/* Step 4: the blocked column sweep. Unstructured, the zeros of columns [0, i)
 * number floor(sparsity · i) per row after every block, so the row ends with
 * exactly sq_prune_count zeros however cols splits into blocks. */
static sq_status sweep(float *W, const float *Hinv, int rows, int cols, const sq_sparse_options *opt,
                       const sq_quant_result *res, sparsegpt_buffers *b, float *err_host, double *loss)
{
    *loss = 0;
    for (int i1 = 0; i1 < cols; i1 += opt->block_size) {
        int count = cols - i1 < opt->block_size ? cols - i1 : opt->block_size;
        int i2 = i1 + count;
        int prune_group = opt->prune_n > 0 ? opt->prune_m : count;
        int prune_count = opt->prune_n > 0 ? opt->prune_n
                                           : (int)floor(opt->sparsity * i2) - (int)floor(opt->sparsity * i1);
        SQ_TRY(kn_sparsegpt_block(W, b->codes, b->Err, Hinv, b->scale, b->zero, res->ngroups, b->group_of_column,
                                  opt->group_size > 0, opt->group_size, rows, cols, i1, count, res->bits, opt->sym,
                                  prune_group, prune_count));
        if (i2 < cols)
            SQ_TRY(kn_gemm(false, false, rows, cols - i2, count, -1.0f, b->Err, count, Hinv + (size_t)i1 * cols + i2,
                           cols, 1.0f, W + i2, cols));
        SQ_TRY(kn_download(err_host, b->Err, (size_t)rows * count * sizeof(float)));
        for (size_t k = 0; k < (size_t)rows * count; k++)
            *loss += 0.5 * (double)err_host[k] * err_host[k];
    }
    return SQ_OK;
}

sq_status sq_sparsegpt_solve(float *W, float *H, int rows, int cols, const sq_sparse_options *opt, sq_quant_result *res)
{
    sq_quant_result unquantized = {0};
    if (!res) {
        if (opt->bits > 0)
            return sq_fail(SQ_ERR_ARG, "sparsegpt: %d-bit quantization needs a result for its codes", opt->bits);
        res = &unquantized;
    }
    memset(res, 0, sizeof *res);
    SQ_TRY(check_options(opt, rows, cols));
    if (opt->bits > 0)
        SQ_TRY(sq_quant_result_alloc(res, rows, cols, opt->bits, opt->group_size, opt->sym));
    else
        *res = (sq_quant_result){.rows = rows, .cols = cols, .ngroups = 1};

    sq_status st = SQ_OK;
    sparsegpt_buffers b = {0};
    int block = opt->block_size < cols ? opt->block_size : cols;
    float *diag = malloc((size_t)cols * sizeof(float));
    int32_t *group_of_column = malloc((size_t)cols * sizeof(int32_t));
    float *err_host = malloc((size_t)rows * block * sizeof(float));
    if (!diag || !group_of_column || !err_host) {
        st = sq_fail(SQ_ERR_NOMEM, "sparsegpt: cannot allocate host buffers for a %dx%d linear", rows, cols);
        goto done;
    }
    SQ_TRY_GOTO(st, alloc_buffers(&b, rows, cols, block, res), done);
    SQ_TRY_GOTO(st, prepare(W, H, rows, cols, opt, res, &b, diag, group_of_column), done);
    SQ_TRY_GOTO(st, sweep(W, H, rows, cols, opt, res, &b, err_host, &res->loss), done);
    if (res->bits > 0) {
        SQ_TRY_GOTO(st, kn_download(res->codes, b.codes, (size_t)rows * cols), done);
        SQ_TRY_GOTO(st, kn_download(res->scales, b.scale, (size_t)rows * res->ngroups * sizeof(float)), done);
        SQ_TRY_GOTO(st, kn_download(res->zeros, b.zero, (size_t)rows * res->ngroups * sizeof(float)), done);
        memcpy(res->g_idx, group_of_column, (size_t)cols * sizeof(int32_t));
    }
done:
    free_buffers(&b);
    free(diag), free(group_of_column), free(err_host);
    if (st != SQ_OK)
        sq_quant_result_free(res);
    return st;
}
