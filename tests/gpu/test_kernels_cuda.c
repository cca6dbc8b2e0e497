/* test_kernels_cuda.c: the CUDA backend checked against the CPU backend, kernel
 * by kernel, on fresh random inputs (the seed is printed; SEED=n repeats a run).
 *
 * Both backends are linked into this one program: the CPU backend's objects are
 * built a second time with every kn_ symbol renamed kn_cpu_ (see the Makefile's
 * gpu-test target), and kernels_cpu.h declares them. It runs on a GPU machine,
 * which has no cmocka, so it prints TAP lines itself ("ok N - what").
 *
 * Every GPU output buffer is poisoned (all bits set: NaN for floats, 255 for
 * codes) before the kernel runs, and NaN never passes. Errors are relative
 * Frobenius norms ‖gpu − cpu‖ / ‖cpu‖ computed in double; tolerances:
 *   exact (0)   data movement, permutations, grids, RTN, fake quantization, GPTQ block
 *               with and without a sparsity mask, kn_mark_zeros (the CUDA kernels
 *               repeat the CPU arithmetic operation for operation)
 *   1e-5        fp32 reductions whose summation order differs (GEMM, norms, softmax)
 *   2e-3        kn_linear (fp16 inputs), kn_attention and kn_attention_backward (TF32; dq,
 *               dk and dv each), on the tensor cores; a NumPy model of the backward with
 *               inputs rounded to TF32 gives 5e-4 at these shapes (1.8e-3 if truncated)
 *   1e-3        kn_hessian_accumulate, an fp16-input GEMM (inputs rounded to 11 significant bits)
 *   1e-3        SPD inverse, 1e-4 Cholesky factor, of a matrix with condition number ~40
 *   GPTQ pass:  codes may differ where the lazy-update GEMMs round differently and a
 *               value lands on a rounding tie: at most 1% of codes, W within 1e-2.
 *   pruning:    kn_prune_lowest and kn_sparsegpt_block exact (same masks, ties included);
 *               a SparseGPT pass, like the GPTQ pass, at most 1% of mask entries, W 1e-2. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "core/rng.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/kernels.h"
#include "kernels_cpu.h"

static int test_number;
static int failures;
static sq_rng rng;

static void report(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int ok, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    printf("%sok %d - ", ok ? "" : "not ", ++test_number);
    vprintf(fmt, args);
    printf("\n");
    va_end(args);
    fflush(stdout);
    if (!ok)
        failures++;
}

/* A call that must succeed; on failure the test is reported and the program goes on. */
#define CALL(expr)                                                                           \
    do {                                                                                     \
        sq_status call_status_ = (expr);                                                     \
        if (call_status_ != SQ_OK) {                                                         \
            report(0, "%s failed: %s: %s", #expr, sq_status_name(call_status_), sq_last_error()); \
            return;                                                                          \
        }                                                                                    \
    } while (0)

/* Uniform double in [0, 1): 53 random bits. */
static double uniform(void) { return (double)(sq_rng_next(&rng) >> 11) / 9007199254740992.0; }
/* Standard normal (Box-Muller); 1 - uniform() lies in (0, 1], so the logarithm is finite. */
static float normal(void)
{
    double u1 = 1.0 - uniform(), u2 = uniform();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static float *host_random(size_t n, float scale)
{
    float *x = malloc(n * sizeof(float) + 4);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * normal();
    return x;
}

static float *host_copy(const float *src, size_t n)
{
    float *x = malloc(n * sizeof(float) + 4);
    memcpy(x, src, n * sizeof(float));
    return x;
}

/* Device copy of host data (the program stops if the GPU cannot take it). */
static void *dev_from(const void *host, size_t bytes)
{
    void *dev = NULL;
    if (kn_alloc(&dev, bytes) != SQ_OK || kn_upload(dev, host, bytes) != SQ_OK) {
        printf("Bail out! %s\n", sq_last_error());
        exit(1);
    }
    return dev;
}

/* All bits set: NaN as a float, 255 as a code. */
static void poison(void *dev, size_t bytes)
{
    if (cudaMemset(dev, 0xff, bytes) != cudaSuccess) {
        printf("Bail out! cannot poison %zu bytes\n", bytes);
        exit(1);
    }
}

static void *dev_poisoned(size_t bytes)
{
    void *dev = NULL;
    if (kn_alloc(&dev, bytes) != SQ_OK) {
        printf("Bail out! cannot allocate %zu bytes: %s\n", bytes, sq_last_error());
        exit(1);
    }
    poison(dev, bytes);
    return dev;
}

static float *downloaded(const void *dev, size_t n)
{
    float *x = malloc(n * sizeof(float) + 4);
    if (kn_download(x, dev, n * sizeof(float)) != SQ_OK) {
        printf("Bail out! download failed: %s\n", sq_last_error());
        exit(1);
    }
    return x;
}

/* ‖gpu − cpu‖ / ‖cpu‖ in double; NaN when any GPU value is not finite. */
static double rel_error(const float *gpu, const float *cpu, size_t n)
{
    double diff = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(gpu[i]) || !isfinite(cpu[i]))
            return NAN;
        double d = (double)gpu[i] - cpu[i];
        diff += d * d;
        ref += (double)cpu[i] * cpu[i];
    }
    return ref > 0.0 ? sqrt(diff / ref) : sqrt(diff);
}

/* Downloads n floats of `dev`, compares with `cpu` and reports; frees nothing. */
static void compare(const char *what, const void *dev, const float *cpu, size_t n, double tol)
{
    float *gpu = downloaded(dev, n);
    double err = rel_error(gpu, cpu, n);
    size_t bad = 0, first = n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(gpu[i]) || !isfinite(cpu[i])) {
            bad++;
            first = first < n ? first : i;
        }
    if (bad)
        printf("# %s: %zu of %zu values not finite, first at %zu: gpu %g cpu %g\n", what, bad, n, first,
               (double)gpu[first], (double)cpu[first]);
    report(err <= tol, "%s: relative error %.3g (tolerance %.0e)", what, err, tol);
    free(gpu);
}

static void compare_codes(const char *what, const void *dev, const uint8_t *cpu, size_t n, double max_fraction)
{
    uint8_t *gpu = malloc(n + 1);
    if (kn_download(gpu, dev, n) != SQ_OK) {
        report(0, "%s: download failed: %s", what, sq_last_error());
        free(gpu);
        return;
    }
    size_t differ = 0;
    for (size_t i = 0; i < n; i++)
        differ += gpu[i] != cpu[i];
    report((double)differ <= max_fraction * (double)n, "%s: %zu of %zu codes differ (allowed fraction %.0e)", what,
           differ, n, max_fraction);
    free(gpu);
}

/* ---- memory ------------------------------------------------------------- */

