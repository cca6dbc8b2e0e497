/* test_kernels_cpu.c: the layer kernels of the CPU backend against naive
 * double-precision loops written here from their definitions, on fresh random
 * inputs each run.
 *
 * Tolerances: the kernels compute in fp32 (some sums in double), the
 * references in double. Elementwise results (swiglu, add, embedding, rope,
 * fake quantization) must agree to 1e-5 relative / 1e-6 absolute; reductions
 * over up to a few hundred terms (rmsnorm, attention, cross-entropy) to 1e-4
 * relative / 1e-5 absolute, which leaves room for fp32 rounding of the sums
 * and nothing for a wrong formula. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "tests/unit/random_inputs.h"

static void assert_close(double got, double want, double rel, double abs_tol, const char *what, size_t i)
{
    double err = fabs(got - want);
    if (err > abs_tol + rel * fabs(want) || isnan(got)) {
        fail_msg("%s[%zu]: got %.9g, want %.9g (|err| %.3g)", what, i, got, want, err);
    }
}

static void test_rmsnorm(void **state)
{
    (void)state;
    int rows = 7, dim = 96;
    float eps = 1e-5f;
    float *x = random_floats((size_t)rows * dim, -3, 3), *w = random_floats(dim, 0.5, 1.5);
    float *out = malloc(sizeof(float) * rows * dim);
    assert_int_equal(kn_rmsnorm(out, x, w, rows, dim, eps), SQ_OK);
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)x[r * dim + i] * x[r * dim + i];
        double inv = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            assert_close(out[r * dim + i], x[r * dim + i] * inv * w[i], 1e-4, 1e-5, "rmsnorm", r * dim + i);
    }
    free(x), free(w), free(out);
}

static void test_rope_rotate_half(void **state)
{
    (void)state;
    int batch = 2, seq = 5, heads = 3, hd = 16, pos0 = 4, half = hd / 2;
    size_t n = (size_t)batch * seq * heads * hd;
    float *x = random_floats(n, -2, 2), *orig = malloc(sizeof(float) * n);
    memcpy(orig, x, sizeof(float) * n);
    float inv_freq[8];
    for (int i = 0; i < half; i++)
        inv_freq[i] = (float)pow(10000.0, -2.0 * i / hd);
    assert_int_equal(kn_rope(x, inv_freq, batch, seq, heads, hd, pos0), SQ_OK);
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq; t++)
            for (int h = 0; h < heads; h++) {
                size_t base = (((size_t)b * seq + t) * heads + h) * hd;
                for (int i = 0; i < hd; i++) {
                    /* out = x*cos(θ) + rotate_half(x)*sin(θ), rotate_half(x) = [-x2, x1], θ_i = pos*f[i mod half] */
                    double theta = (double)(pos0 + t) * inv_freq[i % half];
                    double rotated = i < half ? -(double)orig[base + i + half] : (double)orig[base + i - half];
                    double want = orig[base + i] * cos(theta) + rotated * sin(theta);
                    assert_close(x[base + i], want, 1e-5, 1e-6, "rope", base + i);
                }
            }
    free(x), free(orig);
}

static void check_attention(int batch, int seq, int n_heads, int n_kv, int hd)
{
    size_t qn = (size_t)batch * seq * n_heads * hd, kvn = (size_t)batch * seq * n_kv * hd;
    float *q = random_floats(qn, -2, 2), *k = random_floats(kvn, -2, 2), *v = random_floats(kvn, -1, 1);
    float *out = malloc(sizeof(float) * qn), *lse2 = malloc(sizeof(float) * (size_t)batch * n_heads * seq);
    assert_int_equal(kn_attention(out, lse2, q, k, v, batch, seq, n_heads, n_kv, hd), SQ_OK);
    double *p = malloc(sizeof(double) * seq);
    for (int b = 0; b < batch; b++)
        for (int h = 0; h < n_heads; h++) {
            int kvh = h * n_kv / n_heads;
            for (int t = 0; t < seq; t++) {
                double z = 0;
                for (int s = 0; s <= t; s++) {
                    double dot = 0;
                    for (int d = 0; d < hd; d++)
                        dot += (double)q[(((size_t)b * seq + t) * n_heads + h) * hd + d] *
                               k[(((size_t)b * seq + s) * n_kv + kvh) * hd + d];
                    p[s] = exp(dot / sqrt((double)hd));
                    z += p[s];
                }
                size_t row = ((size_t)b * n_heads + h) * seq + t; /* log2 of the softmax's denominator */
                assert_close(lse2[row], log2(z), 1e-5, 1e-5, "attention log-sum-exp", row);
                for (int d = 0; d < hd; d++) {
                    double want = 0;
                    for (int s = 0; s <= t; s++)
                        want += p[s] / z * v[(((size_t)b * seq + s) * n_kv + kvh) * hd + d];
                    size_t i = (((size_t)b * seq + t) * n_heads + h) * hd + d;
                    assert_close(out[i], want, 1e-4, 1e-5, "attention", i);
                }
            }
        }
    free(q), free(k), free(v), free(out), free(p), free(lse2);
}

