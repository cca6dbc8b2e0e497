/* test_kernels_quant.c: the calibration kernels (Hessians, permutations, SPD
 * inverse, Cholesky, quantization grids, RTN, the GPTQ block) against naive
 * loops and hand-computed values; exact order-free sums; products whose bits do
 * not depend on the thread count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static uint64_t rng_state = 12345;
static float uniform(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xFFFFFF) / (float)0x1000000 * 2.0f - 1.0f;
}

static float *random_matrix(int rows, int cols)
{
    float *m = malloc((size_t)rows * cols * sizeof(float));
    for (int i = 0; i < rows * cols; i++)
        m[i] = uniform();
    return m;
}

/* H = Xᵀ X / rows + I: well conditioned SPD. */
static float *random_spd(int n)
{
    int rows = 2 * n;
    float *X = random_matrix(rows, n);
    float *H = calloc((size_t)n * n, sizeof(float));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int r = 0; r < rows; r++)
                s += (double)X[r * n + i] * X[r * n + j];
            H[i * n + j] = (float)(s / rows) + (i == j ? 1.0f : 0.0f);
        }
    free(X);
    return H;
}

static void test_hessian_accumulate_matches_naive(void **state)
{
    (void)state;
    int rows = 7, cols = 5;
    float *X = random_matrix(rows, cols);
    float *H = random_matrix(cols, cols);
    float *expect = malloc(sizeof(float) * cols * cols);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double s = 0;
            for (int r = 0; r < rows; r++)
                s += (double)X[r * cols + i] * X[r * cols + j];
            expect[i * cols + j] = 0.5f * H[i * cols + j] + 2.0f * (float)s;
        }
    /* beta applies to the whole matrix, so start symmetric. */
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++)
            H[i * cols + j] = H[j * cols + i];
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++)
            expect[i * cols + j] = expect[j * cols + i];
    assert_int_equal(kn_hessian_accumulate(H, X, rows, cols, 2.0f, 0.5f), SQ_OK);
    for (int i = 0; i < cols * cols; i++)
        assert_float_equal(H[i], expect[i], 1e-4);
    float norms[5] = {1, 1, 1, 1, 1};
    assert_int_equal(kn_column_sq_norms(norms, X, rows, cols, 3.0f), SQ_OK);
    for (int c = 0; c < cols; c++) {
        double s = 3.0;
        for (int r = 0; r < rows; r++)
            s += (double)X[r * cols + c] * X[r * cols + c];
        assert_float_equal(norms[c], s, 1e-4);
    }
    /* beta 0 overwrites, whatever the buffer held (BLAS convention): NaN must not survive. */
    for (int c = 0; c < cols; c++)
        norms[c] = NAN;
    assert_int_equal(kn_column_sq_norms(norms, X, rows, cols, 0.0f), SQ_OK);
    for (int c = 0; c < cols; c++) {
        double s = 0.0;
        for (int r = 0; r < rows; r++)
            s += (double)X[r * cols + c] * X[r * cols + c];
        assert_float_equal(norms[c], s, 1e-4);
    }
    free(X);
    free(H);
    free(expect);
}

/* Exact sums (kernels/fixed_sum.h): on-grid addends sum exactly (checked against
 * integer arithmetic), any order and any split into partial sums added lane by
 * lane (an all-reduce) gives the same bits, and bad addends are refused. */
