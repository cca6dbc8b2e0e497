/* smoothing.c (CPU backend): the two kernels SmoothQuant's scales need —
 * running per-column absolute maxima (the range of each input channel of the
 * activations and of the weights) and scaling the columns of a weight. A max
 * is exact in any order, so the ranges do not depend on how the rows (tokens,
 * ranks) were split. */
#include <math.h>

#include "kernels/kernels.h"

#define COLUMN_TILE 64

sq_status kn_column_abs_max(float *colmax, const float *X, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_abs_max: bad shape rows=%d cols=%d", rows, cols);
    int tiles = (cols + COLUMN_TILE - 1) / COLUMN_TILE;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles; t++) {
        int c0 = t * COLUMN_TILE, c1 = c0 + COLUMN_TILE < cols ? c0 + COLUMN_TILE : cols;
        for (int r = 0; r < rows; r++) {
            const float *xr = X + (size_t)r * cols;
            for (int c = c0; c < c1; c++) {
                float v = fabsf(xr[c]);
                if (v > colmax[c])
                    colmax[c] = v;
            }
        }
    }
    return SQ_OK;
}

sq_status kn_scale_columns(float *W, const float *s, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_scale_columns: bad shape rows=%d cols=%d", rows, cols);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            W[(size_t)r * cols + c] *= s[c];
    return SQ_OK;
}
