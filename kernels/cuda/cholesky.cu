/* cholesky.cu (CUDA backend): the SPD inverse and the upper Cholesky factor
 * GPTQ needs, through cuSOLVER (potrf) and cuBLAS (trsm, syrk).
 *
 * A row-major symmetric matrix is its own column-major view. Column-major
 * lower Cholesky A = L Lᵀ stores L where row-major reads Lᵀ = U, so asking
 * cuSOLVER for the LOWER factor gives the row-major upper factor (A = Uᵀ U).
 * The inverse is formed as L⁻ᵀ L⁻¹ from a triangular solve against the
 * identity and a syrk, rather than with potri or trtri, which ran 1.4-2.5x slower
 * on an H100 (bench/RESULTS.md has the steps' timings). A positive pivot
 * count in devInfo means "not positive definite" and becomes SQ_ERR_NUMERIC.
 *
 * GPTQ's Hinv, the upper Cholesky factor of A⁻¹, needs no inverse at all. With J
 * the order-reversing permutation, J A J = Rᵀ R (R upper) gives A⁻¹ = J R⁻¹ R⁻ᵀ J
 * = Vᵀ V with V = J R⁻ᵀ J, upper with a positive diagonal: V is the factor. J A J
 * of a row-major matrix is its element array reversed, and the reversed array of
 * column-major R⁻¹ reads row-major as V; so: reverse, potrf, invert R, reverse.
 * R is inverted in place by halves, [A B; 0 C]⁻¹ = [A⁻¹ -A⁻¹BC⁻¹; 0 C⁻¹]: two
 * GEMMs per level (2n³/3 flops in all, the triangles' zeros multiplied too, at
 * SGEMM's rate), where a triangular solve against the identity costs n³ flops
 * at half that rate and cuBLAS's triangular product (trmm) was slower still. */
#include "kernels/cuda/cuda_common.h"

static sq_status read_info(const int *dev_info, const char *who, const char *step, int n)
{
    int info = 0;
    CUDA_CHECK(cudaMemcpy(&info, dev_info, sizeof info, cudaMemcpyDeviceToHost));
    if (info > 0)
        return sq_fail(SQ_ERR_NUMERIC, "%s: matrix %dx%d is not positive definite (%s, pivot %d)", who, n, n, step,
                       info);
    if (info < 0)
        return sq_fail(SQ_ERR_ARG, "%s: %s argument %d invalid", who, step, -info);
    return SQ_OK;
}

/* Column-major Cholesky factor in place, in the `fill` triangle (LOWER: the row-major upper factor). */
static sq_status factor(float *A, int n, cublasFillMode_t fill, int *dev_info, const char *who)
{
    cusolverDnHandle_t solver = kn_cuda_solver();
    int work_len = 0;
    CUSOLVER_CHECK(cusolverDnSpotrf_bufferSize(solver, fill, n, A, n, &work_len));
    float *work = NULL;
    SQ_TRY(kn_alloc((void **)&work, sizeof(float) * (size_t)(work_len > 0 ? work_len : 1)));
    sq_status st = CUSOLVER_STATUS(cusolverDnSpotrf(solver, fill, n, A, n, work, work_len, dev_info));
    if (st == SQ_OK)
        st = read_info(dev_info, who, "potrf", n);
    kn_free(work);
    return st;
}

__global__ void zero_strict_lower(float *A, int n)
{
    size_t total = (size_t)n * n;
    GRID_STRIDE(idx, total)
    {
        if (idx / n > idx % n)
            A[idx] = 0.0f;
    }
}