static void test_fixed_sums_are_exact_and_order_free(void **state)
{
    (void)state;
    enum { N = 257, TERMS = 64 };
    float *x = malloc(sizeof(float) * N * TERMS), *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    int64_t *one = calloc(3 * N, sizeof(int64_t)), *left = calloc(3 * N, sizeof(int64_t)),
            *right = calloc(3 * N, sizeof(int64_t));
    int64_t exact[N] = {0};
    /* on-grid values k * 2^-20 (|k| < 2^23, exact in float): the sum is sum(k) * 2^-20 exactly */
    for (int t = 0; t < TERMS; t++)
        for (int i = 0; i < N; i++) {
            int64_t k = (int64_t)(uniform() * 8388607.0f);
            x[t * N + i] = ldexpf((float)k, -20);
            exact[i] += k;
        }
    for (int t = 0; t < TERMS; t++)
        assert_int_equal(kn_fixed_accumulate(one, x + (size_t)t * N, N, 1, N), SQ_OK);
    assert_int_equal(kn_fixed_to_f32(a, one, 1.0, N), SQ_OK);
    for (int i = 0; i < N; i++)
        assert_true(a[i] == (float)ldexp((double)exact[i], -20));
    /* mixed magnitudes and signs: forward in one sum, backward in two halves added lane-wise */
    for (int i = 0; i < N * TERMS; i++)
        x[i] = uniform() * powf(10.0f, 8.0f * uniform() - 2.0f);
    memset(one, 0, sizeof(int64_t) * 3 * N);
    for (int t = 0; t < TERMS; t++)
        assert_int_equal(kn_fixed_accumulate(one, x + (size_t)t * N, N, 1, N), SQ_OK);
    for (int t = TERMS - 1; t >= 0; t--)
        assert_int_equal(kn_fixed_accumulate(t % 3 ? left : right, x + (size_t)t * N, N, 1, N), SQ_OK);
    for (int i = 0; i < 3 * N; i++)
        left[i] += right[i];
    /* several arrays per call (here 5, 5, ..., 4, with a gap of 3 floats between arrays): the same lanes */
    float *spaced = malloc(sizeof(float) * (N + 3) * TERMS);
    int64_t *batched = calloc(3 * N, sizeof(int64_t));
    for (int t = 0; t < TERMS; t++)
        memcpy(spaced + (size_t)t * (N + 3), x + (size_t)t * N, sizeof(float) * N);
    for (int t = 0; t < TERMS; t += 5)
        assert_int_equal(kn_fixed_accumulate(batched, spaced + (size_t)t * (N + 3), N, TERMS - t < 5 ? TERMS - t : 5,
                                             N + 3), SQ_OK);
    assert_memory_equal(batched, one, sizeof(int64_t) * 3 * N);
    assert_int_equal(kn_fixed_accumulate(batched, spaced, N, 0, N), SQ_ERR_ARG);
    assert_int_equal(kn_fixed_accumulate(batched, spaced, N, 2, N - 1), SQ_ERR_ARG);
    free(spaced), free(batched);
    assert_int_equal(kn_fixed_to_f32(a, one, 2.0 / TERMS, N), SQ_OK);
    assert_int_equal(kn_fixed_to_f32(b, left, 2.0 / TERMS, N), SQ_OK);
    assert_memory_equal(a, b, sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        long double sum = 0;
        for (int t = 0; t < TERMS; t++)
            sum += x[t * N + i];
        assert_true(fabsl((long double)a[i] - sum * 2 / TERMS) <= 1e-6L * fabsl(sum * 2 / TERMS) + 1e-12L);
    }
    /* beyond 2^47, or not finite: the entry is poisoned and reading it fails, naming it */
    x[5] = 1e15f;
    x[9] = NAN;
    assert_int_equal(kn_fixed_accumulate(one, x, N, 1, N), SQ_OK);
    assert_int_equal(kn_fixed_accumulate(one, x + N, N, 1, N), SQ_OK);
    assert_int_equal(kn_fixed_to_f32(a, one, 1.0, N), SQ_ERR_NUMERIC);
    assert_non_null(strstr(sq_last_error(), "sum entry 5"));
    x[5] = 1.0f, x[9] = 1.0f; /* a bad addend in the second of three arrays of one call */
    x[N + 4 + 7] = INFINITY;
    memset(left, 0, sizeof(int64_t) * 3 * N);
    assert_int_equal(kn_fixed_accumulate(left, x + 4, N, 3, N), SQ_OK);
    assert_int_equal(kn_fixed_to_f32(a, left, 1.0, N), SQ_ERR_NUMERIC);
    assert_non_null(strstr(sq_last_error(), "sum entry 7:")); /* only the second array's entry 7 is bad */
    free(x), free(a), free(b), free(one), free(left), free(right);
}