static void test_attention_mha(void **state)
{
    (void)state;
    check_attention(2, 9, 4, 4, 8);
}

static void test_attention_gqa(void **state)
{
    (void)state;
    check_attention(3, 7, 6, 2, 16);
}

static void test_attention_large_scores_are_stable(void **state)
{
    (void)state;
    /* scores of order 1e3 overflow exp() without the max subtraction */
    int seq = 4, hd = 4;
    float q[16], k[16], v[16], out[16];
    for (int i = 0; i < 16; i++) {
        q[i] = 100.0f;
        k[i] = (float)(10 + i / 4);
        v[i] = (float)(i / 4);
    }
    assert_int_equal(kn_attention(out, NULL, q, k, v, 1, seq, 1, 1, hd), SQ_OK);
    for (int i = 0; i < 16; i++)
        assert_true(isfinite(out[i]));
    /* the last key dominates by a margin of 200 in the score: the output is its value */
    assert_close(out[15], 3.0, 1e-6, 1e-6, "attention-stable", 15);
}

static void test_swiglu_and_add(void **state)
{
    (void)state;
    size_t n = 1000;
    float *g = random_floats(n, -6, 6), *u = random_floats(n, -2, 2), *out = malloc(sizeof(float) * n);
    assert_int_equal(kn_swiglu(out, g, u, n), SQ_OK);
    for (size_t i = 0; i < n; i++)
        assert_close(out[i], (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i], 1e-5, 1e-6, "swiglu", i);
    float *acc = random_floats(n, -1, 1), *before = malloc(sizeof(float) * n);
    memcpy(before, acc, sizeof(float) * n);
    assert_int_equal(kn_add_inplace(acc, g, n), SQ_OK);
    for (size_t i = 0; i < n; i++)
        assert_close(acc[i], (double)before[i] + g[i], 1e-6, 1e-6, "add", i);
    free(g), free(u), free(out), free(acc), free(before);
}

/* u = x Aᵀ and out = x Wᵀ + bias + scale · u Bᵀ (reductions over in + r terms). */
static void test_linear_lora(void **state)
{
    (void)state;
    enum { ROWS = 7, IN = 40, OUT = 12, R = 4 };
    float *x = random_floats(ROWS * IN, -1, 1), *W = random_floats(OUT * IN, -0.2, 0.2);
    float *A = random_floats(R * IN, -0.2, 0.2), *B = random_floats(OUT * R, -0.2, 0.2);
    float *bias = random_floats(OUT, -1, 1), *out = malloc(sizeof(float) * ROWS * OUT);
    float *u = malloc(sizeof(float) * ROWS * R);
    assert_int_equal(kn_linear_lora(out, u, x, W, bias, A, B, 1.5f, ROWS, IN, OUT, R), SQ_OK);
    for (int r = 0; r < ROWS; r++) {
        double ur[R];
        for (int k = 0; k < R; k++) {
            ur[k] = 0;
            for (int i = 0; i < IN; i++)
                ur[k] += (double)x[r * IN + i] * A[k * IN + i];
            assert_close(u[r * R + k], ur[k], 1e-4, 1e-5, "lora u", (size_t)(r * R + k));
        }
        for (int o = 0; o < OUT; o++) {
            double y = bias[o];
            for (int i = 0; i < IN; i++)
                y += (double)x[r * IN + i] * W[o * IN + i];
            for (int k = 0; k < R; k++)
                y += 1.5 * ur[k] * B[o * R + k];
            assert_close(out[r * OUT + o], y, 1e-4, 1e-5, "lora out", (size_t)(r * OUT + o));
        }
    }
    free(x), free(W), free(A), free(B), free(bias), free(out), free(u);
}

