/* test_kernels_backward.c: the training kernels of the CPU backend (kernels.h,
 * "training") against expectations computed another way.
 *
 * Each backward kernel is checked against central finite differences of its
 * own FORWARD kernel along random directions: for a scalar loss L = <g, f(x)>
 * with random g, the backward's <dL/dx, δ> must equal (L(x + hδ) - L(x - hδ)) / 2h.
 * The forwards run in fp32, so h = 1e-2 on O(1) inputs and the tolerance is
 * 2e-3 relative: a wrong term (a missing factor, a sign, a dropped path) is off
 * by far more. The chunked cross-entropy is checked against the one-shot
 * kn_cross_entropy and its gradient against the softmax formula in double;
 * AdamW against the update written out in double. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tests/unit/random_inputs.h"

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* A forward kernel as y = f(x) over flat buffers. */
typedef void (*forward_fn)(float *y, const float *x, void *ctx);

/* <g, f(x + h δ)> - <g, f(x - h δ)> over 2h. */
static double directional_fd(forward_fn f, void *ctx, const float *x, const float *delta, const float *g, size_t nx,
                             size_t ny)
{
    const float h = 1e-2f;
    float *xp = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny);
    assert_non_null(xp);
    assert_non_null(y);
    double plus, minus;
    for (size_t i = 0; i < nx; i++)
        xp[i] = x[i] + h * delta[i];
    f(y, xp, ctx);
    plus = dot(g, y, ny);
    for (size_t i = 0; i < nx; i++)
        xp[i] = x[i] - h * delta[i];
    f(y, xp, ctx);
    minus = dot(g, y, ny);
    free(xp), free(y);
    return (plus - minus) / (2.0 * h);
}

static void assert_derivative(double analytic, double numeric, const char *what)
{
    double err = fabs(analytic - numeric);
    if (err > 2e-3 * fabs(numeric) + 1e-3)
        fail_msg("%s: backward gives %.7g, finite differences %.7g", what, analytic, numeric);
}

/* ---- RMSNorm ---- */
typedef struct { const float *w; int rows, dim; } norm_ctx;

static void rmsnorm_f(float *y, const float *x, void *p)
{
    norm_ctx *c = p;
    assert_int_equal(kn_rmsnorm(y, x, c->w, c->rows, c->dim, 1e-5f), SQ_OK);
}

static void test_rmsnorm_backward(void **state)
{
    (void)state;
    norm_ctx c = {.rows = 5, .dim = 48};
    size_t n = (size_t)c.rows * c.dim;
    float *w = random_floats(c.dim, 0.5, 1.5), *x = random_floats(n, -2, 2), *g = random_floats(n, -1, 1);
    float *delta = random_floats(n, -1, 1), *dx = random_floats(n, -1, 1), *dx0 = malloc(sizeof(float) * n);
    c.w = w;
    memcpy(dx0, dx, sizeof(float) * n); /* the kernel accumulates: dx - dx0 is its contribution */
    assert_int_equal(kn_rmsnorm_backward(dx, g, x, w, c.rows, c.dim, 1e-5f), SQ_OK);
    for (size_t i = 0; i < n; i++)
        dx[i] -= dx0[i];
    assert_derivative(dot(dx, delta, n), directional_fd(rmsnorm_f, &c, x, delta, g, n, n), "rmsnorm");
    free(w), free(x), free(g), free(delta), free(dx), free(dx0);
}

/* ---- RoPE ---- */
typedef struct { float inv_freq[8]; int batch, seq, heads, hd; } rope_ctx;

static void rope_f(float *y, const float *x, void *p)
{
    rope_ctx *c = p;
    memcpy(y, x, sizeof(float) * c->batch * c->seq * c->heads * c->hd);
    assert_int_equal(kn_rope(y, c->inv_freq, c->batch, c->seq, c->heads, c->hd, 3), SQ_OK);
}

