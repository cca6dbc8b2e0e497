/* linalg.c (CPU backend): the dense linear algebra behind calibration —
 * Hessian accumulation (kn_gemm's fixed tiles, not syrk: OpenBLAS's threaded
 * syrk rounds differently with different thread counts), column norms, symmetric permutations, and the
 * SPD inverse / upper Cholesky factor GPTQ needs (LAPACKE, row-major). */
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "kernels/kernels.h"

/* Copy the upper triangle of a row-major n×n matrix onto its lower triangle. */
static void mirror_upper_to_lower(float *A, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            A[(size_t)i * n + j] = A[(size_t)j * n + i];
}

sq_status kn_hessian_accumulate(float *H, const float *X, int rows, int cols, float alpha, float beta)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_hessian_accumulate: bad shape rows=%d cols=%d", rows, cols);
    SQ_TRY(kn_gemm(true, false, cols, cols, rows, alpha, X, cols, X, cols, beta, H, cols));
    mirror_upper_to_lower(H, cols);
    return SQ_OK;
}

sq_status kn_hessian_upper(float *H, const float *X, int rows, int cols)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_hessian_upper: bad shape rows=%d cols=%d", rows, cols);
    return kn_gemm(true, false, cols, cols, rows, 1.0f, X, cols, X, cols, 0.0f, H, cols);
}

sq_status kn_column_sq_norms(float *norms, const float *X, int rows, int cols, float beta)
{
    if (rows < 0 || cols <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_column_sq_norms: bad shape rows=%d cols=%d", rows, cols);
    for (int c = 0; c < cols; c++)
        norms[c] = beta == 0.0f ? 0.0f : norms[c] * beta; /* beta 0: norms is not read (may be garbage) */
    for (int r = 0; r < rows; r++) {
        const float *x = X + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            norms[c] += x[c] * x[c];
    }
    return SQ_OK;
}

sq_status kn_diagonal(float *diag, const float *A, int n)
{
    for (int i = 0; i < n; i++)
        diag[i] = A[(size_t)i * n + i];
    return SQ_OK;
}

sq_status kn_hessian_prepare(float *H, float *W, int rows, int n, float damp)
{
    for (int i = 0; i < n; i++) {
        float *hii = &H[(size_t)i * n + i];
        if (*hii == 0.0f) {
            *hii = 1.0f;
            for (int r = 0; r < rows; r++)
                W[(size_t)r * n + i] = 0.0f;
        }
        *hii += damp;
    }
    return SQ_OK;
}

static sq_status check_perm(const int32_t *perm, int n, const char *who)
{
    for (int i = 0; i < n; i++)
        if (perm[i] < 0 || perm[i] >= n)
            return sq_fail(SQ_ERR_ARG, "%s: perm[%d] = %d outside [0, %d)", who, i, perm[i], n);
    return SQ_OK;
}

sq_status kn_permute_symmetric(float *B, const float *A, const int32_t *perm, int n)
{
    SQ_TRY(check_perm(perm, n, "kn_permute_symmetric"));
    for (int i = 0; i < n; i++) {
        const float *src = A + (size_t)perm[i] * n;
        float *dst = B + (size_t)i * n;
        for (int j = 0; j < n; j++)
            dst[j] = src[perm[j]];
    }
    return SQ_OK;
}

sq_status kn_permute_columns(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    SQ_TRY(check_perm(perm, n, "kn_permute_columns"));
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++)
            B[(size_t)r * n + j] = A[(size_t)r * n + perm[j]];
    return SQ_OK;
}

sq_status kn_unpermute_columns(float *B, const float *A, const int32_t *perm, int rows, int n)
{
    SQ_TRY(check_perm(perm, n, "kn_unpermute_columns"));
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++)
            B[(size_t)r * n + perm[j]] = A[(size_t)r * n + j];
    return SQ_OK;
}

/* Row-major A with uplo 'U' is what LAPACKE factors as the upper triangle in
 * row-major terms: A = Uᵀ U with U stored in the upper triangle. */
static sq_status factor_upper(float *A, int n, const char *who)
{
    lapack_int info = LAPACKE_spotrf(LAPACK_ROW_MAJOR, 'U', n, A, n);
    if (info > 0)
        return sq_fail(SQ_ERR_NUMERIC, "%s: matrix %dx%d is not positive definite (pivot %d)", who, n, n, (int)info);
    if (info < 0)
        return sq_fail(SQ_ERR_ARG, "%s: spotrf argument %d invalid", who, (int)-info);
    return SQ_OK;
}

sq_status kn_spd_inverse(float *A, int n)
{
    SQ_TRY(factor_upper(A, n, "kn_spd_inverse"));
    lapack_int info = LAPACKE_spotri(LAPACK_ROW_MAJOR, 'U', n, A, n);
    if (info != 0)
        return sq_fail(SQ_ERR_NUMERIC, "kn_spd_inverse: spotri failed (info %d) on %dx%d", (int)info, n, n);
    mirror_upper_to_lower(A, n);
    return SQ_OK;
}

sq_status kn_cholesky_upper(float *A, int n)
{
    SQ_TRY(factor_upper(A, n, "kn_cholesky_upper"));
    for (int i = 0; i < n; i++)
        memset(A + (size_t)i * n, 0, (size_t)i * sizeof(float));
    return SQ_OK;
}

/* The reference: the inverse, then its factor. */
sq_status kn_inverse_cholesky_upper(float *A, int n)
{
    SQ_TRY(kn_spd_inverse(A, n));
    return kn_cholesky_upper(A, n);
}
