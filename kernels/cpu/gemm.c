/* gemm.c (CPU backend): matrix products through OpenBLAS's cblas_sgemm. */
#include <cblas.h>

#include "kernels/kernels.h"

sq_status kn_gemm(bool transpose_a, bool transpose_b, int m, int n, int k, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return sq_fail(SQ_ERR_ARG, "kn_gemm: negative dimension (m=%d n=%d k=%d)", m, n, k);
    if (m == 0 || n == 0)
        return SQ_OK;
    cblas_sgemm(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans, transpose_b ? CblasTrans : CblasNoTrans, m, n,
                k, alpha, A, lda, B, ldb, beta, C, ldc);
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