static void test_rope_backward(void **state)
{
    (void)state;
    rope_ctx c = {.batch = 2, .seq = 6, .heads = 3, .hd = 16};
    for (int i = 0; i < 8; i++)
        c.inv_freq[i] = (float)pow(10000.0, -2.0 * i / 16);
    size_t n = (size_t)c.batch * c.seq * c.heads * c.hd;
    float *x = random_floats(n, -2, 2), *g = random_floats(n, -1, 1), *delta = random_floats(n, -1, 1);
    float *d = malloc(sizeof(float) * n);
    memcpy(d, g, sizeof(float) * n);
    assert_int_equal(kn_rope_backward(d, c.inv_freq, c.batch, c.seq, c.heads, c.hd, 3), SQ_OK);
    assert_derivative(dot(d, delta, n), directional_fd(rope_f, &c, x, delta, g, n, n), "rope");
    free(x), free(g), free(delta), free(d);
}

/* ---- attention: q, k, v concatenated into one input vector ---- */
typedef struct { int batch, seq, heads, kv_heads, hd; size_t qn, kvn; } attn_ctx;

static void attention_f(float *y, const float *x, void *p)
{
    attn_ctx *c = p;
    assert_int_equal(
        kn_attention(y, NULL, x, x + c->qn, x + c->qn + c->kvn, c->batch, c->seq, c->heads, c->kv_heads, c->hd), SQ_OK);
}

static void check_attention_backward(int heads, int kv_heads)
{
    attn_ctx c = {.batch = 2, .seq = 7, .heads = heads, .kv_heads = kv_heads, .hd = 8};
    c.qn = (size_t)c.batch * c.seq * heads * c.hd;
    c.kvn = (size_t)c.batch * c.seq * kv_heads * c.hd;
    size_t nx = c.qn + 2 * c.kvn;
    float *x = random_floats(nx, -1.5, 1.5), *g = random_floats(c.qn, -1, 1), *delta = random_floats(nx, -1, 1);
    float *dx = malloc(sizeof(float) * nx);
    assert_int_equal(kn_attention_backward(dx, dx + c.qn, dx + c.qn + c.kvn, g, NULL, NULL, x, x + c.qn,
                                           x + c.qn + c.kvn, c.batch, c.seq, heads, kv_heads, c.hd),
                     SQ_OK);
    assert_derivative(dot(dx, delta, nx), directional_fd(attention_f, &c, x, delta, g, nx, c.qn), "attention");
    /* given the forward's out and lse2, the same gradients; one of the two alone is refused */
    float *out = malloc(sizeof(float) * c.qn), *lse2 = malloc(sizeof(float) * (size_t)c.batch * heads * c.seq);
    float *dx_saved = malloc(sizeof(float) * nx);
    assert_int_equal(kn_attention(out, lse2, x, x + c.qn, x + c.qn + c.kvn, c.batch, c.seq, heads, kv_heads, c.hd),
                     SQ_OK);
    assert_int_equal(kn_attention_backward(dx_saved, dx_saved + c.qn, dx_saved + c.qn + c.kvn, g, out, lse2, x,
                                           x + c.qn, x + c.qn + c.kvn, c.batch, c.seq, heads, kv_heads, c.hd),
                     SQ_OK);
    assert_memory_equal(dx_saved, dx, sizeof(float) * nx);
    assert_int_equal(kn_attention_backward(dx_saved, dx_saved + c.qn, dx_saved + c.qn + c.kvn, g, out, NULL, x,
                                           x + c.qn, x + c.qn + c.kvn, c.batch, c.seq, heads, kv_heads, c.hd),
                     SQ_ERR_ARG);
    sq_clear_error();
    free(x), free(g), free(delta), free(dx), free(out), free(lse2), free(dx_saved);
}

static void test_attention_backward(void **state)
{
    (void)state;
    check_attention_backward(4, 4);
    check_attention_backward(4, 2); /* grouped-query: two heads per kv head */
}

/* ---- SwiGLU: gate and up concatenated ---- */
static void swiglu_f(float *y, const float *x, void *p)
{
    size_t n = *(size_t *)p;
    assert_int_equal(kn_swiglu(y, x, x + n, n), SQ_OK);
}