/* The upper-triangle path (kn_hessian_upper, kn_fixed_accumulate_upper, kn_fixed_to_f32_symmetric)
 * gives the floats of the full one (kn_hessian_accumulate's mirrored products, kn_fixed_accumulate,
 * kn_fixed_to_f32) bit for bit, leaves the lower lanes untouched, and names a bad entry. */
static void test_symmetric_sums_from_the_upper_triangle(void **state)
{
    (void)state;
    enum { ROWS = 37, COLS = 29, SEQS = 5 };
    const size_t n = (size_t)COLS * COLS;
    float *X = random_matrix(SEQS * ROWS, COLS);
    float *products = malloc(sizeof(float) * n * SEQS), *mirrored = malloc(sizeof(float) * n * SEQS);
    float *full = malloc(sizeof(float) * n), *sym = malloc(sizeof(float) * n);
    int64_t *full_acc = calloc(3 * n, sizeof(int64_t)), *upper_acc = calloc(3 * n, sizeof(int64_t));
    for (int s = 0; s < SEQS; s++) {
        assert_int_equal(kn_hessian_upper(products + s * n, X + (size_t)s * ROWS * COLS, ROWS, COLS), SQ_OK);
        assert_int_equal(kn_hessian_accumulate(mirrored + s * n, X + (size_t)s * ROWS * COLS, ROWS, COLS, 1.0f, 0.0f),
                         SQ_OK);
        for (int r = 0; r < COLS; r++)
            for (int c = r; c < COLS; c++)
                assert_true(products[s * n + (size_t)r * COLS + c] == mirrored[s * n + (size_t)r * COLS + c]);
    }
    assert_int_equal(kn_fixed_accumulate(full_acc, mirrored, n, SEQS, n), SQ_OK);
    assert_int_equal(kn_fixed_accumulate_upper(upper_acc, products, COLS, 3, n), SQ_OK); /* 3 + 2 arrays */
    assert_int_equal(kn_fixed_accumulate_upper(upper_acc, products + 3 * n, COLS, 2, n), SQ_OK);
    for (int lane = 0; lane < 3; lane++)
        for (int r = 0; r < COLS; r++)
            for (int c = 0; c < COLS; c++) {
                size_t i = lane * n + (size_t)r * COLS + c;
                assert_true(r <= c ? upper_acc[i] == full_acc[i] : upper_acc[i] == 0);
            }
    assert_int_equal(kn_fixed_to_f32(full, full_acc, 2.0 / SEQS, n), SQ_OK);
    assert_int_equal(kn_fixed_to_f32_symmetric(sym, upper_acc, 2.0 / SEQS, COLS), SQ_OK);
    assert_memory_equal(sym, full, sizeof(float) * n);
    assert_int_equal(kn_fixed_accumulate_upper(upper_acc, products, COLS, 2, n - 1), SQ_ERR_ARG);
    assert_int_equal(kn_fixed_accumulate_upper(upper_acc, products, 0, 1, n), SQ_ERR_ARG);
    products[2 * COLS + 5] = NAN; /* entry (2, 5), upper */
    assert_int_equal(kn_fixed_accumulate_upper(upper_acc, products, COLS, 1, n), SQ_OK);
    assert_int_equal(kn_fixed_to_f32_symmetric(sym, upper_acc, 1.0, COLS), SQ_ERR_NUMERIC);
    char expected[32];
    snprintf(expected, sizeof expected, "sum entry %d:", 2 * COLS + 5);
    assert_non_null(strstr(sq_last_error(), expected));
    free(X), free(products), free(mirrored), free(full), free(sym), free(full_acc), free(upper_acc);
}

