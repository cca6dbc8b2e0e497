/* test_quant_gptq.c: the Hessian accumulator's running normalisation and its
 * merge across ranks, GPTQ/RTN option checks, and the consistency of a solve's
 * outputs (codes, grids, g_idx, dequantized weights, loss), and a stacked solve of
 * several linears against their separate solves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/rtn.h"

static float *random_matrix(int rows, int cols, unsigned seed)
{
    srand(seed);
    float *m = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++)
        m[i] = (float)rand() / RAND_MAX - 0.5f;
    return m;
}

static sq_quant_options default_options(void)
{
    return (sq_quant_options){.bits = 4, .group_size = 16, .sym = true, .damp_percent = 0.01, .block_size = 8,
                              .true_sequential = true};
}

static void test_hessian_sums_sequences(void **state)
{
    (void)state;
    int cols = 6, seq = 3;
    float *X = random_matrix(5 * seq, cols, 1); /* 5 sequences */
    sq_hessian all, a, b;
    assert_int_equal(sq_hessian_init(&all, cols), SQ_OK);
    assert_int_equal(sq_hessian_add(&all, X, 2 * seq, 2), SQ_OK);
    assert_int_equal(sq_hessian_add(&all, X + 2 * seq * cols, 3 * seq, 3), SQ_OK);
    assert_int_equal(all.nsamples, 5);
    assert_int_equal(sq_hessian_finish(&all, 5), SQ_OK);
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double s = 0;
            for (int r = 0; r < 5 * seq; r++)
                s += (double)X[r * cols + i] * X[r * cols + j];
            assert_float_equal(all.H[i * cols + j], 2.0 / 5.0 * s, 1e-5);
        }
    /* Two ranks with 2 and 3 sequences: their sums added, then finished with the
     * total, give exactly the bits of one rank that saw all five. */
    assert_int_equal(sq_hessian_init(&a, cols), SQ_OK);
    assert_int_equal(sq_hessian_init(&b, cols), SQ_OK);
    assert_int_equal(sq_hessian_add(&a, X, 2 * seq, 2), SQ_OK);
    for (int s = 2; s < 5; s++) /* other micro-batches: one sequence at a time */
        assert_int_equal(sq_hessian_add(&b, X + s * seq * cols, seq, 1), SQ_OK);
    for (size_t k = 0; k < sq_hessian_sum_count(&a); k++) /* the int64 all-reduce of the ranks' lanes */
        a.sum[k] += b.sum[k];
    assert_int_equal(sq_hessian_finish(&a, 5), SQ_OK);
    assert_memory_equal(a.H, all.H, sizeof(float) * cols * cols);
    assert_int_equal(sq_hessian_finish(&a, 5), SQ_ERR_ARG); /* already finished */
    assert_int_equal(sq_hessian_finish(&b, 2), SQ_ERR_ARG); /* fewer than this rank's 3 */
    assert_int_equal(sq_hessian_add(&b, X, 0, 0), SQ_ERR_ARG);
    assert_int_equal(sq_hessian_add(&b, X, 5, 2), SQ_ERR_ARG); /* rows not a multiple of sequences */
    sq_hessian_free(&all), sq_hessian_free(&a), sq_hessian_free(&b);
    free(X);
}

static void test_options_refused(void **state)
{
    (void)state;
    float W[64], H[64 * 64] = {0};
    sq_quant_result res;
    sq_quant_options opt = default_options();
    opt.bits = 5;
    assert_int_equal(sq_gptq_solve(W, H, 1, 64, &opt, &res), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "bits must be one of 2,3,4,8"));
    assert_int_equal(sq_rtn_quantize(W, 1, 64, &opt, &res), SQ_ERR_ARG);
    opt = default_options();
    opt.group_size = 0;
    assert_int_equal(sq_gptq_solve(W, H, 1, 64, &opt, &res), SQ_ERR_ARG);
    opt = default_options();
    opt.damp_percent = 0;
    assert_int_equal(sq_gptq_solve(W, H, 1, 64, &opt, &res), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "damp_percent"));
}

/* Outputs agree with each other: W = scale*(code - zero) per g_idx; act-order g_idx is a
 * permutation of the sequential one; the loss is positive; a dead column is exactly 0. */