static void test_memory(void)
{
    const size_t n = 10007;
    float *x = host_random(n, 1.0f);
    float *dx = dev_from(x, n * sizeof(float));
    float *dy = dev_poisoned(n * sizeof(float));
    CALL(kn_copy(dy, dx, n * sizeof(float)));
    compare("kn_upload / kn_copy / kn_download round trip", dy, x, n, 0.0);

    float *filled = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        filled[i] = -3.25f;
    CALL(kn_fill(dy, -3.25f, n));
    compare("kn_fill", dy, filled, n, 0.0);

    uint16_t *bf16 = malloc(n * 2), *f16 = malloc(n * 2);
    double *f64 = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        bf16[i] = sq_f32_to_bf16(x[i]);
        f16[i] = sq_f32_to_f16(x[i]);
        f64[i] = (double)x[i] * 1.000001;
    }
    float *want = malloc(n * sizeof(float));
    const struct { sq_dtype dtype; const void *src; const char *name; } cases[] = {
        {SQ_DTYPE_BF16, bf16, "kn_upload_as_f32 BF16"},
        {SQ_DTYPE_F16, f16, "kn_upload_as_f32 F16"},
        {SQ_DTYPE_F64, f64, "kn_upload_as_f32 F64"},
        {SQ_DTYPE_F32, x, "kn_upload_as_f32 F32"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CALL(kn_cpu_upload_as_f32(want, cases[c].src, cases[c].dtype, n));
        poison(dy, n * sizeof(float));
        CALL(kn_upload_as_f32(dy, cases[c].src, cases[c].dtype, n));
        compare(cases[c].name, dy, want, n, 0.0);
    }
    kn_free(dx);
    kn_free(dy);
    free(x);
    free(filled);
    free(bf16);
    free(f16);
    free(f64);
    free(want);
}

/* ---- dense linear algebra ------------------------------------------------ */

static void test_gemm(void)
{
    const int m = 193, n = 161, k = 127, pad = 3;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
            int lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
            float *A = host_random((size_t)a_rows * lda, 1.0f), *B = host_random((size_t)b_rows * ldb, 1.0f);
            float *C = host_random((size_t)m * ldc, 1.0f);
            float *dA = dev_from(A, (size_t)a_rows * lda * 4), *dB = dev_from(B, (size_t)b_rows * ldb * 4);
            float *dC = dev_from(C, (size_t)m * ldc * 4);
            CALL(kn_gemm(ta, tb, m, n, k, 0.7f, dA, lda, dB, ldb, 0.3f, dC, ldc));
            CALL(kn_cpu_gemm(ta, tb, m, n, k, 0.7f, A, lda, B, ldb, 0.3f, C, ldc));
            char what[96];
            snprintf(what, sizeof what, "kn_gemm transpose_a=%d transpose_b=%d, padded leading dims, beta=0.3", ta, tb);
            compare(what, dC, C, (size_t)m * ldc, 1e-5);
            kn_free(dA);
            kn_free(dB);
            kn_free(dC);
            free(A);
            free(B);
            free(C);
        }
    }
    /* beta = 0 must not read C (poisoned). */
    float *A = host_random((size_t)m * k, 1.0f), *B = host_random((size_t)k * n, 1.0f);
    float *C = malloc((size_t)m * n * 4);
    float *dA = dev_from(A, (size_t)m * k * 4), *dB = dev_from(B, (size_t)k * n * 4);
    float *dC = dev_poisoned((size_t)m * n * 4);
    CALL(kn_gemm(false, false, m, n, k, 1.0f, dA, k, dB, n, 0.0f, dC, n));
    CALL(kn_cpu_gemm(false, false, m, n, k, 1.0f, A, k, B, n, 0.0f, C, n));
    compare("kn_gemm beta=0 over a poisoned C", dC, C, (size_t)m * n, 1e-5);
    kn_free(dA);
    kn_free(dB);
    kn_free(dC);
    free(A);
    free(B);
    free(C);
}

static void test_linear(void)
{
    const int rows = 64, in = 256, out = 96;
    float *x = host_random((size_t)rows * in, 1.0f), *w = host_random((size_t)out * in, 0.05f);
    float *bias = host_random(out, 1.0f), *y = malloc((size_t)rows * out * 4);
    float *dx = dev_from(x, (size_t)rows * in * 4), *dw = dev_from(w, (size_t)out * in * 4);
    float *db = dev_from(bias, out * 4), *dy = dev_poisoned((size_t)rows * out * 4);
    CALL(kn_linear(dy, dx, dw, db, rows, in, out));
    CALL(kn_cpu_linear(y, x, w, bias, rows, in, out));
    compare("kn_linear with bias (fp16 inputs)", dy, y, (size_t)rows * out, 2e-3);
    poison(dy, (size_t)rows * out * 4);
    CALL(kn_linear(dy, dx, dw, NULL, rows, in, out));
    CALL(kn_cpu_linear(y, x, w, NULL, rows, in, out));
    compare("kn_linear without bias (fp16 inputs)", dy, y, (size_t)rows * out, 2e-3);
    kn_free(dx);
    kn_free(dw);
    kn_free(db);
    kn_free(dy);
    free(x);
    free(w);
    free(bias);
    free(y);
}

/* ---- transformer layer pieces ------------------------------------------- */

static void test_rmsnorm(void)
{
    const int rows = 37, dim = 1000;
    float *x = host_random((size_t)rows * dim, 2.0f), *w = host_random(dim, 1.0f), *y = malloc((size_t)rows * dim * 4);
    float *dx = dev_from(x, (size_t)rows * dim * 4), *dw = dev_from(w, dim * 4);
    float *dy = dev_poisoned((size_t)rows * dim * 4);
    CALL(kn_rmsnorm(dy, dx, dw, rows, dim, 1e-5f));
    CALL(kn_cpu_rmsnorm(y, x, w, rows, dim, 1e-5f));
    compare("kn_rmsnorm 37x1000", dy, y, (size_t)rows * dim, 1e-6);
    kn_free(dx);
    kn_free(dw);
    kn_free(dy);
    free(x);
    free(w);
    free(y);
}

static void test_rope(void)
{
    const int batch = 2, seq = 50, heads = 4, head_dim = 64, pos0 = 1000;
    size_t n = (size_t)batch * seq * heads * head_dim;
    float inv_freq[32];
    for (int i = 0; i < head_dim / 2; i++)
        inv_freq[i] = (float)pow(10000.0, -2.0 * i / head_dim);
    float *x = host_random(n, 1.0f);
    float *dx = dev_from(x, n * 4), *dfreq = dev_from(inv_freq, sizeof inv_freq);
    CALL(kn_rope(dx, dfreq, batch, seq, heads, head_dim, pos0));
    CALL(kn_cpu_rope(x, inv_freq, batch, seq, heads, head_dim, pos0));
    compare("kn_rope batch=2 seq=50 heads=4 head_dim=64 pos0=1000", dx, x, n, 1e-6);
    kn_free(dx);
    kn_free(dfreq);
    free(x);
}

/* With chunk_heads > 0 the attention score cap is lowered to chunk_heads heads' worth of
 * `matrices_per_head` [seq, seq] buffers, so the kernels walk the heads in several chunks;
 * the cap is restored by end_score_cap. Returns the label's suffix describing it. */