static sq_status zero_row_major_strict_lower(float *A, int n)
{
    zero_strict_lower<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(A, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

__global__ void set_identity(float *M, int n)
{
    size_t total = (size_t)n * n;
    GRID_STRIDE(idx, total) M[idx] = idx / n == idx % n ? 1.0f : 0.0f;
}

/* A = L Lᵀ (column-major) gives A⁻¹ = L⁻ᵀ L⁻¹ = Mᵀ M with M = L⁻¹: potrf, then M from
 * the triangular solve L M = I (trsm; M comes out lower triangular with exact zeros
 * above), then syrk writes Mᵀ M over A, which is no longer needed. */
static sq_status invert(float *A, int n, int *dev_info)
{
    SQ_TRY(factor(A, n, CUBLAS_FILL_MODE_LOWER, dev_info, "kn_spd_inverse"));
    float *M = NULL;
    SQ_TRY(kn_alloc((void **)&M, sizeof(float) * (size_t)n * n));
    set_identity<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(M, n);
    sq_status st = CUDA_STATUS(cudaGetLastError());
    const float one = 1.0f, zero = 0.0f;
    if (st == SQ_OK)
        st = CUBLAS_STATUS(cublasStrsm(kn_cuda_blas(), CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                                       CUBLAS_DIAG_NON_UNIT, n, n, &one, A, n, M, n));
    if (st == SQ_OK)
        st = CUBLAS_STATUS(cublasSsyrk(kn_cuda_blas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, n, n, &one, M, n, &zero, A,
                                       n));
    if (st == SQ_OK)
        st = kn_cuda_copy_upper_to_lower(A, n);
    kn_free(M);
    return st;
}

/* The row-major upper factor, lower part zeroed. */
static sq_status cholesky(float *A, int n, int *dev_info)
{
    SQ_TRY(factor(A, n, CUBLAS_FILL_MODE_LOWER, dev_info, "kn_cholesky_upper"));
    return zero_row_major_strict_lower(A, n);
}

/* The entry points' shared frame: the size check and cuSOLVER's devInfo word around `step`. */
static sq_status with_dev_info(float *A, int n, const char *who, sq_status (*step)(float *, int, int *))
{
    if (n < 0)
        return sq_fail(SQ_ERR_ARG, "%s: negative size %d", who, n);
    if (n == 0)
        return SQ_OK;
    int *dev_info = NULL;
    SQ_TRY(kn_alloc((void **)&dev_info, sizeof(int)));
    sq_status st = step(A, n, dev_info);
    kn_free(dev_info);
    return st;
}

extern "C" sq_status kn_spd_inverse(float *A, int n)
{
    return with_dev_info(A, n, "kn_spd_inverse", invert);
}

extern "C" sq_status kn_cholesky_upper(float *A, int n)
{
    return with_dev_info(A, n, "kn_cholesky_upper", cholesky);
}

/* A[i] <-> A[total-1-i]: J A J for a square matrix. */
__global__ void reverse_in_place(float *A, size_t total)
{
    GRID_STRIDE(i, total / 2)
    {
        float t = A[i];
        A[i] = A[total - 1 - i];
        A[total - 1 - i] = t;
    }
}

__global__ void zero_strict_upper(float *A, int n)
{
    size_t total = (size_t)n * n;
    GRID_STRIDE(idx, total)
    {
        if (idx / n < idx % n)
            A[idx] = 0.0f;
    }
}

#define INVERT_BASE 128

/* R[n, n] (column-major upper triangular, leading dimension ld, exact zeros below) :=
 * R⁻¹, in place: by halves down to INVERT_BASE columns, which a triangular solve
 * against the identity inverts in `scratch`; above that, scratch [n/2 · (n - n/2)]
 * holds A⁻¹B while B becomes -(A⁻¹B)C⁻¹. */
static sq_status invert_upper(float *R, int n, int ld, float *scratch)
{
    const float one = 1.0f, minus_one = -1.0f, zero = 0.0f;
    if (n <= INVERT_BASE) {
        set_identity<<<kn_cuda_blocks((size_t)n * n, 256), 256>>>(scratch, n);
        CUDA_CHECK_LAUNCH();
        CUBLAS_CHECK(cublasStrsm(kn_cuda_blas(), CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                                 CUBLAS_DIAG_NON_UNIT, n, n, &one, R, ld, scratch, n));
        CUDA_CHECK(cudaMemcpy2D(R, (size_t)ld * sizeof(float), scratch, (size_t)n * sizeof(float),
                                (size_t)n * sizeof(float), n, cudaMemcpyDeviceToDevice));
        return SQ_OK;
    }
    const int n1 = n / 2, n2 = n - n1;
    float *A = R, *B = R + (size_t)n1 * ld, *C = R + (size_t)n1 * ld + n1;
    SQ_TRY(invert_upper(A, n1, ld, scratch));
    SQ_TRY(invert_upper(C, n2, ld, scratch));
    CUBLAS_CHECK(cublasSgemm(kn_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, n1, n2, n1, &one, A, ld, B, ld, &zero,
                             scratch, n1));
    CUBLAS_CHECK(cublasSgemm(kn_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, n1, n2, n2, &minus_one, scratch, n1, C, ld,
                             &zero, B, ld));
    return SQ_OK;
}

/* The reversal identity in this file's header comment. */
static sq_status inverse_factor(float *A, int n, int *dev_info)
{
    size_t total = (size_t)n * n;
    reverse_in_place<<<kn_cuda_blocks(total / 2 + 1, 256), 256>>>(A, total);
    CUDA_CHECK_LAUNCH();
    SQ_TRY(factor(A, n, CUBLAS_FILL_MODE_UPPER, dev_info, "kn_inverse_cholesky_upper"));
    /* Column-major R upper: clear what potrf left below it (row-major above). */
    zero_strict_upper<<<kn_cuda_blocks(total, 256), 256>>>(A, n);
    CUDA_CHECK_LAUNCH();
    float *scratch = NULL;
    size_t scratch_floats = (size_t)(n / 2) * (n - n / 2);
    if (scratch_floats < INVERT_BASE * INVERT_BASE)
        scratch_floats = INVERT_BASE * INVERT_BASE;
    SQ_TRY(kn_alloc((void **)&scratch, sizeof(float) * scratch_floats));
    sq_status st = invert_upper(A, n, n, scratch);
    kn_free(scratch);
    if (st == SQ_OK) {
        reverse_in_place<<<kn_cuda_blocks(total / 2 + 1, 256), 256>>>(A, total);
        st = CUDA_STATUS(cudaGetLastError());
    }
    return st;
}

extern "C" sq_status kn_inverse_cholesky_upper(float *A, int n)
{
    return with_dev_info(A, n, "kn_inverse_cholesky_upper", inverse_factor);
}
