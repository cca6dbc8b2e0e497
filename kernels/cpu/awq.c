/* awq.c (CPU backend): the kernels of the AWQ step (kernels.h, AWQ section) —
 * per-channel sums of |x|, the row/column scaling that folds AWQ's scales, the
 * per-(row, group) output errors its searches compare, and the group clamp of
 * the clipping search. Every sum runs in a fixed order (columns or rows in
 * index order), rows spread over OpenMP threads by a static split. */
#include <math.h>

#include "kernels/kernels.h"

static int group_count(int cols, int group_size) { return (cols + group_size - 1) / group_size; }

sq_status kn_column_abs_sums(float *sums, const float *X, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_abs_sums: bad shape rows=%d cols=%d", rows, cols);
    for (int c = 0; c < cols; c++)
        sums[c] = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float *x = X + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            sums[c] += fabsf(x[c]);
    }
    return SQ_OK;
}

sq_status kn_scale_rows_columns(float *W, const float *row_scale, const float *col_scale, int rows, int cols)
{
    if (rows < 0 || cols < 0)
        return sq_fail(SQ_ERR_ARG, "kn_scale_rows_columns: bad shape rows=%d cols=%d", rows, cols);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * cols;
        for (int c = 0; c < cols; c++) {
            float v = row_scale ? w[c] * row_scale[r] : w[c];
            w[c] = col_scale ? v * col_scale[c] : v;
        }
    }
    return SQ_OK;
}

sq_status kn_group_row_dots(double *out, const float *A, const float *B, int rows, int cols, int group_size)
{
    if (rows < 0 || cols <= 0 || group_size <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_group_row_dots: bad shape rows=%d cols=%d group_size=%d", rows, cols,
                       group_size);
    int ngroups = group_count(cols, group_size);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *a = A + (size_t)r * cols, *b = B + (size_t)r * cols;
        for (int g = 0; g < ngroups; g++) {
            int end = (g + 1) * group_size < cols ? (g + 1) * group_size : cols;
            double sum = 0.0;
            for (int c = g * group_size; c < end; c++)
                sum += (double)a[c] * (double)b[c];
            out[(size_t)r * ngroups + g] = sum;
        }
    }
    return SQ_OK;
}

sq_status kn_clamp_groups(float *W, const float *limit, int rows, int cols, int group_size)
{
    if (rows < 0 || cols <= 0 || group_size <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_clamp_groups: bad shape rows=%d cols=%d group_size=%d", rows, cols,
                       group_size);
    int ngroups = group_count(cols, group_size);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * cols;
        for (int c = 0; c < cols; c++) {
            float lim = limit[(size_t)r * ngroups + c / group_size];
            w[c] = fminf(fmaxf(w[c], -lim), lim);
        }
    }
    return SQ_OK;
}