static const char *set_score_cap(int chunk_heads, int seq, int matrices_per_head)
{
    static char label[64];
    label[0] = 0;
    if (chunk_heads > 0) {
        kn_cuda_set_attention_score_cap((size_t)chunk_heads * matrices_per_head * seq * seq * sizeof(float));
        snprintf(label, sizeof label, ", chunks of %d kv heads", chunk_heads);
    }
    return label;
}

static void end_score_cap(void) { kn_cuda_set_attention_score_cap(0); }

static void attention_case(int batch, int seq, int n_heads, int n_kv_heads, int head_dim, int chunk_heads)
{
    size_t nq = (size_t)batch * seq * n_heads * head_dim, nkv = (size_t)batch * seq * n_kv_heads * head_dim;
    float *q = host_random(nq, 1.0f), *k = host_random(nkv, 1.0f), *v = host_random(nkv, 1.0f);
    float *o = malloc(nq * 4);
    float *dq = dev_from(q, nq * 4), *dk = dev_from(k, nkv * 4), *dv = dev_from(v, nkv * 4);
    float *dout = dev_poisoned(nq * 4);
    const char *chunking = set_score_cap(chunk_heads, seq, 1);
    char what[160];
    snprintf(what, sizeof what, "kn_attention batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d%s", batch, seq,
             n_heads, n_kv_heads, head_dim, chunking);
    sq_status st = kn_attention(dout, dq, dk, dv, batch, seq, n_heads, n_kv_heads, head_dim);
    end_score_cap();
    CALL(st);
    CALL(kn_cpu_attention(o, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    compare(what, dout, o, nq, 2e-3);
    kn_free(dq);
    kn_free(dk);
    kn_free(dv);
    kn_free(dout);
    free(q);
    free(k);
    free(v);
    free(o);
}

static void test_attention(void)
{
    attention_case(2, 77, 8, 2, 64, 0);
    attention_case(1, 40, 4, 4, 128, 0);
    attention_case(3, 33, 6, 3, 96, 0);
    attention_case(1, 9, 2, 1, 256, 0);
    attention_case(2, 600, 8, 2, 128, 0);
    attention_case(2, 37, 6, 3, 64, 2);
}

/* kn_attention_backward against the CPU backend: dq, dk, dv from poisoned buffers (dk and dv
 * must be written, not added to); chunk_heads as in set_score_cap (two matrices per head). */
static void attention_backward_case(int batch, int seq, int n_heads, int n_kv_heads, int head_dim, int chunk_heads)
{
    size_t nq = (size_t)batch * seq * n_heads * head_dim, nkv = (size_t)batch * seq * n_kv_heads * head_dim;
    float *q = host_random(nq, 1.0f), *k = host_random(nkv, 1.0f), *v = host_random(nkv, 1.0f);
    float *dout = host_random(nq, 1.0f);
    float *dq = malloc(nq * 4), *dk = malloc(nkv * 4), *dv = malloc(nkv * 4);
    float *d_q = dev_from(q, nq * 4), *d_k = dev_from(k, nkv * 4), *d_v = dev_from(v, nkv * 4);
    float *d_dout = dev_from(dout, nq * 4);
    float *d_dq = dev_poisoned(nq * 4), *d_dk = dev_poisoned(nkv * 4), *d_dv = dev_poisoned(nkv * 4);
    const char *chunking = set_score_cap(chunk_heads, seq, 2);
    char shape[160], what[192];
    snprintf(shape, sizeof shape, "kn_attention_backward batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d%s", batch,
             seq, n_heads, n_kv_heads, head_dim, chunking);
    sq_status st = kn_attention_backward(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, batch, seq, n_heads, n_kv_heads,
                                         head_dim);
    end_score_cap();
    CALL(st);
    CALL(kn_cpu_attention_backward(dq, dk, dv, dout, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    const struct { const char *name; const float *gpu, *cpu; size_t n; } grads[] = {
        {"dq", d_dq, dq, nq}, {"dk", d_dk, dk, nkv}, {"dv", d_dv, dv, nkv}};
    for (size_t i = 0; i < sizeof grads / sizeof grads[0]; i++) {
        snprintf(what, sizeof what, "%s: %s", shape, grads[i].name);
        compare(what, grads[i].gpu, grads[i].cpu, grads[i].n, 2e-3);
    }
    float *device[] = {d_q, d_k, d_v, d_dout, d_dq, d_dk, d_dv}, *host[] = {q, k, v, dout, dq, dk, dv};
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++) {
        kn_free(device[i]);
        free(host[i]);
    }
}

/* Grouped (8 query heads on 2 kv heads) and plain (4 on 4) heads; seq 1 (a single key: dq and
 * dk are exactly 0, dv sums the group's dout), 37 and 160; Llama's head_dim 128 once; then the chunk loop:
 * one kv head per chunk, and chunks of 3 + 1 kv heads. */
static void test_attention_backward(void)
{
    const int seqs[] = {1, 37, 160};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        attention_backward_case(2, seqs[i], 8, 2, 64, 0);
        attention_backward_case(2, seqs[i], 4, 4, 64, 0);
    }
    attention_backward_case(1, 300, 8, 2, 128, 0);
    attention_backward_case(2, 37, 8, 2, 64, 1);
    attention_backward_case(2, 160, 4, 4, 64, 3);
}

static void test_elementwise(void)
{
    const size_t n = 50001;
    float *g = host_random(n, 3.0f), *u = host_random(n, 1.0f), *y = malloc(n * 4);
    float *dg = dev_from(g, n * 4), *du = dev_from(u, n * 4), *dy = dev_poisoned(n * 4);
    CALL(kn_swiglu(dy, dg, du, n));
    CALL(kn_cpu_swiglu(y, g, u, n));
    compare("kn_swiglu", dy, y, n, 1e-6);
    CALL(kn_add_inplace(du, dg, n));
    CALL(kn_cpu_add_inplace(u, g, n));
    compare("kn_add_inplace", du, u, n, 0.0);
    kn_free(dg);
    kn_free(du);
    kn_free(dy);
    free(g);
    free(u);
    free(y);

    const int tokens = 300, dim = 72, vocab = 1000;
    float *table = host_random((size_t)vocab * dim, 1.0f), *e = malloc((size_t)tokens * dim * 4);
    int32_t ids[300];
    for (int i = 0; i < tokens; i++)
        ids[i] = (int32_t)sq_rng_below(&rng, vocab);
    float *dtable = dev_from(table, (size_t)vocab * dim * 4), *de = dev_poisoned((size_t)tokens * dim * 4);
    int32_t *dids = dev_from(ids, sizeof ids);
    CALL(kn_embedding(de, dtable, dids, tokens, dim, vocab));
    CALL(kn_cpu_embedding(e, table, ids, tokens, dim, vocab));
    compare("kn_embedding", de, e, (size_t)tokens * dim, 0.0);
    ids[123] = vocab;
    CALL(kn_upload(dids, ids, sizeof ids));
    sq_status st = kn_embedding(de, dtable, dids, tokens, dim, vocab);
    report(st == SQ_ERR_ARG && strstr(sq_last_error(), "[123]"), "kn_embedding rejects token id %d at position 123: %s",
           vocab, sq_last_error());
    kn_free(dtable);
    kn_free(de);
    kn_free(dids);
    free(table);
    free(e);
}

static void test_cross_entropy(void)
{
    const int rows = 33, vocab = 5000;
    float *logits = host_random((size_t)rows * vocab, 3.0f), *nll = malloc(rows * 4);
    int32_t targets[33];
    for (int i = 0; i < rows; i++)
        targets[i] = (int32_t)sq_rng_below(&rng, vocab);
    float *dl = dev_from(logits, (size_t)rows * vocab * 4), *dn = dev_poisoned(rows * 4);
    int32_t *dt = dev_from(targets, sizeof targets);
    CALL(kn_cross_entropy(dn, dl, dt, rows, vocab));
    CALL(kn_cpu_cross_entropy(nll, logits, targets, rows, vocab));
    compare("kn_cross_entropy 33x5000", dn, nll, rows, 1e-6);
    kn_free(dl);
    kn_free(dn);
    kn_free(dt);
    free(logits);
    free(nll);
}

static void test_fake_quantize(void)
{
    const int rows = 40, dim = 128;
    for (int bits = 2; bits <= 8; bits += 6) {
        float *x = host_random((size_t)rows * dim, 1.0f);
        for (int i = 0; i < dim; i++)
            x[5 * dim + i] = 0.75f; /* a constant row is left as is */
        float *dx = dev_from(x, (size_t)rows * dim * 4);
        CALL(kn_fake_quantize_rows(dx, rows, dim, bits));
        CALL(kn_cpu_fake_quantize_rows(x, rows, dim, bits));
        char what[64];
        snprintf(what, sizeof what, "kn_fake_quantize_rows bits=%d", bits);
        compare(what, dx, x, (size_t)rows * dim, 0.0);
        kn_free(dx);
        free(x);
    }
}

/* ---- calibration: Hessians and solves ----------------------------------- */

static void test_hessian(void)
{
    const int rows = 300, cols = 200;
    float *X = host_random((size_t)rows * cols, 1.0f), *H = malloc((size_t)cols * cols * 4);
    float *dX = dev_from(X, (size_t)rows * cols * 4), *dH = dev_poisoned((size_t)cols * cols * 4);
    CALL(kn_hessian_accumulate(dH, dX, rows, cols, 2.0f / rows, 0.0f));
    CALL(kn_cpu_hessian_accumulate(H, X, rows, cols, 2.0f / rows, 0.0f));
    compare("kn_hessian_accumulate beta=0 over a poisoned H (fp16 inputs)", dH, H, (size_t)cols * cols, 1e-3);
    float *X2 = host_random((size_t)rows * cols, 1.0f);
    CALL(kn_upload(dX, X2, (size_t)rows * cols * 4));
    CALL(kn_hessian_accumulate(dH, dX, rows, cols, 0.5f, 0.75f));
    CALL(kn_cpu_hessian_accumulate(H, X2, rows, cols, 0.5f, 0.75f));
    compare("kn_hessian_accumulate beta=0.75 (accumulating, fp16 inputs)", dH, H, (size_t)cols * cols, 1e-3);
    float *gpu = downloaded(dH, (size_t)cols * cols);
    int symmetric = 1;
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < i; j++)
            symmetric &= gpu[(size_t)i * cols + j] == gpu[(size_t)j * cols + i];
    report(symmetric, "kn_hessian_accumulate result is exactly symmetric");

    float *norms = host_random(cols, 1.0f);
    for (int c = 0; c < cols; c++)
        norms[c] = fabsf(norms[c]);
    float *dnorms = dev_from(norms, cols * 4);
    CALL(kn_column_sq_norms(dnorms, dX, rows, cols, 0.5f));
    CALL(kn_cpu_column_sq_norms(norms, X2, rows, cols, 0.5f));
    compare("kn_column_sq_norms beta=0.5", dnorms, norms, cols, 1e-6);
    float *dfresh = dev_poisoned(cols * 4); /* beta 0 must not read the NaN it holds */
    CALL(kn_column_sq_norms(dfresh, dX, rows, cols, 0.0f));
    CALL(kn_cpu_column_sq_norms(norms, X2, rows, cols, 0.0f));
    compare("kn_column_sq_norms beta=0 over a poisoned buffer", dfresh, norms, cols, 1e-6);
    kn_free(dfresh);

    float *diag = malloc(cols * 4);
    float *ddiag = dev_poisoned(cols * 4);
    CALL(kn_diagonal(ddiag, dH, cols));
    CALL(kn_cpu_diagonal(diag, gpu, cols)); /* of the same (fp16-input) H: data movement, exact */
    compare("kn_diagonal", ddiag, diag, cols, 0.0);
    kn_free(dX);
    kn_free(dH);
    kn_free(dnorms);
    kn_free(ddiag);
    free(X);
    free(X2);
    free(H);
    free(gpu);
    free(norms);
    free(diag);
}

static void test_hessian_prepare(void)
{
    const int rows = 50, n = 120;
    float *X = host_random((size_t)200 * n, 1.0f);
    for (int r = 0; r < 200; r++) {
        X[(size_t)r * n + 7] = 0.0f; /* dead inputs */
        X[(size_t)r * n + 99] = 0.0f;
    }
    float *H = malloc((size_t)n * n * 4);
    CALL(kn_cpu_hessian_accumulate(H, X, 200, n, 1.0f / 200, 0.0f));
    float *W = host_random((size_t)rows * n, 1.0f);
    float *dH = dev_from(H, (size_t)n * n * 4), *dW = dev_from(W, (size_t)rows * n * 4);
    CALL(kn_hessian_prepare(dH, dW, rows, n, 0.01f));
    CALL(kn_cpu_hessian_prepare(H, W, rows, n, 0.01f));
    compare("kn_hessian_prepare H (dead columns 7 and 99)", dH, H, (size_t)n * n, 0.0);
    compare("kn_hessian_prepare W (dead columns zeroed)", dW, W, (size_t)rows * n, 0.0);
    kn_free(dH);
    kn_free(dW);
    free(X);
    free(H);
    free(W);
}

static void random_permutation(int32_t *perm, int n)
{
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)sq_rng_below(&rng, (uint64_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static void test_permutations(void)
{
    const int rows = 70, n = 130;
    int32_t perm[130];
    random_permutation(perm, n);
    float *A = host_random((size_t)n * n, 1.0f), *B = malloc((size_t)n * n * 4);
    float *W = host_random((size_t)rows * n, 1.0f), *P = malloc((size_t)rows * n * 4);
    float *dA = dev_from(A, (size_t)n * n * 4), *dB = dev_poisoned((size_t)n * n * 4);
    float *dW = dev_from(W, (size_t)rows * n * 4), *dP = dev_poisoned((size_t)rows * n * 4);
    int32_t *dperm = dev_from(perm, sizeof perm);
    CALL(kn_permute_symmetric(dB, dA, dperm, n));
    CALL(kn_cpu_permute_symmetric(B, A, perm, n));
    compare("kn_permute_symmetric", dB, B, (size_t)n * n, 0.0);
    CALL(kn_permute_columns(dP, dW, dperm, rows, n));
    CALL(kn_cpu_permute_columns(P, W, perm, rows, n));
    compare("kn_permute_columns", dP, P, (size_t)rows * n, 0.0);
    poison(dW, (size_t)rows * n * 4);
    CALL(kn_unpermute_columns(dW, dP, dperm, rows, n));
    compare("kn_unpermute_columns restores the original", dW, W, (size_t)rows * n, 0.0);
    perm[17] = -1;
    CALL(kn_upload(dperm, perm, sizeof perm));
    sq_status st = kn_permute_columns(dP, dW, dperm, rows, n);
    report(st == SQ_ERR_ARG, "kn_permute_columns rejects perm[17] = -1: %s", sq_last_error());
    kn_free(dA);
    kn_free(dB);
    kn_free(dW);
    kn_free(dP);
    kn_free(dperm);
    free(A);
    free(B);
    free(W);
    free(P);
}

/* H = Xᵀ X / rows + damp·I with rows = 2n: positive definite, condition number ~40. */
static float *host_spd(int n, float damp)
{
    int rows = 2 * n;
    float *X = host_random((size_t)rows * n, 1.0f), *H = malloc((size_t)n * n * 4);
    kn_cpu_hessian_accumulate(H, X, rows, n, 1.0f / rows, 0.0f);
    for (int i = 0; i < n; i++)
        H[(size_t)i * n + i] += damp;
    free(X);
    return H;
}

static void test_solves(int n)
{
    float *H = host_spd(n, 0.01f);
    float *dH = dev_from(H, (size_t)n * n * 4);
    float *inv = host_copy(H, (size_t)n * n);
    CALL(kn_spd_inverse(dH, n));
    CALL(kn_cpu_spd_inverse(inv, n));
    char what[96];
    snprintf(what, sizeof what, "kn_spd_inverse n=%d", n);
    compare(what, dH, inv, (size_t)n * n, 1e-3);
    float *U = host_copy(H, (size_t)n * n);
    CALL(kn_upload(dH, H, (size_t)n * n * 4));
    CALL(kn_cholesky_upper(dH, n));
    CALL(kn_cpu_cholesky_upper(U, n));
    snprintf(what, sizeof what, "kn_cholesky_upper n=%d (lower part zeroed)", n);
    compare(what, dH, U, (size_t)n * n, 1e-4);

    float *V = host_copy(H, (size_t)n * n);
    CALL(kn_upload(dH, H, (size_t)n * n * 4));
    CALL(kn_inverse_cholesky_upper(dH, n));
    CALL(kn_cpu_inverse_cholesky_upper(V, n)); /* the CPU forms the inverse, then factors it */
    snprintf(what, sizeof what, "kn_inverse_cholesky_upper n=%d (by reversal, no inverse)", n);
    compare(what, dH, V, (size_t)n * n, 1e-3);
    float *gpu_V = downloaded(dH, (size_t)n * n);
    int lower_zero = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            lower_zero &= gpu_V[(size_t)i * n + j] == 0.0f;
    report(lower_zero, "kn_inverse_cholesky_upper n=%d: lower part exactly zero", n);
    free(gpu_V);
    free(V);

    H[(size_t)5 * n + 5] = -1.0f;
    CALL(kn_upload(dH, H, (size_t)n * n * 4));
    sq_status st = kn_spd_inverse(dH, n);
    report(st == SQ_ERR_NUMERIC, "kn_spd_inverse reports a matrix that is not positive definite: %s", sq_last_error());
    CALL(kn_upload(dH, H, (size_t)n * n * 4));
    st = kn_inverse_cholesky_upper(dH, n);
    report(st == SQ_ERR_NUMERIC, "kn_inverse_cholesky_upper reports a matrix that is not positive definite: %s",
           sq_last_error());
    kn_free(dH);
    free(H);
    free(inv);
    free(U);
}

/* ---- quantization ------------------------------------------------------- */

/* Grids of `group` consecutive columns over n = 256; a group that does not divide 256
 * leaves a shorter last group (96: widths 96, 96, 64). */
static void quant_grid_and_rtn_case(int group)
{
    const int rows = 64, n = 256, ldg = (n + group - 1) / group, bits = 4;
    for (int sym = 0; sym < 2; sym++) {
        float *W = host_random((size_t)rows * n, 0.1f);
        for (int c = 0; c < n; c++)
            W[(size_t)3 * n + c] = 0.0f; /* an all-zero row takes the [-1, 1] grid */
        size_t ng = (size_t)rows * ldg;
        float *scale = malloc(ng * 4), *zero = malloc(ng * 4);
        float *dW = dev_from(W, (size_t)rows * n * 4), *dscale = dev_poisoned(ng * 4), *dzero = dev_poisoned(ng * 4);
        for (int g = 0; g < ldg; g++) {
            int width = (g + 1) * group <= n ? group : n - g * group;
            CALL(kn_quant_grid(dscale, dzero, ldg, g, dW, rows, n, g * group, width, bits, sym));
            CALL(kn_cpu_quant_grid(scale, zero, ldg, g, W, rows, n, g * group, width, bits, sym));
        }
        char what[96];
        snprintf(what, sizeof what, "kn_quant_grid scales (%s, 4 bits, groups of %d over %d)", sym ? "sym" : "asym",
                 group, n);
        compare(what, dscale, scale, ng, 0.0);
        snprintf(what, sizeof what, "kn_quant_grid zeros (%s)", sym ? "sym" : "asym");
        compare(what, dzero, zero, ng, 0.0);

        int32_t group_of_column[256];
        for (int c = 0; c < n; c++)
            group_of_column[c] = (int32_t)sq_rng_below(&rng, ldg); /* act-order style, any map */
        int32_t *dgroups = dev_from(group_of_column, sizeof group_of_column);
        uint8_t *codes = malloc((size_t)rows * n), *dcodes = dev_poisoned((size_t)rows * n);
        CALL(kn_quantize_rtn(dW, dcodes, dscale, dzero, ldg, dgroups, rows, n, bits));
        CALL(kn_cpu_quantize_rtn(W, codes, scale, zero, ldg, group_of_column, rows, n, bits));
        snprintf(what, sizeof what, "kn_quantize_rtn codes (%s)", sym ? "sym" : "asym");
        compare_codes(what, dcodes, codes, (size_t)rows * n, 0.0);
        snprintf(what, sizeof what, "kn_quantize_rtn dequantized W (%s)", sym ? "sym" : "asym");
        compare(what, dW, W, (size_t)rows * n, 0.0);
        /* Rebuilding from the codes gives what the quantizer left in W. */
        float *drebuilt = dev_poisoned((size_t)rows * n * sizeof(float));
        CALL(kn_dequantize(drebuilt, dcodes, dscale, dzero, ldg, dgroups, rows, n));
        snprintf(what, sizeof what, "kn_dequantize of the RTN codes (%s)", sym ? "sym" : "asym");
        compare(what, drebuilt, W, (size_t)rows * n, 0.0);
        kn_free(drebuilt);
        kn_free(dW);
        kn_free(dscale);
        kn_free(dzero);
        kn_free(dgroups);
        kn_free(dcodes);
        free(W);
        free(scale);
        free(zero);
        free(codes);
    }
}

static void test_quant_grid_and_rtn(void)
{
    quant_grid_and_rtn_case(64);
    quant_grid_and_rtn_case(96);
}

/* Upper Cholesky factor of H⁻¹ for an n×n Hessian, computed once on the CPU so both
 * backends start from the same Hinv. */
static float *host_hinv(int n)
{
    float *H = host_spd(n, 0.01f);
    kn_cpu_spd_inverse(H, n);
    kn_cpu_cholesky_upper(H, n);
    return H;
}

/* The geometry of one block test: W is [100, 200], groups of `group` columns (the last
 * one shorter where group does not divide 200), the block [col0, col0 + ncols). */
typedef struct {
    int group, col0, ncols;
} block_geometry;

/* Each block starts a group, so every grid it uses is computed in it. [64, 136) with
 * groups of 32: not aligned to 16-column tiles or to groups' ends, and the group
 * starting at column 128 reaches past the block's end. [144, 200) with groups of 48:
 * the block ends at n, inside the ragged last group [192, 200). */
static const block_geometry block_cases[] = {{32, 64, 72}, {48, 144, 56}};
#define N_BLOCK_CASES ((int)(sizeof block_cases / sizeof block_cases[0]))

/* One block with identical inputs: the GPU kernel must reproduce the CPU exactly.
 * `masked`: half of W zeroed at random, the mask taken by each backend's kn_mark_zeros
 * (compared too) and kept by the block. */
static void gptq_block_case(block_geometry geo, bool sym, bool masked)
{
    const int rows = 100, n = 200, col0 = geo.col0, ncols = geo.ncols, group = geo.group, bits = 4;
    const int ldg = (n + group - 1) / group;
    char how[64];
    snprintf(how, sizeof how, "%s%s, groups of %d, block [%d, %d)", sym ? "sym" : "asym", masked ? ", masked" : "",
             group, col0, col0 + ncols);
    float *Hinv = host_hinv(n);
    float *dHinv = dev_from(Hinv, (size_t)n * n * 4);
    int32_t group_of_column[200];
    for (int c = 0; c < n; c++)
        group_of_column[c] = c / group;
    int32_t *dgroups = dev_from(group_of_column, sizeof group_of_column);
    float *W = host_random((size_t)rows * n, 0.1f);
    if (masked)
        for (size_t i = 0; i < (size_t)rows * n; i++)
            if (sq_rng_below(&rng, 2))
                W[i] = i % 3 ? 0.0f : -0.0f;
    size_t ng = (size_t)rows * ldg;
    float *scale = host_random(ng, 1.0f), *zero = host_random(ng, 1.0f);
    /* A group starts at col0, so the grids this block uses are all computed here. */
    uint8_t *codes = malloc((size_t)rows * n), *mask = NULL, *dmask = NULL;
    memset(codes, 0xff, (size_t)rows * n);
    float *Err = malloc((size_t)rows * ncols * 4);
    float *dW = dev_from(W, (size_t)rows * n * 4), *dscale = dev_from(scale, ng * 4);
    float *dzero = dev_from(zero, ng * 4), *dErr = dev_poisoned((size_t)rows * ncols * 4);
    uint8_t *dcodes = dev_poisoned((size_t)rows * n);
    char what[160];
    if (masked) {
        mask = malloc((size_t)rows * n);
        dmask = dev_poisoned((size_t)rows * n);
        CALL(kn_mark_zeros(dmask, dW, (size_t)rows * n));
        CALL(kn_cpu_mark_zeros(mask, W, (size_t)rows * n));
        compare_codes("kn_mark_zeros", dmask, mask, (size_t)rows * n, 0.0);
    }
    CALL(kn_gptq_block(dW, dcodes, dErr, dHinv, dscale, dzero, ldg, dgroups, true, group, rows, n, col0, ncols,
                       bits, sym, dmask));
    CALL(kn_cpu_gptq_block(W, codes, Err, Hinv, scale, zero, ldg, group_of_column, true, group, rows, n, col0,
                           ncols, bits, sym, mask));
    snprintf(what, sizeof what, "kn_gptq_block W (%s, groups computed)", how);
    compare(what, dW, W, (size_t)rows * n, 0.0);
    snprintf(what, sizeof what, "kn_gptq_block Err (%s)", how);
    compare(what, dErr, Err, (size_t)rows * ncols, 0.0);
    snprintf(what, sizeof what, "kn_gptq_block scale (%s)", how);
    compare(what, dscale, scale, ng, 0.0);
    snprintf(what, sizeof what, "kn_gptq_block zero (%s)", how);
    compare(what, dzero, zero, ng, 0.0);
    /* Codes outside the block stay as the CPU left them (0xff, like the poison). */
    snprintf(what, sizeof what, "kn_gptq_block codes (%s)", how);
    compare_codes(what, dcodes, codes, (size_t)rows * n, 0.0);
    if (masked) {
        /* The reference itself: every masked entry of the block at its zero point, 0 in W. */
        size_t off_grid = 0;
        for (int r = 0; r < rows; r++)
            for (int j = col0; j < col0 + ncols; j++) {
                size_t k = (size_t)r * n + j;
                if (mask[k])
                    off_grid += codes[k] != zero[(size_t)r * ldg + group_of_column[j]] || W[k] != 0.0f;
            }
        report(off_grid == 0, "kn_gptq_block (%s): masked entries at the zero point (%zu are not)", how, off_grid);
    }
    kn_free(dW);
    kn_free(dscale);
    kn_free(dzero);
    kn_free(dErr);
    kn_free(dcodes);
    kn_free(dmask);
    kn_free(dHinv);
    kn_free(dgroups);
    free(W);
    free(scale);
    free(zero);
    free(codes);
    free(mask);
    free(Err);
    free(Hinv);
}

static void test_gptq_block(void)
{
    for (int k = 0; k < N_BLOCK_CASES; k++)
        for (int sym = 0; sym < 2; sym++)
            for (int masked = 0; masked < 2; masked++)
                gptq_block_case(block_cases[k], sym, masked);
}

/* A whole GPTQ solve on each backend: blocks of 64 with the lazy update through each
 * backend's own kn_gemm, static per-channel grids (compute_groups false, one group). */
static void test_gptq_pass(void)
{
    const int rows = 128, n = 256, block = 64, bits = 4;
    float *Hinv = host_hinv(n), *W = host_random((size_t)rows * n, 0.1f);
    float *scale = malloc(rows * 4), *zero = malloc(rows * 4);
    int32_t group_of_column[256] = {0};
    CALL(kn_cpu_quant_grid(scale, zero, 1, 0, W, rows, n, 0, n, bits, false));
    float *dHinv = dev_from(Hinv, (size_t)n * n * 4), *dW = dev_from(W, (size_t)rows * n * 4);
    float *dscale = dev_from(scale, rows * 4), *dzero = dev_from(zero, rows * 4);
    int32_t *dgroups = dev_from(group_of_column, sizeof group_of_column);
    uint8_t *codes = malloc((size_t)rows * n), *dcodes = dev_poisoned((size_t)rows * n);
    float *Err = malloc((size_t)rows * block * 4), *dErr = dev_poisoned((size_t)rows * block * 4);
    for (int col0 = 0; col0 < n; col0 += block) {
        int end = col0 + block;
        CALL(kn_gptq_block(dW, dcodes, dErr, dHinv, dscale, dzero, 1, dgroups, false, -1, rows, n, col0, block, bits,
                           false, NULL));
        CALL(kn_cpu_gptq_block(W, codes, Err, Hinv, scale, zero, 1, group_of_column, false, -1, rows, n, col0, block,
                               bits, false, NULL));
        if (end < n) {
            CALL(kn_gemm(false, false, rows, n - end, block, -1.0f, dErr, block, dHinv + (size_t)col0 * n + end, n,
                         1.0f, dW + end, n));
            CALL(kn_cpu_gemm(false, false, rows, n - end, block, -1.0f, Err, block, Hinv + (size_t)col0 * n + end, n,
                             1.0f, W + end, n));
        }
    }
    compare_codes("GPTQ pass 128x256, blocks of 64: codes", dcodes, codes, (size_t)rows * n, 1e-2);
    compare("GPTQ pass 128x256, blocks of 64: quantized W", dW, W, (size_t)rows * n, 1e-2);
    kn_free(dHinv);
    kn_free(dW);
    kn_free(dscale);
    kn_free(dzero);
    kn_free(dgroups);
    kn_free(dcodes);
    kn_free(dErr);
    free(Hinv);
    free(W);
    free(scale);
    free(zero);
    free(codes);
    free(Err);
}

/* ---- pruning ------------------------------------------------------------- */

/* Random weights on a coarse grid (multiples of 1/8), so many |w| tie and the
 * lower-column-first rule is exercised. */
static float *host_tied(size_t n)
{
    float *x = host_random(n, 1.0f);
    for (size_t i = 0; i < n; i++)
        x[i] = nearbyintf(x[i] * 8.0f) / 8.0f;
    return x;
}

static void prune_case(int rows, int n, int group, int count, bool with_scale)
{
    float *W = host_tied((size_t)rows * n), *scale = host_random((size_t)n, 1.0f);
    for (int c = 0; c < n; c++)
        scale[c] = c % 5 == 0 ? 1.0f : fabsf(scale[c]); /* some columns scale alike: ties stay ties */
    float *dW = dev_from(W, (size_t)rows * n * 4), *dscale = dev_from(scale, (size_t)n * 4);
    CALL(kn_prune_lowest(dW, with_scale ? dscale : NULL, rows, n, group, count));
    CALL(kn_cpu_prune_lowest(W, with_scale ? scale : NULL, rows, n, group, count));
    char what[128];
    snprintf(what, sizeof what, "kn_prune_lowest %dx%d, %d of every %d%s", rows, n, count, group,
             with_scale ? ", column scales" : "");
    compare(what, dW, W, (size_t)rows * n, 0.0);
    kn_free(dW);
    kn_free(dscale);
    free(W);
    free(scale);
}

/* Identical masks: unstructured (one group per row) and N:M, with and without
 * column scales (Wanda, magnitude); 1100 rows of 4096 take two sort chunks. */
static void test_prune_lowest(void)
{
    prune_case(37, 96, 96, 48, true);
    prune_case(37, 96, 96, 30, false);
    prune_case(37, 96, 4, 2, false);
    prune_case(37, 96, 8, 6, true);
    prune_case(3, 11008, 11008, 5504, true);
    prune_case(1100, 4096, 4096, 2048, false);
}

/* One SparseGPT block with identical inputs: the GPU must reproduce the CPU exactly
 * (mask, W, Err, grids, codes). Blocks as in test_gptq_block; prune_group = 0 takes the
 * whole block (unstructured). */
static void sparsegpt_block_case(block_geometry geo, int bits, bool sym, int prune_group, int prune_count)
{
    const int rows = 100, n = 200, col0 = geo.col0, ncols = geo.ncols, group = geo.group;
    const int ldg = (n + group - 1) / group;
    if (prune_group == 0)
        prune_group = ncols;
    float *Hinv = host_hinv(n);
    float *dHinv = dev_from(Hinv, (size_t)n * n * 4);
    int32_t group_of_column[200];
    for (int c = 0; c < n; c++)
        group_of_column[c] = c / group;
    int32_t *dgroups = dev_from(group_of_column, sizeof group_of_column);
    float *W = host_random((size_t)rows * n, 0.1f);
    size_t ng = (size_t)rows * ldg;
    float *scale = host_random(ng, 1.0f), *zero = host_random(ng, 1.0f);
    uint8_t *codes = malloc((size_t)rows * n);
    memset(codes, 0xff, (size_t)rows * n);
    float *Err = malloc((size_t)rows * ncols * 4);
    float *dW = dev_from(W, (size_t)rows * n * 4), *dscale = dev_from(scale, ng * 4);
    float *dzero = dev_from(zero, ng * 4), *dErr = dev_poisoned((size_t)rows * ncols * 4);
    uint8_t *dcodes = dev_poisoned((size_t)rows * n);
    CALL(kn_sparsegpt_block(dW, dcodes, dErr, dHinv, dscale, dzero, ldg, dgroups, true, group, rows, n, col0, ncols,
                            bits, sym, prune_group, prune_count));
    CALL(kn_cpu_sparsegpt_block(W, codes, Err, Hinv, scale, zero, ldg, group_of_column, true, group, rows, n, col0,
                                ncols, bits, sym, prune_group, prune_count));
    char what[192], how[96];
    snprintf(how, sizeof how, "%s, groups of %d, block [%d, %d)", bits == 0 ? "unquantized" : sym ? "4-bit sym"
             : "4-bit asym", group, col0, col0 + ncols);
    snprintf(what, sizeof what, "kn_sparsegpt_block W (%s, %d of every %d)", how, prune_count, prune_group);
    compare(what, dW, W, (size_t)rows * n, 0.0);
    snprintf(what, sizeof what, "kn_sparsegpt_block Err (%s, %d of every %d)", how, prune_count, prune_group);
    compare(what, dErr, Err, (size_t)rows * ncols, 0.0);
    if (bits > 0) {
        snprintf(what, sizeof what, "kn_sparsegpt_block scale (%s)", how);
        compare(what, dscale, scale, ng, 0.0);
        snprintf(what, sizeof what, "kn_sparsegpt_block zero (%s)", how);
        compare(what, dzero, zero, ng, 0.0);
        snprintf(what, sizeof what, "kn_sparsegpt_block codes (%s)", how);
        compare_codes(what, dcodes, codes, (size_t)rows * n, 0.0);
    }
    kn_free(dW);
    kn_free(dscale);
    kn_free(dzero);
    kn_free(dErr);
    kn_free(dcodes);
    kn_free(dHinv);
    kn_free(dgroups);
    free(W);
    free(scale);
    free(zero);
    free(codes);
    free(Err);
    free(Hinv);
}

static void test_sparsegpt_block(void)
{
    for (int k = 0; k < N_BLOCK_CASES; k++) {
        sparsegpt_block_case(block_cases[k], 0, false, 0, block_cases[k].ncols / 2);
        sparsegpt_block_case(block_cases[k], 0, false, 4, 2);
        sparsegpt_block_case(block_cases[k], 4, false, 0, block_cases[k].ncols * 3 / 5);
        sparsegpt_block_case(block_cases[k], 4, true, 8, 4);
    }
}

/* A whole unstructured 50% SparseGPT pass on each backend, blocks of 64 with each
 * backend's own lazy-update GEMM: masks may differ only where the GEMMs' rounding
 * reorders two nearly equal scores (at most 1% of entries), W within 1e-2. */
static void test_sparsegpt_pass(void)
{
    const int rows = 128, n = 256, block = 64;
    float *Hinv = host_hinv(n), *W = host_random((size_t)rows * n, 0.1f);
    float *dHinv = dev_from(Hinv, (size_t)n * n * 4), *dW = dev_from(W, (size_t)rows * n * 4);
    float *Err = malloc((size_t)rows * block * 4), *dErr = dev_poisoned((size_t)rows * block * 4);
    for (int col0 = 0; col0 < n; col0 += block) {
        int end = col0 + block;
        CALL(kn_sparsegpt_block(dW, NULL, dErr, dHinv, NULL, NULL, 1, NULL, false, -1, rows, n, col0, block, 0,
                                false, block, block / 2));
        CALL(kn_cpu_sparsegpt_block(W, NULL, Err, Hinv, NULL, NULL, 1, NULL, false, -1, rows, n, col0, block, 0,
                                    false, block, block / 2));
        if (end < n) {
            CALL(kn_gemm(false, false, rows, n - end, block, -1.0f, dErr, block, dHinv + (size_t)col0 * n + end, n,
                         1.0f, dW + end, n));
            CALL(kn_cpu_gemm(false, false, rows, n - end, block, -1.0f, Err, block, Hinv + (size_t)col0 * n + end, n,
                             1.0f, W + end, n));
        }
    }
    float *gpu = downloaded(dW, (size_t)rows * n);
    size_t differ = 0, gpu_zeros = 0;
    for (size_t i = 0; i < (size_t)rows * n; i++) {
        differ += (gpu[i] == 0.0f) != (W[i] == 0.0f);
        gpu_zeros += gpu[i] == 0.0f;
    }
    report(gpu_zeros == (size_t)rows * n / 2, "SparseGPT pass 128x256: GPU W has %zu zeros (expected %d)", gpu_zeros,
           rows * n / 2);
    report(differ <= (size_t)rows * n / 100, "SparseGPT pass 128x256: %zu of %d mask entries differ (allowed 1%%)",
           differ, rows * n);
    compare("SparseGPT pass 128x256, blocks of 64: pruned W", dW, W, (size_t)rows * n, 1e-2);
    kn_free(dHinv);
    kn_free(dW);
    kn_free(dErr);
    free(gpu);
    free(Hinv);
    free(W);
    free(Err);
}

/* Exact fixed-point sums (kernels/fixed_sum.h): the same integers and floats as the CPU
 * backend, bit for bit, and the same result when the addends come in another order. */
static void test_fixed_accumulate(void)
{
    const size_t n = 40003;
    const size_t lanes = 3 * n * sizeof(int64_t);
    float *x = host_random(n, 2.0f), *y = host_random(n, 5.0f);
    int64_t *acc = calloc(3 * n, sizeof *acc), *gpu_acc = malloc(lanes);
    float *summed = malloc(n * sizeof *summed), *reversed = malloc(n * sizeof *reversed);
    int64_t *dacc = dev_poisoned(lanes);
    float *dx = dev_from(x, n * 4), *dy = dev_from(y, n * 4), *dsummed = dev_poisoned(n * 4);
    float *dxy = dev_poisoned(2 * n * 4); /* x then y: both arrays in one call on the GPU */
    CALL(kn_copy(dxy, dx, n * 4));
    CALL(kn_copy(dxy + n, dy, n * 4));
    CALL(kn_zero(dacc, lanes));
    CALL(kn_fixed_accumulate(dacc, dxy, n, 2, n));
    CALL(kn_cpu_fixed_accumulate(acc, x, n, 1, n));
    CALL(kn_cpu_fixed_accumulate(acc, y, n, 1, n));
    CALL(kn_download(gpu_acc, dacc, lanes));
    report(memcmp(gpu_acc, acc, lanes) == 0, "kn_zero + kn_fixed_accumulate of two arrays in one call: the lanes "
           "of two CPU calls");
    kn_free(dxy);
    CALL(kn_fixed_to_f32(dsummed, dacc, 2.0 / 3.0, n));
    CALL(kn_cpu_fixed_to_f32(summed, acc, 2.0 / 3.0, n));
    compare("kn_fixed_to_f32", dsummed, summed, n, 0.0);
    CALL(kn_zero(dacc, lanes));
    CALL(kn_fixed_accumulate(dacc, dy, n, 1, n));
    CALL(kn_fixed_accumulate(dacc, dx, n, 1, n));
    CALL(kn_fixed_to_f32(dsummed, dacc, 2.0 / 3.0, n));
    CALL(kn_download(reversed, dsummed, n * 4));
    report(memcmp(reversed, summed, n * 4) == 0, "kn_fixed_accumulate: y + x gives the bits of x + y");
    x[7] = 1e30f;
    CALL(kn_upload(dx, x, n * 4));
    CALL(kn_fixed_accumulate(dacc, dx, n, 1, n));
    report(kn_fixed_to_f32(dsummed, dacc, 1.0, n) == SQ_ERR_NUMERIC, "kn_fixed_to_f32: an addend beyond 2^47 fails");
    kn_free(dacc);
    kn_free(dx);
    kn_free(dy);
    kn_free(dsummed);
    free(x);
    free(y);
    free(acc);
    free(gpu_acc);
    free(summed);
    free(reversed);
}

int main(void)
{
    unsigned long long seed = getenv("SEED") ? strtoull(getenv("SEED"), NULL, 10) : (unsigned long long)time(NULL);
    sq_rng_seed(&rng, seed);
    printf("# seed %llu\n", seed);
    if (kn_init(0) != SQ_OK || kn_cpu_init(0) != SQ_OK) {
        printf("Bail out! kn_init: %s\n", sq_last_error());
        return 1;
    }
    printf("# device: %s\n# reference: %s\n", kn_device_description(), kn_cpu_device_description());
    test_memory();
    test_gemm();
    test_linear();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_attention_backward();
    test_elementwise();
    test_cross_entropy();
    test_fake_quantize();
    test_hessian();
    test_fixed_accumulate();
    test_hessian_prepare();
    test_permutations();
    test_solves(256);
    test_solves(1000);
    test_quant_grid_and_rtn();
    test_gptq_block();
    test_gptq_pass();
    test_prune_lowest();
    test_sparsegpt_block();
    test_sparsegpt_pass();
    printf("1..%d\n", test_number);
    kn_shutdown();
    return failures ? 1 : 0;
}