static void test_swiglu_backward(void **state)
{
    (void)state;
    size_t n = 300;
    float *x = random_floats(2 * n, -4, 4), *g = random_floats(n, -1, 1), *delta = random_floats(2 * n, -1, 1);
    float *dx = malloc(sizeof(float) * 2 * n);
    assert_int_equal(kn_swiglu_backward(dx, dx + n, g, x, x + n, n), SQ_OK);
    assert_derivative(dot(dx, delta, 2 * n), directional_fd(swiglu_f, &n, x, delta, g, 2 * n, n), "swiglu");
    free(x), free(g), free(delta), free(dx);
}

/* ---- linear: dx and dW against the products written out ---- */
static void test_linear_backward(void **state)
{
    (void)state;
    int rows = 5, in = 7, out = 3;
    float *x = random_floats((size_t)rows * in, -1, 1), *W = random_floats((size_t)out * in, -1, 1);
    float *dy = random_floats((size_t)rows * out, -1, 1), *dx = calloc((size_t)rows * in, sizeof(float));
    float *dW = calloc((size_t)out * in, sizeof(float));
    assert_int_equal(kn_linear_backward(dx, dW, dy, x, W, rows, in, out, false), SQ_OK);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < in; i++) {
            double want = 0;
            for (int o = 0; o < out; o++)
                want += (double)dy[r * out + o] * W[o * in + i];
            assert_true(fabs(dx[r * in + i] - want) < 1e-5);
        }
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            double want = 0;
            for (int r = 0; r < rows; r++)
                want += (double)dy[r * out + o] * x[r * in + i];
            assert_true(fabs(dW[o * in + i] - want) < 1e-5);
        }
    free(x), free(W), free(dy), free(dx), free(dW);
}

/* ---- dropout: the kept fraction, the scale, and the same mask twice ---- */
static void test_dropout(void **state)
{
    (void)state;
    size_t n = 20000;
    float *x = random_floats(n, 1, 2), *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
    assert_int_equal(kn_dropout(a, x, n, 0.25f, 99), SQ_OK);
    assert_int_equal(kn_dropout(b, x, n, 0.25f, 99), SQ_OK);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(a[i] == b[i]);
        if (a[i] != 0.0f) {
            kept++;
            assert_true(fabsf(a[i] - x[i] / 0.75f) < 1e-6f);
        }
    }
    assert_true(fabs((double)kept / n - 0.75) < 0.02); /* binomial sd is 0.003 */
    free(x), free(a), free(b);
}

/* The mask is kernels.h's formula (the CUDA backend must reproduce it bit for bit): entry 0
 * under seed 0 hashes splitmix64's state 0, whose published first output (Vigna's
 * splitmix64.c) is 0xe220a8397b1dcdaf, so u = 0xe220a8 / 2^24 = 0.88331079...: kept at
 * p = 0.8833, dropped at p = 0.8834. */
static void test_dropout_mask_formula(void **state)
{
    (void)state;
    float x = 2.0f, y = -1.0f;
    assert_int_equal(kn_dropout(&y, &x, 1, 0.8833f, 0), SQ_OK);
    assert_true(fabsf(y - 2.0f / (1.0f - 0.8833f)) < 1e-4f); /* kept and scaled by 1/(1 - p) */
    assert_int_equal(kn_dropout(&y, &x, 1, 0.8834f, 0), SQ_OK);
    assert_true(y == 0.0f);
}