/* kn_gemm and kn_hessian_accumulate give the same bits on 1 and 2 threads. */
static void test_products_independent_of_thread_count(void **state)
{
    (void)state;
    const int m = 100, n = 300, k = 77;
    float *A = random_matrix(m, k), *B = random_matrix(n, k);
    float *C1 = malloc(sizeof(float) * m * n), *C2 = malloc(sizeof(float) * m * n);
    float *H1 = malloc(sizeof(float) * k * k), *H2 = malloc(sizeof(float) * k * k);
    assert_int_equal(kn_init(0), SQ_OK); /* OpenBLAS to one thread, as every program's start does */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(kn_gemm(false, true, m, n, k, 1.0f, A, k, B, k, 0.0f, C1, n), SQ_OK);
    assert_int_equal(kn_hessian_accumulate(H1, B, n, k, 1.0f, 0.0f), SQ_OK);
    omp_set_num_threads(2);
    assert_int_equal(kn_gemm(false, true, m, n, k, 1.0f, A, k, B, k, 0.0f, C2, n), SQ_OK);
    assert_int_equal(kn_hessian_accumulate(H2, B, n, k, 1.0f, 0.0f), SQ_OK);
    omp_set_num_threads(threads);
    assert_memory_equal(C1, C2, sizeof(float) * m * n);
    assert_memory_equal(H1, H2, sizeof(float) * k * k);
    free(A), free(B), free(C1), free(C2), free(H1), free(H2);
}

static void test_mark_zeros(void **state)
{
    (void)state;
    const float x[6] = {0.0f, -0.0f, 1e-45f, -1.0f, NAN, 0.5f};
    uint8_t mask[6];
    memset(mask, 7, sizeof mask);
    assert_int_equal(kn_mark_zeros(mask, x, 6), SQ_OK);
    const uint8_t expect[6] = {1, 1, 0, 0, 0, 0};
    assert_memory_equal(mask, expect, sizeof expect);
}

static void test_prepare_kills_dead_columns(void **state)
{
    (void)state;
    float H[9] = {2, 0, 1, 0, 0, 0, 1, 0, 3};
    float W[6] = {1, 2, 3, 4, 5, 6};
    float diag[3];
    assert_int_equal(kn_hessian_prepare(H, W, 2, 3, 0.5f), SQ_OK);
    assert_int_equal(kn_diagonal(diag, H, 3), SQ_OK);
    assert_float_equal(diag[0], 2.5f, 0);
    assert_float_equal(diag[1], 1.5f, 0);
    assert_float_equal(diag[2], 3.5f, 0);
    assert_float_equal(W[1], 0, 0);
    assert_float_equal(W[4], 0, 0);
    assert_float_equal(W[3], 4, 0);
}

static void test_permutations(void **state)
{
    (void)state;
    int n = 4, rows = 3;
    int32_t perm[4] = {2, 0, 3, 1};
    float *A = random_matrix(n, n), *B = malloc(sizeof(float) * n * n);
    assert_int_equal(kn_permute_symmetric(B, A, perm, n), SQ_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            assert_float_equal(B[i * n + j], A[perm[i] * n + perm[j]], 0);
    float *W = random_matrix(rows, n), *P = malloc(sizeof(float) * rows * n), *U = malloc(sizeof(float) * rows * n);
    assert_int_equal(kn_permute_columns(P, W, perm, rows, n), SQ_OK);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < n; j++)
            assert_float_equal(P[r * n + j], W[r * n + perm[j]], 0);
    assert_int_equal(kn_unpermute_columns(U, P, perm, rows, n), SQ_OK);
    assert_memory_equal(U, W, sizeof(float) * rows * n);
    perm[1] = 9;
    assert_int_equal(kn_permute_columns(P, W, perm, rows, n), SQ_ERR_ARG);
    free(A), free(B), free(W), free(P), free(U);
}

