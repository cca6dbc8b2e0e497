/* quantize.c (CPU backend): min/max quantization grids, round-to-nearest, and
 * the GPTQ inner block loop (with its optional sparsity mask), with the grid
 * arithmetic of quant_math.h. Every
 * output row is independent, so rows are spread over OpenMP threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/quant_math.h"
#include "kernels/kernels.h"

static sq_status check_bits(int bits, const char *who)
{
    if (bits < 1 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "%s: bits must be in [1, 8], got %d", who, bits);
    return SQ_OK;
}

sq_status kn_quant_grid(float *scale, float *zero, int ldg, int g, const float *W, int rows, int ld, int col0,
                        int ncols, int bits, bool sym)
{
    SQ_TRY(check_bits(bits, "kn_quant_grid"));
    if (ncols <= 0 || col0 < 0 || col0 + ncols > ld || g < 0 || g >= ldg)
        return sq_fail(SQ_ERR_ARG, "kn_quant_grid: columns [%d, %d) of %d or group %d of %d out of range", col0,
                       col0 + ncols, ld, g, ldg);
    float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for
    for (int r = 0; r < rows; r++)
        grid_of_row(W + (size_t)r * ld + col0, ncols, maxq, sym, &scale[(size_t)r * ldg + g],
                    &zero[(size_t)r * ldg + g]);
    return SQ_OK;
}

sq_status kn_quantize_rtn(float *W, uint8_t *codes, const float *scale, const float *zero, int ldg,
                          const int32_t *group_of_column, int rows, int n, int bits)
{
    SQ_TRY(check_bits(bits, "kn_quantize_rtn"));
    for (int c = 0; c < n; c++)
        if (group_of_column[c] < 0 || group_of_column[c] >= ldg)
            return sq_fail(SQ_ERR_ARG, "kn_quantize_rtn: column %d has group %d outside [0, %d)", c,
                           group_of_column[c], ldg);
    float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * n;
        for (int c = 0; c < n; c++) {
            size_t gi = (size_t)r * ldg + group_of_column[c];
            w[c] = quantize_value(w[c], scale[gi], zero[gi], maxq, &codes[(size_t)r * n + c]);
        }
    }
    return SQ_OK;
}

sq_status kn_dequantize(float *W, const uint8_t *codes, const float *scale, const float *zero, int ldg,
                        const int32_t *group_of_column, int rows, int n)
{
    if (rows < 0 || n < 0 || ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_dequantize: bad shape rows=%d n=%d ldg=%d", rows, n, ldg);
    for (int c = 0; c < n; c++)
        if (group_of_column[c] < 0 || group_of_column[c] >= ldg)
            return sq_fail(SQ_ERR_ARG, "kn_dequantize: column %d has group %d outside [0, %d)", c,
                           group_of_column[c], ldg);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *row_scale = scale + (size_t)r * ldg, *row_zero = zero + (size_t)r * ldg;
        const uint8_t *q = codes + (size_t)r * n;
        float *w = W + (size_t)r * n;
        for (int c = 0; c < n; c++) {
            int g = group_of_column[c];
            w[c] = row_scale[g] * ((float)q[c] - row_zero[g]);
        }
    }
    return SQ_OK;
}

sq_status kn_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero, int ldg,
                        const int32_t *group_of_column, bool compute_groups, int group_size, int rows, int n,
                        int col0, int ncols, int bits, bool sym, const uint8_t *masked)
{
    SQ_TRY(check_bits(bits, "kn_gptq_block"));
    if (ncols <= 0 || col0 < 0 || col0 + ncols > n)
        return sq_fail(SQ_ERR_ARG, "kn_gptq_block: block [%d, %d) outside %d columns", col0, col0 + ncols, n);
    for (int j = col0; j < col0 + ncols; j++)
        if (group_of_column[j] < 0 || group_of_column[j] >= ldg)
            return sq_fail(SQ_ERR_ARG, "kn_gptq_block: column %d has group %d outside [0, %d)", j,
                           group_of_column[j], ldg);
    bool groups_here = compute_groups && group_size > 0;
    /* Widest group window starting inside this block, clipped to n. */
    int window = groups_here ? group_size : 0;
    float maxq = (float)((1 << bits) - 1);
    int end = col0 + ncols;
    sq_status st = SQ_OK;
#pragma omp parallel
    {
        /* One row's columns [col0, col0 + ncols + window) as they were when the block started. */
        float *start = malloc(((size_t)ncols + window) * sizeof(float));
        if (!start) {
#pragma omp critical
            st = sq_fail(SQ_ERR_NOMEM, "kn_gptq_block: cannot allocate a row buffer");
        }
#pragma omp for
        for (int r = 0; r < rows; r++) {
            if (!start)
                continue;
            float *w = W + (size_t)r * n;
            int copied = ncols + window;
            if (col0 + copied > n)
                copied = n - col0;
            memcpy(start, w + col0, (size_t)copied * sizeof(float));
            for (int j = col0; j < end; j++) {
                if (groups_here && j % group_size == 0) {
                    int width = j + group_size <= n ? group_size : n - j;
                    size_t gi = (size_t)r * ldg + group_of_column[j];
                    grid_of_row(start + (j - col0), width, maxq, sym, &scale[gi], &zero[gi]);
                }
                size_t gi = (size_t)r * ldg + group_of_column[j];
                float kept = masked && masked[(size_t)r * n + j] ? 0.0f : w[j];
                float q = quantize_value(kept, scale[gi], zero[gi], maxq, &codes[(size_t)r * n + j]);
                const float *h = Hinv + (size_t)j * n;
                float err = (w[j] - q) / h[j];
                for (int k = j + 1; k < end; k++)
                    w[k] -= err * h[k];
                Err[(size_t)r * ncols + (j - col0)] = err;
                w[j] = q;
            }
        }
        free(start);
    }
    return st;
}