static void check_solve(bool desc_act, bool static_groups, bool sym)
{
    int rows = 8, cols = 48, nrows_x = 96;
    float *X = random_matrix(nrows_x, cols, 7);
    for (int r = 0; r < nrows_x; r++) {
        X[r * cols + 3] = 0; /* dead input */
        for (int c = 0; c < cols; c++)
            X[r * cols + c] *= 1.0f + (float)(c % 5);
    }
    sq_hessian h;
    assert_int_equal(sq_hessian_init(&h, cols), SQ_OK);
    assert_int_equal(sq_hessian_add(&h, X, nrows_x, 12), SQ_OK);
    assert_int_equal(sq_hessian_finish(&h, 12), SQ_OK);
    float *W = random_matrix(rows, cols, 9);
    sq_quant_options opt = default_options();
    opt.desc_act = desc_act;
    opt.static_groups = static_groups;
    opt.sym = sym;
    sq_quant_result res;
    assert_int_equal(sq_gptq_solve(W, h.H, rows, cols, &opt, &res), SQ_OK);
    assert_int_equal(res.ngroups, 3);
    assert_true(res.loss > 0);
    int count[3] = {0};
    for (int j = 0; j < cols; j++)
        count[res.g_idx[j]]++;
    for (int g = 0; g < 3; g++)
        assert_int_equal(count[g], 16);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) {
            int g = res.g_idx[j];
            float s = res.scales[r * 3 + g], z = res.zeros[r * 3 + g];
            assert_true(res.codes[r * cols + j] <= 15);
            assert_float_equal(W[r * cols + j], s * ((float)res.codes[r * cols + j] - z), 1e-6);
        }
    for (int r = 0; r < rows; r++)
        assert_float_equal(W[r * cols + 3], 0.0f, 0);
    sq_quant_result_free(&res);
    sq_hessian_free(&h);
    free(W), free(X);
}

static void test_solve_outputs_consistent(void **state)
{
    (void)state;
    check_solve(false, false, true);
    check_solve(true, false, false);
    check_solve(true, true, true);
    check_solve(false, true, false);
}

/* Three linears (5, 8 and 3 rows) stacked on one Hessian: each part's codes, grids,
 * g_idx, loss and dequantized rows are its own sq_gptq_solve's, up to the rounding of
 * the lazy-update GEMMs (whose row count differs): codes at most one step apart, and
 * few of them; with act-order and without. */
static void check_stacked(bool desc_act)
{
    enum { PARTS = 3 };
    int part_rows[PARTS] = {5, 8, 3}, rows = 16, cols = 32, nrows_x = 64;
    float *X = random_matrix(nrows_x, cols, 11), *W = random_matrix(rows, cols, 13);
    sq_hessian h;
    assert_int_equal(sq_hessian_init(&h, cols), SQ_OK);
    assert_int_equal(sq_hessian_add(&h, X, nrows_x, 8), SQ_OK);
    assert_int_equal(sq_hessian_finish(&h, 8), SQ_OK);
    sq_quant_options opt = default_options();
    opt.desc_act = desc_act;
    float *Ws = malloc(sizeof(float) * rows * cols), *H = malloc(sizeof(float) * cols * cols);
    memcpy(Ws, W, sizeof(float) * rows * cols);
    memcpy(H, h.H, sizeof(float) * cols * cols);
    sq_quant_result parts[PARTS];
    assert_int_equal(sq_gptq_solve_stacked(Ws, H, cols, &opt, PARTS, part_rows, parts), SQ_OK);
    for (int p = 0, row0 = 0; p < PARTS; row0 += part_rows[p++]) {
        float *Wp = W + row0 * cols;
        memcpy(H, h.H, sizeof(float) * cols * cols);
        sq_quant_result alone;
        assert_int_equal(sq_gptq_solve(Wp, H, part_rows[p], cols, &opt, &alone), SQ_OK);
        assert_int_equal(parts[p].rows, part_rows[p]);
        assert_memory_equal(parts[p].g_idx, alone.g_idx, sizeof(int32_t) * cols);
        int differing = 0;
        for (int k = 0; k < part_rows[p] * cols; k++) {
            assert_true(abs((int)parts[p].codes[k] - (int)alone.codes[k]) <= 1);
            differing += parts[p].codes[k] != alone.codes[k];
            float step = alone.scales[(k / cols) * alone.ngroups + alone.g_idx[k % cols]];
            assert_float_equal(Ws[row0 * cols + k], Wp[k], 1.001f * step); /* one step at most */
        }
        assert_true(differing <= part_rows[p] * cols / 50);
        for (int k = 0; k < part_rows[p] * alone.ngroups; k++) {
            assert_float_equal(parts[p].scales[k], alone.scales[k], 1e-4 * fabsf(alone.scales[k]));
            assert_float_equal(parts[p].zeros[k], alone.zeros[k], 0);
        }
        assert_float_equal(parts[p].loss, alone.loss, 1e-3 * alone.loss);
        sq_quant_result_free(&alone);
        sq_quant_result_free(&parts[p]);
    }
    sq_hessian_free(&h);
    free(W), free(Ws), free(H), free(X);
}

static void test_stacked_solve_equals_separate(void **state)
{
    (void)state;
    check_stacked(false);
    check_stacked(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hessian_sums_sequences),
        cmocka_unit_test(test_options_refused),
        cmocka_unit_test(test_solve_outputs_consistent),
        cmocka_unit_test(test_stacked_solve_equals_separate),
    };
    return cmocka_run_group_tests_name("quant_gptq", tests, NULL, NULL);
}