static void test_spd_inverse_and_cholesky(void **state)
{
    (void)state;
    int n = 24;
    float *H = random_spd(n), *Hi = malloc(sizeof(float) * n * n), *U = malloc(sizeof(float) * n * n);
    memcpy(Hi, H, sizeof(float) * n * n);
    assert_int_equal(kn_spd_inverse(Hi, n), SQ_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++)
                s += (double)H[i * n + k] * Hi[k * n + j];
            assert_float_equal(s, i == j ? 1.0 : 0.0, 1e-4);
            assert_float_equal(Hi[i * n + j], Hi[j * n + i], 1e-6);
        }
    memcpy(U, H, sizeof(float) * n * n);
    assert_int_equal(kn_cholesky_upper(U, n), SQ_OK);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            if (j < i)
                assert_float_equal(U[i * n + j], 0.0f, 0);
            double s = 0;
            for (int k = 0; k < n; k++)
                s += (double)U[k * n + i] * U[k * n + j];
            assert_float_equal(s, H[i * n + j], 1e-4);
        }
    float bad[4] = {1, 2, 2, 1};
    assert_int_equal(kn_spd_inverse(bad, 2), SQ_ERR_NUMERIC);
    free(H), free(Hi), free(U);
}

static void test_grid_and_rtn_hand_values(void **state)
{
    (void)state;
    /* Row 0: [-1, 0.5, 2, 1] asym 2 bits: xmin -1, xmax 2, scale 1, zero 1.
     * Row 1: all zero -> [-1, 1]; sym 2 bits on row 0 gives xmax 2, scale 4/3, zero 2. */
    float W[8] = {-1, 0.5f, 2, 1, 0, 0, 0, 0};
    float scale[2], zero[2];
    assert_int_equal(kn_quant_grid(scale, zero, 1, 0, W, 2, 4, 0, 4, 2, false), SQ_OK);
    assert_float_equal(scale[0], 1.0f, 0);
    assert_float_equal(zero[0], 1.0f, 0);
    assert_float_equal(scale[1], 2.0f / 3.0f, 1e-7);
    assert_float_equal(zero[1], 2.0f, 0); /* round(1.5) = 2 (half to even) */
    uint8_t codes[8];
    int32_t groups[4] = {0, 0, 0, 0};
    assert_int_equal(kn_quantize_rtn(W, codes, scale, zero, 1, groups, 2, 4, 2), SQ_OK);
    /* 0.5/1 = 0.5 rounds to 0 (half to even) -> q = 1 -> 0. */
    uint8_t expect_codes[4] = {0, 1, 3, 2};
    assert_memory_equal(codes, expect_codes, 4);
    assert_float_equal(W[1], 0.0f, 0);
    assert_float_equal(W[2], 2.0f, 0);
    float V[4] = {-1, 0.5f, 2, 1};
    assert_int_equal(kn_quant_grid(scale, zero, 1, 0, V, 1, 4, 0, 4, 2, true), SQ_OK);
    assert_float_equal(scale[0], 4.0f / 3.0f, 1e-6);
    assert_float_equal(zero[0], 2.0f, 0);
}

/* The reference GPTQ loop on one block written plainly over the full matrix. */
static void naive_gptq_block(float *W, uint8_t *codes, float *Err, const float *Hinv, float *scale, float *zero,
                             int ldg, const int32_t *goc, int group_size, int rows, int n, int col0, int ncols,
                             int bits, bool sym)
{
    float *Wstart = malloc(sizeof(float) * rows * n);
    memcpy(Wstart, W, sizeof(float) * rows * n);
    float maxq = (float)((1 << bits) - 1);
    for (int j = col0; j < col0 + ncols; j++) {
        if (group_size > 0 && j % group_size == 0) {
            int width = j + group_size <= n ? group_size : n - j;
            kn_quant_grid(scale, zero, ldg, goc[j], Wstart, rows, n, j, width, bits, sym);
        }
        for (int r = 0; r < rows; r++) {
            float s = scale[r * ldg + goc[j]], z = zero[r * ldg + goc[j]];
            float w = W[r * n + j];
            float q = fminf(fmaxf(nearbyintf(w / s) + z, 0), maxq);
            codes[r * n + j] = (uint8_t)q;
            float dq = s * (q - z);
            float err = (w - dq) / Hinv[j * n + j];
            for (int k = j + 1; k < col0 + ncols; k++)
                W[r * n + k] -= err * Hinv[j * n + k];
            Err[r * ncols + j - col0] = err;
            W[r * n + j] = dq;
        }
    }
    free(Wstart);
}