static void test_embedding(void **state)
{
    (void)state;
    int vocab = 11, dim = 5, n = 6;
    float *table = random_floats((size_t)vocab * dim, -1, 1), out[30];
    int32_t ids[6];
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(uniform() * vocab);
    assert_int_equal(kn_embedding(out, table, ids, n, dim, vocab), SQ_OK);
    for (int i = 0; i < n; i++)
        for (int d = 0; d < dim; d++)
            assert_true(out[i * dim + d] == table[ids[i] * dim + d]);
    ids[3] = vocab;
    assert_int_equal(kn_embedding(out, table, ids, n, dim, vocab), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "token id 11 at position 3"));
    ids[3] = -2;
    assert_int_equal(kn_embedding(out, table, ids, n, dim, vocab), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "token id -2"));
    free(table);
}

static void test_cross_entropy(void **state)
{
    (void)state;
    int rows = 5, vocab = 300;
    float *logits = random_floats((size_t)rows * vocab, -8, 8), nll[5];
    logits[2 * vocab + 17] = 90.0f; /* exp(90) overflows fp32: needs the max subtraction */
    int32_t targets[5];
    for (int r = 0; r < rows; r++)
        targets[r] = (int32_t)(uniform() * vocab);
    assert_int_equal(kn_cross_entropy(nll, logits, targets, rows, vocab), SQ_OK);
    for (int r = 0; r < rows; r++) {
        double m = -INFINITY, z = 0;
        for (int i = 0; i < vocab; i++)
            m = fmax(m, logits[r * vocab + i]);
        for (int i = 0; i < vocab; i++)
            z += exp(logits[r * vocab + i] - m);
        assert_close(nll[r], m + log(z) - logits[r * vocab + targets[r]], 1e-5, 1e-5, "cross_entropy", r);
    }
    targets[1] = vocab;
    assert_int_equal(kn_cross_entropy(nll, logits, targets, rows, vocab), SQ_ERR_ARG);
    free(logits);
}

static void test_fake_quantize_rows(void **state)
{
    (void)state;
    int rows = 6, dim = 32;
    for (int bits = 2; bits <= 8; bits += 2) {
        float *x = random_floats((size_t)rows * dim, -3, 5), *orig = malloc(sizeof(float) * rows * dim);
        memcpy(orig, x, sizeof(float) * rows * dim);
        assert_int_equal(kn_fake_quantize_rows(x, rows, dim, bits), SQ_OK);
        double maxq = (1 << bits) - 1;
        for (int r = 0; r < rows; r++) {
            double lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < dim; i++)
                lo = fmin(lo, orig[r * dim + i]), hi = fmax(hi, orig[r * dim + i]);
            double scale = (hi - lo) / maxq;
            for (int i = 0; i < dim; i++) {
                double want = lo + scale * round((orig[r * dim + i] - lo) / scale);
                assert_close(x[r * dim + i], want, 1e-5, 1e-5, "fake_quantize", r * dim + i);
                /* never further than half a step from the input */
                assert_true(fabs(x[r * dim + i] - orig[r * dim + i]) <= scale * 0.5 + 1e-5);
            }
        }
        free(x), free(orig);
    }
}

int main(void)
{
    rng_state = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("# seed %llu\n", (unsigned long long)rng_state);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope_rotate_half),
        cmocka_unit_test(test_attention_mha),
        cmocka_unit_test(test_attention_gqa),
        cmocka_unit_test(test_attention_large_scores_are_stable),
        cmocka_unit_test(test_swiglu_and_add),
        cmocka_unit_test(test_linear_lora),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_fake_quantize_rows),
    };
    return cmocka_run_group_tests_name("kernels_cpu", tests, NULL, NULL);
}
