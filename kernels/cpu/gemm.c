/* gemm.c (CPU backend): matrix products through OpenBLAS's cblas_sgemm, with
 * results that do not depend on the thread count.
 *
 * OpenBLAS's own threading picks its blocking (and its K-splitting) from the
 * thread count, so the same product can round differently with 1 and 2
 * threads. kn_init sets OpenBLAS to one thread, and the threads here are
 * OpenMP's, over a fixed grid of output tiles: every tile is a
 * single-threaded sgemm over the full K whose shape depends only on the
 * problem (a tail tile of rows is padded to a full TILE_ROWS), never on which
 * thread runs it or how many there are. A row's result is the same in any
 * batch of rows it comes in, which is what makes the forward pass of a
 * sequence independent of how sequences were split over ranks and micro-batches. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#define TILE_ROWS 32
#define TILE_COLS 256

/* One padded tile: rows [r0, r0+rows) of C (rows < TILE_ROWS) through a scratch of TILE_ROWS rows. */
static int padded_tile(bool transpose_a, bool transpose_b, int rows, int cols, int k, float alpha, const float *A,
                       int lda, int r0, const float *B, int ldb, float beta, float *C, int ldc)
{
    float *a = calloc((size_t)TILE_ROWS * (k > 0 ? k : 1), sizeof *a);
    float *c = calloc((size_t)TILE_ROWS * cols, sizeof *c);
    if (!a || !c) {
        free(a), free(c);
        return 1;
    }
    for (int i = 0; i < rows; i++) {
        for (int p = 0; p < k; p++)
            a[(size_t)i * k + p] = transpose_a ? A[(size_t)p * lda + r0 + i] : A[(size_t)(r0 + i) * lda + p];
        if (beta != 0.0f)
            memcpy(c + (size_t)i * cols, C + (size_t)i * ldc, (size_t)cols * sizeof *c);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, TILE_ROWS, cols, k, alpha, a,
                k > 0 ? k : 1, B, ldb, beta, c, cols);
    for (int i = 0; i < rows; i++)
        memcpy(C + (size_t)i * ldc, c + (size_t)i * cols, (size_t)cols * sizeof *c);
    free(a), free(c);
    return 0;
}

sq_status kn_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return sq_fail(SQ_ERR_ARG, "kn_gemm: negative dimension (m=%d n=%d k=%d)", m, n, k);
    if (m == 0 || n == 0)
        return SQ_OK;
    int row_tiles = (m + TILE_ROWS - 1) / TILE_ROWS, col_tiles = (n + TILE_COLS - 1) / TILE_COLS;
    int failed = 0;
#pragma omp parallel for schedule(static) reduction(| : failed)
    for (int t = 0; t < row_tiles * col_tiles; t++) {
        int r0 = t / col_tiles * TILE_ROWS, c0 = t % col_tiles * TILE_COLS;
        int rows = m - r0 < TILE_ROWS ? m - r0 : TILE_ROWS, cols = n - c0 < TILE_COLS ? n - c0 : TILE_COLS;
        const float *b = transpose_b ? B + (size_t)c0 * ldb : B + c0;
        float *c = C + (size_t)r0 * ldc + c0;
        if (rows < TILE_ROWS) {
            failed |= padded_tile(transpose_a, transpose_b, rows, cols, k, alpha, A, lda, r0, b, ldb, beta, c, ldc);
            continue;
        }
        const float *a = transpose_a ? A + r0 : A + (size_t)r0 * lda;
        cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans,
                    rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    if (failed)
        return sq_fail(SQ_ERR_NOMEM, "kn_gemm: cannot allocate a tile of %d x %d", TILE_ROWS, k);
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