/* kn_dequantize against the formula written out, with an act-order style group map,
 * and a group index outside the grid refused. */
static void test_dequantize(void **state)
{
    (void)state;
    enum { rows = 3, n = 5, ldg = 2 };
    const uint8_t codes[rows * n] = {0, 1, 2, 3, 15, 7, 8, 9, 4, 0, 15, 14, 13, 12, 11};
    const float scale[rows * ldg] = {0.5f, 2.0f, 0.25f, 1.0f, 3.0f, 0.125f};
    const float zero[rows * ldg] = {8.0f, 1.0f, 7.0f, 0.0f, 15.0f, 3.0f};
    const int32_t group_of_column[n] = {1, 0, 1, 0, 0};
    float W[rows * n];
    assert_int_equal(kn_dequantize(W, codes, scale, zero, ldg, group_of_column, rows, n), SQ_OK);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < n; c++) {
            int g = group_of_column[c];
            assert_true(W[r * n + c] == scale[r * ldg + g] * ((float)codes[r * n + c] - zero[r * ldg + g]));
        }
    assert_true(W[0] == 2.0f * (0.0f - 1.0f) && W[14] == 3.0f * (11.0f - 15.0f));
    const int32_t bad_map[n] = {1, 0, 2, 0, 0};
    assert_int_equal(kn_dequantize(W, codes, scale, zero, ldg, bad_map, rows, n), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "column 2"));
}

static void test_gptq_block_matches_naive(void **state)
{
    (void)state;
    int rows = 6, n = 20, gs = 8, ldg = 3, col0 = 4, ncols = 10, bits = 3;
    float *U = random_spd(n);
    assert_int_equal(kn_cholesky_upper(U, n), SQ_OK);
    float *W1 = random_matrix(rows, n), *W2 = malloc(sizeof(float) * rows * n);
    memcpy(W2, W1, sizeof(float) * rows * n);
    int32_t goc[20];
    for (int j = 0; j < n; j++)
        goc[j] = j / gs;
    float s1[18], z1[18], s2[18], z2[18], e1[60], e2[60];
    uint8_t c1[120] = {0}, c2[120] = {0};
    /* Group 0 was computed by an earlier block. */
    kn_quant_grid(s1, z1, ldg, 0, W1, rows, n, 0, gs, bits, false);
    memcpy(s2, s1, sizeof s1);
    memcpy(z2, z1, sizeof z1);
    assert_int_equal(kn_gptq_block(W1, c1, e1, U, s1, z1, ldg, goc, true, gs, rows, n, col0, ncols, bits, false,
                                   NULL),
                     SQ_OK);
    naive_gptq_block(W2, c2, e2, U, s2, z2, ldg, goc, gs, rows, n, col0, ncols, bits, false);
    assert_memory_equal(c1, c2, sizeof c1);
    for (int i = 0; i < rows * n; i++)
        assert_float_equal(W1[i], W2[i], 1e-6);
    for (int i = 0; i < rows * ncols; i++)
        assert_float_equal(e1[i], e2[i], 1e-6);
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < ldg; g++)
            assert_float_equal(s1[r * ldg + g], s2[r * ldg + g], 0);
    free(U), free(W1), free(W2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hessian_accumulate_matches_naive),
        cmocka_unit_test(test_fixed_sums_are_exact_and_order_free),
        cmocka_unit_test(test_products_independent_of_thread_count),
        cmocka_unit_test(test_mark_zeros),
        cmocka_unit_test(test_prepare_kills_dead_columns),
        cmocka_unit_test(test_symmetric_sums_from_the_upper_triangle),
        cmocka_unit_test(test_permutations),
        cmocka_unit_test(test_spd_inverse_and_cholesky),
        cmocka_unit_test(test_grid_and_rtn_hand_values),
        cmocka_unit_test(test_dequantize),
        cmocka_unit_test(test_gptq_block_matches_naive),
    };
    return cmocka_run_group_tests_name("kernels_quant", tests, NULL, NULL);
}
