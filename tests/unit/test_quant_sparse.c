/* test_quant_sparse.c: SparseGPT, Wanda and magnitude pruning on one linear —
 * the per-row zero count and the N:M pattern of every group, pruned entries
 * exactly 0, the codes of pruned entries under joint quantization, option
 * checks, and SparseGPT's reconstruction error ‖(W − Ŵ)Xᵀ‖ against the two
 * baselines on correlated inputs. Buffers go straight to the solvers: on the
 * CPU backend device memory is host memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "quant/prune.h"
#include "quant/sparsegpt.h"

enum { ROWS = 24, COLS = 64, TOKENS = 256, DEAD = 5 };

typedef struct {
    float *X; /* [TOKENS, COLS]: correlated inputs, column DEAD all zero */
    float *W; /* [ROWS, COLS] */
    float *H; /* [COLS, COLS]: 2/TOKENS · XᵀX */
} problem;

static float normal(sq_rng *rng)
{
    double u1 = 1.0 - (double)(sq_rng_next(rng) >> 11) / 9007199254740992.0;
    double u2 = (double)(sq_rng_next(rng) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Inputs mixed by a random matrix (so H is far from diagonal) with uneven column scales. */
static problem make_problem(uint64_t seed)
{
    sq_rng rng;
    sq_rng_seed(&rng, seed);
    problem p = {malloc(sizeof(float) * TOKENS * COLS), malloc(sizeof(float) * ROWS * COLS),
                 malloc(sizeof(float) * COLS * COLS)};
    float *mix = malloc(sizeof(float) * COLS * COLS), *z = malloc(sizeof(float) * COLS);
    for (int i = 0; i < COLS * COLS; i++)
        mix[i] = normal(&rng) / 8.0f;
    for (int t = 0; t < TOKENS; t++) {
        for (int k = 0; k < COLS; k++)
            z[k] = normal(&rng);
        for (int c = 0; c < COLS; c++) {
            double x = 0;
            for (int k = 0; k < COLS; k++)
                x += (double)z[k] * mix[k * COLS + c];
            p.X[t * COLS + c] = c == DEAD ? 0.0f : (float)(x * (1.0 + (c % 7)));
        }
    }
    for (int i = 0; i < ROWS * COLS; i++)
        p.W[i] = 0.05f * normal(&rng);
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++) {
            double s = 0;
            for (int t = 0; t < TOKENS; t++)
                s += (double)p.X[t * COLS + i] * p.X[t * COLS + j];
            p.H[i * COLS + j] = (float)(2.0 * s / TOKENS);
        }
    free(mix), free(z);
    return p;
}

static void free_problem(problem *p) { free(p->X), free(p->W), free(p->H); }

static float *copy_of(const float *x, size_t n)
{
    float *y = malloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static sq_sparse_options unstructured(double sparsity)
{
    return (sq_sparse_options){.sparsity = sparsity, .block_size = 24, .damp_percent = 0.01, .group_size = 16,
                               .sym = true};
}

static sq_sparse_options pattern(int n, int m)
{
    sq_sparse_options opt = unstructured((double)n / m);
    opt.prune_n = n, opt.prune_m = m, opt.block_size = 16;
    return opt;
}

typedef enum { SPARSEGPT, WANDA, MAGNITUDE } method;
static const char *const method_names[] = {"sparsegpt", "wanda", "magnitude"};

/* The pruned copy of p's W (bits 0). */
static float *pruned_by(method m, const problem *p, const sq_sparse_options *opt)
{
    float *W = copy_of(p->W, ROWS * COLS), *H = copy_of(p->H, COLS * COLS);
    sq_status st = m == SPARSEGPT ? sq_sparsegpt_solve(W, H, ROWS, COLS, opt, NULL)
                   : m == WANDA   ? sq_wanda_prune(W, H, ROWS, COLS, opt)
                                  : sq_magnitude_prune(W, ROWS, COLS, opt);
    if (st != SQ_OK)
        fail_msg("%s: %s", method_names[m], sq_last_error());
    free(H);
    return W;
}

static int zeros_in(const float *x, int n)
{
    int zeros = 0;
    for (int i = 0; i < n; i++)
        zeros += x[i] == 0.0f;
    return zeros;
}

static void test_prune_count(void **state)
{
    (void)state;
    sq_sparse_options opt = unstructured(0.5);
    assert_int_equal(sq_prune_count(&opt, 64), 32);
    opt.sparsity = 0.3;
    assert_int_equal(sq_prune_count(&opt, 10), 3);
    assert_int_equal(sq_prune_count(&opt, 64), 19);
    opt.sparsity = 0.0;
    assert_int_equal(sq_prune_count(&opt, 64), 0);
    opt = pattern(2, 4);
    assert_int_equal(sq_prune_count(&opt, 64), 32);
    opt = pattern(3, 8);
    assert_int_equal(sq_prune_count(&opt, 64), 24);
}

/* Every row has exactly sq_prune_count zeros, for sparsities whose per-block share
 * does not divide evenly (blocks of 24 over 64 columns); Wanda and magnitude keep
 * the survivors as they were. */
static void test_unstructured_count_per_row(void **state)
{
    (void)state;
    problem p = make_problem(1);
    const double sparsities[] = {0.3, 0.5, 0.7};
    for (int s = 0; s < 3; s++)
        for (method m = SPARSEGPT; m <= MAGNITUDE; m++) {
            sq_sparse_options opt = unstructured(sparsities[s]);
            float *W = pruned_by(m, &p, &opt);
            for (int r = 0; r < ROWS; r++) {
                int zeros = zeros_in(W + r * COLS, COLS);
                if (zeros != sq_prune_count(&opt, COLS))
                    fail_msg("%s at %.1f: row %d has %d zeros, expected %d", method_names[m], sparsities[s], r,
                             zeros, sq_prune_count(&opt, COLS));
                for (int c = 0; m != SPARSEGPT && c < COLS; c++)
                    if (W[r * COLS + c] != 0.0f)
                        assert_true(W[r * COLS + c] == p.W[r * COLS + c]);
            }
            free(W);
        }
    free_problem(&p);
}

/* Exactly N zeros in every group of M consecutive inputs of every row. */
static void test_n_of_m_pattern(void **state)
{
    (void)state;
    problem p = make_problem(2);
    const int patterns[][2] = {{2, 4}, {4, 8}, {1, 4}};
    for (int k = 0; k < 3; k++)
        for (method m = SPARSEGPT; m <= MAGNITUDE; m++) {
            int n = patterns[k][0], mm = patterns[k][1];
            sq_sparse_options opt = pattern(n, mm);
            float *W = pruned_by(m, &p, &opt);
            for (int r = 0; r < ROWS; r++)
                for (int g = 0; g < COLS; g += mm)
                    if (zeros_in(W + r * COLS + g, mm) != n)
                        fail_msg("%s %d:%d: row %d, group at %d has %d zeros", method_names[m], n, mm, r, g,
                                 zeros_in(W + r * COLS + g, mm));
            free(W);
        }
    free_problem(&p);
}

/* Without pruning, SparseGPT changes nothing but the dead column (no error to spread). */
static void test_sparsegpt_zero_sparsity_is_identity(void **state)
{
    (void)state;
    problem p = make_problem(3);
    sq_sparse_options opt = unstructured(0.0);
    sq_quant_result res;
    float *W = copy_of(p.W, ROWS * COLS), *H = copy_of(p.H, COLS * COLS);
    assert_int_equal(sq_sparsegpt_solve(W, H, ROWS, COLS, &opt, &res), SQ_OK);
    for (int i = 0; i < ROWS * COLS; i++)
        assert_true(W[i] == (i % COLS == DEAD ? 0.0f : p.W[i]));
    assert_null(res.codes);
    assert_int_equal(res.rows, ROWS);
    assert_int_equal(res.cols, COLS);
    /* The dead column's weights are dropped before the sweep, so nothing is left to spread. */
    assert_true(res.loss == 0.0);
    sq_quant_result_free(&res);
    free(W), free(H), free_problem(&p);
}

/* Joint 4-bit: W is the codes on their grids; the dead column (score 0, always pruned)
 * and at least the pruned count of each row (each N:M group) sit at the zero point and
 * dequantize to exactly 0. */
static void joint_case(const sq_sparse_options *opt, const problem *p)
{
    sq_quant_result res;
    float *W = copy_of(p->W, ROWS * COLS), *H = copy_of(p->H, COLS * COLS);
    assert_int_equal(sq_sparsegpt_solve(W, H, ROWS, COLS, opt, &res), SQ_OK);
    assert_int_equal(res.bits, 4);
    assert_int_equal(res.ngroups, COLS / 16);
    int group = opt->prune_n > 0 ? opt->prune_m : COLS, need = opt->prune_n > 0 ? opt->prune_n : sq_prune_count(opt, COLS);
    for (int r = 0; r < ROWS; r++) {
        int at_zero_point = 0;
        for (int c = 0; c < COLS; c++) {
            assert_int_equal(res.g_idx[c], c / 16);
            float s = res.scales[r * res.ngroups + c / 16], z = res.zeros[r * res.ngroups + c / 16];
            uint8_t q = res.codes[r * COLS + c];
            assert_true(q <= 15);
            assert_true(W[r * COLS + c] == s * ((float)q - z));
            if (c == DEAD)
                assert_true(q == z);
            at_zero_point += q == z;
            if (q == z)
                assert_true(W[r * COLS + c] == 0.0f);
            if ((c + 1) % group == 0) {
                if (at_zero_point < need)
                    fail_msg("row %d, group ending at %d: %d codes at the zero point, %d pruned", r, c,
                             at_zero_point, need);
                at_zero_point = 0;
            }
        }
    }
    assert_true(res.loss > 0);
    sq_quant_result_free(&res);
    free(W), free(H);
}

static void test_joint_quantization_codes(void **state)
{
    (void)state;
    problem p = make_problem(4);
    for (int sym = 0; sym < 2; sym++) {
        sq_sparse_options opt = unstructured(0.5);
        opt.bits = 4, opt.sym = sym;
        joint_case(&opt, &p);
        opt = pattern(2, 4);
        opt.bits = 4, opt.sym = sym;
        joint_case(&opt, &p);
    }
    free_problem(&p);
}

/* ‖(W − Ŵ)Xᵀ‖² over the calibration tokens. */
static double reconstruction_error(const float *W, const float *pruned, const float *X)
{
    double total = 0;
    for (int r = 0; r < ROWS; r++)
        for (int t = 0; t < TOKENS; t++) {
            double y = 0;
            for (int c = 0; c < COLS; c++)
                y += ((double)W[r * COLS + c] - pruned[r * COLS + c]) * X[t * COLS + c];
            total += y * y;
        }
    return total;
}

static void test_sparsegpt_reconstructs_best(void **state)
{
    (void)state;
    problem p = make_problem(5);
    sq_sparse_options options[] = {unstructured(0.5), pattern(2, 4)};
    for (int k = 0; k < 2; k++) {
        double error[3];
        for (method m = SPARSEGPT; m <= MAGNITUDE; m++) {
            float *W = pruned_by(m, &p, &options[k]);
            error[m] = reconstruction_error(p.W, W, p.X);
            free(W);
        }
        print_message("%s: ‖(W-Ŵ)Xᵀ‖² sparsegpt %.4g wanda %.4g magnitude %.4g\n", k ? "2:4" : "50%",
                      error[SPARSEGPT], error[WANDA], error[MAGNITUDE]);
        assert_true(error[SPARSEGPT] < error[WANDA]);
        assert_true(error[SPARSEGPT] < error[MAGNITUDE]);
    }
    free_problem(&p);
}

static void expect_refused(method m, const sq_sparse_options *opt, int cols, sq_quant_result *res, const char *why)
{
    float *W = calloc((size_t)ROWS * cols, sizeof(float)), *H = calloc((size_t)cols * cols, sizeof(float));
    sq_status st = m == SPARSEGPT ? sq_sparsegpt_solve(W, H, ROWS, cols, opt, res)
                   : m == WANDA   ? sq_wanda_prune(W, H, ROWS, cols, opt)
                                  : sq_magnitude_prune(W, ROWS, cols, opt);
    assert_int_equal(st, SQ_ERR_ARG);
    if (!strstr(sq_last_error(), why))
        fail_msg("%s: message \"%s\" does not say \"%s\"", method_names[m], sq_last_error(), why);
    free(W), free(H);
}

static void test_options_refused(void **state)
{
    (void)state;
    sq_quant_result res;
    sq_sparse_options opt = unstructured(1.0);
    for (method m = SPARSEGPT; m <= MAGNITUDE; m++)
        expect_refused(m, &opt, COLS, &res, "sparsity must be in [0, 1)");
    opt = pattern(2, 4);
    for (method m = SPARSEGPT; m <= MAGNITUDE; m++)
        expect_refused(m, &opt, 66, &res, "not a multiple of the pattern's M = 4");
    opt = pattern(4, 4);
    expect_refused(WANDA, &opt, COLS, &res, "must have 0 < N < M");
    opt = pattern(2, 4);
    opt.block_size = 6;
    expect_refused(SPARSEGPT, &opt, COLS, &res, "block_size 6 is not a multiple");
    opt = unstructured(0.5);
    opt.damp_percent = 0;
    expect_refused(SPARSEGPT, &opt, COLS, &res, "damp_percent");
    opt = unstructured(0.5);
    opt.bits = 5;
    expect_refused(SPARSEGPT, &opt, COLS, &res, "bits must be one of 2,3,4,8");
    opt.bits = 4;
    expect_refused(SPARSEGPT, &opt, COLS, NULL, "needs a result for its codes");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prune_count),
        cmocka_unit_test(test_unstructured_count_per_row),
        cmocka_unit_test(test_n_of_m_pattern),
        cmocka_unit_test(test_sparsegpt_zero_sparsity_is_identity),
        cmocka_unit_test(test_joint_quantization_codes),
        cmocka_unit_test(test_sparsegpt_reconstructs_best),
        cmocka_unit_test(test_options_refused),
    };
    return cmocka_run_group_tests_name("quant_sparse", tests, NULL, NULL);
}
