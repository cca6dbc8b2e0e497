/* gemm.c (CPU backend): matrix products through OpenBLAS's cblas_sgemm, with
 * results that do not depend on the thread count.
 *
 * OpenBLAS's own threading picks its blocking (and its K-splitting) from the
 * thread count, so the same product can round differently with 1 and 2
 * threads. kn_init sets OpenBLAS to one thread, and the threads here are
 * OpenMP's, over a fixed grid of output tiles: every tile is a
 * single-threaded sgemm over the full K whose shape and place depend only on
 * the problem's shape, never on which thread runs it or how many there are.
 * (A row's rounding still depends on its place in the call: OpenBLAS's
 * kernels do not treat rows alike, so callers that need a sequence's bits
 * independent of its batch call one sequence at a time, see model/layer.c.) */
#include <cblas.h>

#include "kernels/kernels.h"

#define TILE_ROWS 32
#define TILE_COLS 256

sq_status kn_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return sq_fail(SQ_ERR_ARG, "kn_gemm: negative dimension (m=%d n=%d k=%d)", m, n, k);
    if (m == 0 || n == 0)
        return SQ_OK;
    int row_tiles = (m + TILE_ROWS - 1) / TILE_ROWS, col_tiles = (n + TILE_COLS - 1) / TILE_COLS;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < row_tiles * col_tiles; t++) {
        int r0 = t / col_tiles * TILE_ROWS, c0 = t % col_tiles * TILE_COLS;
        int rows = m - r0 < TILE_ROWS ? m - r0 : TILE_ROWS, cols = n - c0 < TILE_COLS ? n - c0 : TILE_COLS;
        const float *b = transpose_b ? B + (size_t)c0 * ldb : B + c0;
        float *c = C + (size_t)r0 * ldc + c0;
        const float *a = transpose_a ? A + r0 : A + (size_t)r0 * lda;
        cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
                    rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    return SQ_OK;
}

sq_status kn_linear(float *out, const float *x, const float *weight, const float *bias, int rows, int in_features,
                    int out_features)
{
    SQ_TRY(kn_gemm(false, true, rows, out_features, in_features, 1.0f, x, in_features, weight, in_features, 0.0f, out,
                   out_features));
    if (bias) {
        for (int r = 0; r < rows; r++) {
            float *row = out + (size_t)r * out_features;
            for (int c = 0; c < out_features; c++)
                row[c] += bias[c];
        }
    }
    return SQ_OK;
}

sq_status kn_linear_per_block(float *out, const float *x, const float *weight, const float *bias, int blocks,
                              int rows, int in_features, int out_features)
{
    if (blocks < 0)
        return sq_fail(SQ_ERR_ARG, "kn_linear_per_block: negative block count %d", blocks);
    for (int b = 0; b < blocks; b++)
        SQ_TRY(kn_linear(out + (size_t)b * rows * out_features, x + (size_t)b * rows * in_features, weight, bias, rows,
                         in_features, out_features));
    return SQ_OK;
}

sq_status kn_linear_lora(float *out, float *u, const float *x, const float *weight, const float *bias,
                         const float *A, const float *B, float scale, int rows, int in_features, int out_features,
                         int r)
{
    SQ_TRY(kn_linear(u, x, A, NULL, rows, in_features, r));
    SQ_TRY(kn_linear(out, x, weight, bias, rows, in_features, out_features));
    return kn_gemm(false, true, rows, out_features, r, scale, u, r, B, r, 1.0f, out, out_features);
}