/* ---- chunked cross-entropy ---- */
static void test_chunked_cross_entropy(void **state)
{
    (void)state;
    int rows = 6, vocab = 37, chunk = 10;
    float *logits = random_floats((size_t)rows * vocab, -6, 6);
    int32_t targets[6] = {0, 36, 11, -1, 20, 9};
    float weight[6] = {0.5f, 1.0f, 2.0f, 1.0f, 0.25f, 1.0f};
    float state3[18], nll[6], lse[6], want_nll[6];
    int32_t one_shot_targets[6];
    for (int r = 0; r < rows; r++)
        one_shot_targets[r] = targets[r] < 0 ? 0 : targets[r];
    assert_int_equal(kn_cross_entropy(want_nll, logits, one_shot_targets, rows, vocab), SQ_OK);
    assert_int_equal(kn_ce_begin(state3, rows), SQ_OK);
    float *part = malloc(sizeof(float) * rows * chunk);
    for (int v0 = 0; v0 < vocab; v0 += chunk) {
        int n = vocab - v0 < chunk ? vocab - v0 : chunk;
        for (int r = 0; r < rows; r++)
            memcpy(part + (size_t)r * n, logits + (size_t)r * vocab + v0, sizeof(float) * n);
        assert_int_equal(kn_ce_chunk_forward(state3, part, targets, rows, v0, n), SQ_OK);
    }
    assert_int_equal(kn_ce_finish(nll, lse, state3, targets, rows), SQ_OK);
    assert_int_equal(kn_ce_finish(nll, lse, state3, targets, -1), SQ_ERR_ARG); /* as kn_ce_begin does */
    for (int r = 0; r < rows; r++)
        assert_true(fabsf(nll[r] - (targets[r] < 0 ? 0.0f : want_nll[r])) < 1e-4f);
    for (int v0 = 0; v0 < vocab; v0 += chunk) {
        int n = vocab - v0 < chunk ? vocab - v0 : chunk;
        for (int r = 0; r < rows; r++)
            memcpy(part + (size_t)r * n, logits + (size_t)r * vocab + v0, sizeof(float) * n);
        assert_int_equal(kn_ce_chunk_backward(part, lse, targets, weight, rows, v0, n), SQ_OK);
        for (int r = 0; r < rows; r++) {
            double z = 0;
            for (int j = 0; j < vocab; j++)
                z += exp((double)logits[r * vocab + j]);
            for (int j = 0; j < n; j++) {
                double p = exp((double)logits[r * vocab + v0 + j]) / z;
                double want = targets[r] < 0 ? 0 : weight[r] * (p - (v0 + j == targets[r]));
                assert_true(fabs(part[(size_t)r * n + j] - want) < 1e-5);
            }
        }
    }
    free(logits), free(part);
}

/* ---- AdamW and the norm ---- */
static void test_adamw_and_norm(void **state)
{
    (void)state;
    size_t n = 50;
    float *p = random_floats(n, -1, 1), *g = random_floats(n, -1, 1);
    float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    double pd[50], md[50] = {0}, vd[50] = {0};
    for (size_t i = 0; i < n; i++)
        pd[i] = p[i];
    for (int t = 1; t <= 3; t++) {
        assert_int_equal(kn_adamw(p, g, m, v, n, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, t), SQ_OK);
        for (size_t i = 0; i < n; i++) {
            pd[i] *= 1 - 1e-2 * 0.1;
            md[i] = 0.9 * md[i] + 0.1 * g[i];
            vd[i] = 0.999 * vd[i] + 0.001 * (double)g[i] * g[i];
            double mhat = md[i] / (1 - pow(0.9, t)), vhat = vd[i] / (1 - pow(0.999, t));
            pd[i] -= 1e-2 * mhat / (sqrt(vhat) + 1e-8);
        }
    }
    for (size_t i = 0; i < n; i++)
        assert_true(fabs(p[i] - pd[i]) < 1e-6);
    double sum = 1.0, want = 1.0;
    assert_int_equal(kn_sum_squares(&sum, g, n), SQ_OK);
    for (size_t i = 0; i < n; i++)
        want += (double)g[i] * g[i];
    assert_true(fabs(sum - want) < 1e-9 * want);
    free(p), free(g), free(m), free(v);
}

int main(void)
{
    rng_state = 12345;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_backward),   cmocka_unit_test(test_rope_backward),
        cmocka_unit_test(test_attention_backward), cmocka_unit_test(test_swiglu_backward),
        cmocka_unit_test(test_linear_backward),    cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_dropout_mask_formula),
        cmocka_unit_test(test_chunked_cross_entropy), cmocka_unit_test(test_adamw_and_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
