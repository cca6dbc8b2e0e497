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
 *   exact (0)   data movement, permutations, grids, RTN, fake quantization (KV rows and
 *               per-token activations), SmoothQuant's column maxima and scaling, the KV
 *               caches (static int8 / fp8 e4m3, their maxima, KIVI key groups), GPTQ block
 *               with and without a sparsity mask, kn_mark_zeros (the CUDA kernels
 *               repeat the CPU arithmetic operation for operation)
 *   1e-5        fp32 reductions whose summation order differs (GEMM, norms, softmax)
 *   2e-3        kn_linear (fp16 inputs), kn_attention and kn_attention_backward on their cuBLAS
 *               paths (TF32; dq, dk and dv each), on the tensor cores; a NumPy model of the
 *               backward with inputs rounded to TF32 gives 5e-4 at these shapes (1.8e-3 if
 *               truncated)
 *   1e-2        the flash kernels (head_dim 64 and 128: kn_attention, its lse2, and the backward
 *               kn_cuda_flash_attention_backward; dq, dk, dv each): q, k, v, dO, P and dS
 *               rounded to bf16 (8 significant bits) for the tensor cores, fp32 accumulation
 *               and softmax; measured 1.6e-3 to 4.5e-3. The flash backward must also give
 *               the same bits on a second run and when given the forward's out and lse2
 *               (memcmp); kn_attention's out is the same bits with and without lse2
 *   1e-5        lse2 of the cuBLAS path (fp32 direct sums in another order)
 *   1e-3        kn_hessian_accumulate, an fp16-input GEMM (inputs rounded to 11 significant bits)
 *   1e-3        SPD inverse, 1e-4 Cholesky factor, of a matrix with condition number ~40
 *   GPTQ pass:  codes may differ where the lazy-update GEMMs round differently and a
 *               value lands on a rounding tie: at most 1% of codes, W within 1e-2.
 *   pruning:    kn_prune_lowest and kn_sparsegpt_block exact (same masks, ties included);
 *               a SparseGPT pass, like the GPTQ pass, at most 1% of mask entries, W 1e-2.
 *   training:   exact: kn_dropout (the same mask, kernels/dropout_mask.h), kn_scale,
 *               kn_dequantize_nf4 and kn_dequantize_blockwise8 (the same float products);
 *               1e-6: kn_rope_backward (cos/sin of the device's libm), kn_adamw (the CPU's
 *               float operations in its order, no fused multiply-add: exact expected);
 *               1e-5: kn_rmsnorm_backward, kn_swiglu_backward (expf), the chunked
 *               cross-entropy (block sums in another order), kn_linear_backward's dweight
 *               (fp32 GEMM); 1e-2: its dx (bf16 copies of dy and W on the tensor cores);
 *               1e-9: kn_sum_squares (double sums in another, but fixed, order: the same
 *               bits on a second run is checked too). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>

#include "core/rng.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/flash_attention.h"
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
    /* the layer prefetch's path: stored bytes uploaded beside the queue, then widened on the device */
    void *raw = dev_poisoned(n * sizeof(float));
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (cases[c].dtype == SQ_DTYPE_F64)
            continue;
        CALL(kn_cpu_upload_as_f32(want, cases[c].src, cases[c].dtype, n));
        poison(dy, n * sizeof(float));
        CALL(kn_upload_beside(raw, cases[c].src, n * sq_dtype_size(cases[c].dtype)));
        CALL(kn_widen_to_f32(dy, raw, cases[c].dtype, n));
        compare(cases[c].dtype == SQ_DTYPE_BF16  ? "kn_upload_beside + kn_widen_to_f32 BF16"
                : cases[c].dtype == SQ_DTYPE_F16 ? "kn_upload_beside + kn_widen_to_f32 F16"
                                                 : "kn_upload_beside + kn_widen_to_f32 F32",
                dy, want, n, 0.0);
    }
    kn_free(raw);
    kn_free(dx);
    kn_free(dy);
    free(x);
    free(filled);
    free(bf16);
    free(f16);
    free(f64);
    free(want);
}

/* A 150 MB upload and a download large enough to go through transfer.c's staging buffer in several
 * 64 MB chunks with a ragged end, each checked against copies of under 4 MB, into fresh buffers:
 * every byte there and back. */
static void test_large_transfers(void)
{
    const size_t bytes = ((size_t)150 << 20) + 3, small = (size_t)3 << 20;
    uint8_t *pattern = malloc(bytes), *back = malloc(bytes);
    for (size_t i = 0; i < bytes; i++)
        pattern[i] = (uint8_t)(i * 2654435761u >> 13);
    void *dev = NULL;
    CALL(kn_alloc(&dev, bytes));
    CALL(kn_upload(dev, pattern, bytes));
    for (size_t off = 0; off < bytes; off += small)
        CALL(kn_download(back + off, (char *)dev + off, bytes - off < small ? bytes - off : small));
    report(memcmp(back, pattern, bytes) == 0, "kn_upload of 150 MB + 3 bytes: every byte there");
    CALL(kn_zero(dev, bytes));
    for (size_t off = 0; off < bytes; off += small)
        CALL(kn_upload((char *)dev + off, pattern + off, bytes - off < small ? bytes - off : small));
    memset(back, 0, bytes);
    CALL(kn_download(back, dev, bytes));
    report(memcmp(back, pattern, bytes) == 0, "kn_download of 150 MB + 3 bytes (staged in chunks): every byte back");
    kn_free(dev);
    free(pattern);
    free(back);
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

/* kn_linear_lora (one fused fp16 product on the GPU) against the CPU's three fp32 products:
 * u and out, with and without bias, K = in + r a multiple of 8 and not (padding). */
static void lora_linear_case(int rows, int in, int out, int r, bool with_bias)
{
    float *x = host_random((size_t)rows * in, 1.0f), *w = host_random((size_t)out * in, 0.05f);
    float *A = host_random((size_t)r * in, 0.05f), *B = host_random((size_t)out * r, 0.05f);
    float *bias = with_bias ? host_random(out, 1.0f) : NULL;
    float *y = malloc((size_t)rows * out * 4), *u = malloc((size_t)rows * r * 4);
    float *dx = dev_from(x, (size_t)rows * in * 4), *dw = dev_from(w, (size_t)out * in * 4);
    float *dA = dev_from(A, (size_t)r * in * 4), *dB = dev_from(B, (size_t)out * r * 4);
    float *dbias = with_bias ? dev_from(bias, out * 4) : NULL;
    float *dy = dev_poisoned((size_t)rows * out * 4), *du = dev_poisoned((size_t)rows * r * 4);
    CALL(kn_linear_lora(dy, du, dx, dw, dbias, dA, dB, 2.0f, rows, in, out, r));
    CALL(kn_cpu_linear_lora(y, u, x, w, bias, A, B, 2.0f, rows, in, out, r));
    char what[160];
    snprintf(what, sizeof what, "kn_linear_lora rows=%d in=%d out=%d r=%d%s: u (fp16 inputs)", rows, in, out, r,
             with_bias ? " bias" : "");
    compare(what, du, u, (size_t)rows * r, 2e-3);
    snprintf(what, sizeof what, "kn_linear_lora rows=%d in=%d out=%d r=%d%s: out (fp16 inputs)", rows, in, out, r,
             with_bias ? " bias" : "");
    compare(what, dy, y, (size_t)rows * out, 2e-3);
    float *gpu = malloc((size_t)rows * out * 4), *base = malloc((size_t)rows * out * 4);
    CALL(kn_cpu_linear(base, x, w, bias, rows, in, out)); /* the low-rank term must be there */
    CALL(kn_download(gpu, dy, (size_t)rows * out * 4));
    double term = 0, missed = 0;
    for (size_t i = 0; i < (size_t)rows * out; i++)
        term += (double)(y[i] - base[i]) * (y[i] - base[i]), missed += (double)(gpu[i] - y[i]) * (gpu[i] - y[i]);
    report(missed < 1e-2 * term, "kn_linear_lora: the low-rank term is added (error %.2e of its norm)",
           sqrt(missed / term));
    kn_free(dx), kn_free(dw), kn_free(dA), kn_free(dB), kn_free(dbias), kn_free(dy), kn_free(du);
    free(x), free(w), free(A), free(B), free(bias), free(y), free(u), free(gpu), free(base);
}

static void test_linear_lora(void)
{
    lora_linear_case(300, 512, 384, 16, true);
    lora_linear_case(77, 100, 50, 4, false); /* K = 104: padded */
    lora_linear_case(64, 256, 1, 8, false);
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

/* kn_linear_per_block: the CPU's result within kn_linear's tolerance, and the same bits as
 * one kn_linear call per block (odd block sizes: the padded fp16 layout). */
static void linear_per_block_case(int blocks, int rows, int in, int out, bool with_bias)
{
    const size_t n_x = (size_t)blocks * rows * in, n_y = (size_t)blocks * rows * out;
    float *x = host_random(n_x, 1.0f), *w = host_random((size_t)out * in, 0.05f), *bias = host_random(out, 1.0f);
    float *y = malloc(n_y * 4), *once = malloc(n_y * 4), *apart = malloc(n_y * 4);
    float *dx = dev_from(x, n_x * 4), *dw = dev_from(w, (size_t)out * in * 4), *db = dev_from(bias, out * 4);
    float *dy = dev_poisoned(n_y * 4);
    const float *b = with_bias ? db : NULL;
    CALL(kn_linear_per_block(dy, dx, dw, b, blocks, rows, in, out));
    CALL(kn_cpu_linear_per_block(y, x, w, with_bias ? bias : NULL, blocks, rows, in, out));
    compare("kn_linear_per_block (fp16 inputs)", dy, y, n_y, 2e-3);
    CALL(kn_download(once, dy, n_y * 4));
    poison(dy, n_y * 4);
    for (int k = 0; k < blocks; k++)
        CALL(kn_linear(dy + (size_t)k * rows * out, dx + (size_t)k * rows * in, dw, b, rows, in, out));
    CALL(kn_download(apart, dy, n_y * 4));
    report(!memcmp(once, apart, n_y * 4), "kn_linear_per_block: %d blocks of %d x %d -> %d%s give the bits of %d kn_linear calls",
           blocks, rows, in, out, with_bias ? " with bias" : "", blocks);
    kn_free(dx), kn_free(dw), kn_free(db), kn_free(dy);
    free(x), free(w), free(bias), free(y), free(once), free(apart);
}

static void test_linear_per_block(void)
{
    linear_per_block_case(3, 37, 100, 50, true);
    linear_per_block_case(4, 128, 256, 96, false);
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

/* What kn_attention (and the flash backward) must meet: the flash kernels' for head dims they take. */
static double attention_tolerance(int head_dim) { return kn_cuda_flash_supported(head_dim) ? 1e-2 : 2e-3; }

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
    /* called without lse2, then asked for each row's log-sum-exp too: the same out, and lse2 as
     * the CPU's (the flash kernels' from bf16 scores; the cuBLAS path's by fp32 direct sums) */
    const size_t rows = (size_t)batch * n_heads * seq;
    float *lse2 = malloc(rows * 4), *d_lse2 = dev_poisoned(rows * 4), *first = NULL;
    sq_status st = kn_attention(dout, NULL, dq, dk, dv, batch, seq, n_heads, n_kv_heads, head_dim);
    if (st == SQ_OK) {
        first = downloaded(dout, nq);
        poison(dout, nq * 4);
        st = kn_attention(dout, d_lse2, dq, dk, dv, batch, seq, n_heads, n_kv_heads, head_dim);
    }
    end_score_cap();
    CALL(st);
    CALL(kn_cpu_attention(o, lse2, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    compare(what, dout, o, nq, attention_tolerance(head_dim));
    float *again = downloaded(dout, nq);
    report(!memcmp(first, again, nq * 4), "%s: the same out when keeping lse2", what);
    snprintf(what, sizeof what, "kn_attention lse2 batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", batch, seq,
             n_heads, n_kv_heads, head_dim);
    compare(what, d_lse2, lse2, rows, kn_cuda_flash_supported(head_dim) ? 1e-2 : 1e-5);
    kn_free(dq);
    kn_free(dk);
    kn_free(dv);
    kn_free(dout);
    kn_free(d_lse2);
    free(q);
    free(k);
    free(v);
    free(o);
    free(lse2);
    free(first);
    free(again);
}

static void test_attention(void)
{
    attention_case(2, 77, 8, 2, 64, 0);
    attention_case(1, 40, 4, 4, 128, 0);
    attention_case(3, 33, 6, 3, 96, 0);
    attention_case(1, 9, 2, 1, 256, 0);
    attention_case(2, 600, 8, 2, 128, 0);
    attention_case(2, 37, 6, 3, 96, 2); /* the cuBLAS path's chunk loop (head_dim 64 runs flash) */
}

typedef sq_status (*attention_backward_fn)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                           const float *lse2, const float *q, const float *k, const float *v,
                                           int batch, int seq, int n_heads, int n_kv_heads, int head_dim);

/* kn_cuda_attention_backward_cublas in the shape of kn_attention_backward (it recomputes the forward). */
static sq_status cublas_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                 const float *lse2, const float *q, const float *k, const float *v, int batch, int seq,
                                 int n_heads, int n_kv_heads, int head_dim)
{
    (void)out, (void)lse2;
    return kn_cuda_attention_backward_cublas(dq, dk, dv, dout, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim);
}

/* An attention backward (`name`: the entry point called: kn_attention_backward or one of its two paths)
 * against the CPU backend: dq, dk, dv from poisoned buffers (dk and dv must be written, not
 * added to), within `tolerance`; chunk_heads as in set_score_cap (two matrices per head).
 * same_bits: a second run into poisoned buffers must give the same bits, and so must a run given
 * the forward's out and lse2 (kn_attention on the GPU). */
static void attention_backward_case(const char *name, attention_backward_fn backward, double tolerance,
                                    bool same_bits, int batch, int seq, int n_heads, int n_kv_heads, int head_dim,
                                    int chunk_heads)
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
    snprintf(shape, sizeof shape, "%s batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d%s", name, batch, seq,
             n_heads, n_kv_heads, head_dim, chunking);
    sq_status st = backward(d_dq, d_dk, d_dv, d_dout, NULL, NULL, d_q, d_k, d_v, batch, seq, n_heads, n_kv_heads,
                            head_dim);
    end_score_cap();
    CALL(st);
    CALL(kn_cpu_attention_backward(dq, dk, dv, dout, NULL, NULL, q, k, v, batch, seq, n_heads, n_kv_heads,
                                   head_dim));
    const struct { const char *name; float *gpu; const float *cpu; size_t n; } grads[] = {
        {"dq", d_dq, dq, nq}, {"dk", d_dk, dk, nkv}, {"dv", d_dv, dv, nkv}};
    enum { GRADS = sizeof grads / sizeof grads[0] };
    float *first[GRADS] = {NULL};
    for (int i = 0; i < GRADS; i++) {
        snprintf(what, sizeof what, "%s: %s", shape, grads[i].name);
        compare(what, grads[i].gpu, grads[i].cpu, grads[i].n, tolerance);
        if (same_bits) {
            first[i] = downloaded(grads[i].gpu, grads[i].n);
            poison(grads[i].gpu, grads[i].n * 4);
        }
    }
    float *d_out = dev_poisoned(nq * 4), *d_lse2 = dev_poisoned((size_t)batch * n_heads * seq * 4);
    for (int given = 0; same_bits && given < 2; given++) { /* again; then given the forward's out and lse2 */
        if (given) {
            CALL(kn_attention(d_out, d_lse2, d_q, d_k, d_v, batch, seq, n_heads, n_kv_heads, head_dim));
            for (int i = 0; i < GRADS; i++)
                poison(grads[i].gpu, grads[i].n * 4);
        }
        CALL(backward(d_dq, d_dk, d_dv, d_dout, given ? d_out : NULL, given ? d_lse2 : NULL, d_q, d_k, d_v, batch,
                      seq, n_heads, n_kv_heads, head_dim));
        int same = 1;
        for (int i = 0; i < GRADS; i++) {
            float *again = downloaded(grads[i].gpu, grads[i].n);
            same &= memcmp(again, first[i], grads[i].n * 4) == 0;
            free(again);
        }
        report(same, "%s: %s gives the same bits", shape,
               given ? "a run given the forward's out and lse2" : "a second run");
    }
    kn_free(d_out);
    kn_free(d_lse2);
    for (int i = 0; i < GRADS; i++)
        free(first[i]);
    float *device[] = {d_q, d_k, d_v, d_dout, d_dq, d_dk, d_dv}, *host[] = {q, k, v, dout, dq, dk, dv};
    for (size_t i = 0; i < sizeof device / sizeof device[0]; i++) {
        kn_free(device[i]);
        free(host[i]);
    }
}

/* Grouped (8 query heads on 2 kv heads) and plain (4 on 4) heads; seq 1 (a single key: dq and
 * dk are exactly 0, dv sums the group's dout), 37 and 160; Llama's head_dim 128 once; then the chunk loop:
 * one kv head per chunk, and chunks of 3 + 1 kv heads. */
static void cublas_backward_case(int batch, int seq, int n_heads, int n_kv_heads, int head_dim, int chunk_heads)
{
    attention_backward_case("kn_cuda_attention_backward_cublas", cublas_backward, 2e-3, false,
                            batch, seq, n_heads, n_kv_heads, head_dim, chunk_heads);
}

static void test_attention_backward(void)
{
    const int seqs[] = {1, 37, 160};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        cublas_backward_case(2, seqs[i], 8, 2, 64, 0);
        cublas_backward_case(2, seqs[i], 4, 4, 64, 0);
    }
    cublas_backward_case(1, 300, 8, 2, 128, 0);
    cublas_backward_case(2, 37, 8, 2, 64, 1);
    cublas_backward_case(2, 160, 4, 4, 64, 3);
    /* The flash kernels, forward and backward: one row (dq, dk exactly 0), and tails of their
     * 64-row (32-row) blocks after several swaps of their double buffers (130, 257), grouped
     * (8 on 2: the dK/dV kernel prefetches across heads) and plain (4 on 4) heads. */
    const int flash_seqs[] = {1, 37, 130, 257}, kv_heads[] = {2, 4}, head_dims[] = {64, 128};
    for (int d = 0; d < 2; d++)
        for (int g = 0; g < 2; g++)
            for (int i = 0; i < 4; i++) {
                int n_heads = kv_heads[g] == 2 ? 8 : 4;
                attention_case(2, flash_seqs[i], n_heads, kv_heads[g], head_dims[d], 0);
                attention_backward_case("kn_attention_backward (flash)", kn_attention_backward,
                                        attention_tolerance(head_dims[d]), true, 2, flash_seqs[i], n_heads,
                                        kv_heads[g], head_dims[d], 0);
            }
    /* and a head dim the flash kernels do not take: kn_attention_backward runs cuBLAS */
    attention_backward_case("kn_attention_backward (cuBLAS)", kn_attention_backward, 2e-3, false, 2, 37, 6, 3, 96, 0);
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

typedef sq_status (*fake_quantize_fn)(float *x, int rows, int dim, int bits);

/* A fake quantization kernel against its CPU twin at `bits`, with row 5 all `special`. */
static void check_fake_quantize(const char *name, fake_quantize_fn gpu, fake_quantize_fn cpu, int rows, int dim,
                                int bits, float special)
{
    float *x = host_random((size_t)rows * dim, 1.0f);
    for (int i = 0; i < dim; i++)
        x[5 * dim + i] = special;
    float *dx = dev_from(x, (size_t)rows * dim * 4);
    CALL(gpu(dx, rows, dim, bits));
    CALL(cpu(x, rows, dim, bits));
    char what[64];
    snprintf(what, sizeof what, "%s bits=%d", name, bits);
    compare(what, dx, x, (size_t)rows * dim, 0.0);
    kn_free(dx);
    free(x);
}

/* The KV cache's per-row min/max grid (a constant row is left as is) and the per-token symmetric
 * grid of simulated W8A8 activations (a zero row stays zero). */
static void test_fake_quantize(void)
{
    for (int bits = 2; bits <= 8; bits += 6)
        check_fake_quantize("kn_fake_quantize_rows", kn_fake_quantize_rows, kn_cpu_fake_quantize_rows, 40, 128, bits,
                            0.75f);
    for (int bits = 4; bits <= 8; bits += 4)
        check_fake_quantize("kn_fake_quantize_tokens", kn_fake_quantize_tokens, kn_cpu_fake_quantize_tokens, 70, 200,
                            bits, 0.0f);
}

/* SmoothQuant's column maxima and column scaling: exact (a max in any order, one product each). */
static void test_smoothing_kernels(void)
{
    const int rows = 70, dim = 200;
    float *X = host_random((size_t)rows * dim, 3.0f), *colmax = host_random(dim, 1.0f);
    for (int c = 0; c < dim; c++)
        colmax[c] = fabsf(colmax[c]); /* a running maximum: some columns keep their old value */
    float *dX = dev_from(X, (size_t)rows * dim * 4), *dmax = dev_from(colmax, dim * 4);
    CALL(kn_column_abs_max(dmax, dX, rows, dim));
    CALL(kn_cpu_column_abs_max(colmax, X, rows, dim));
    compare("kn_column_abs_max 70x200 (running)", dmax, colmax, dim, 0.0);
    CALL(kn_scale_columns(dX, dmax, rows, dim));
    CALL(kn_cpu_scale_columns(X, colmax, rows, dim));
    compare("kn_scale_columns 70x200", dX, X, (size_t)rows * dim, 0.0);
    kn_free(dX);
    kn_free(dmax);
    free(X);
    free(colmax);
}

/* The quantized KV caches (kernels/kv_cache_grid.h): static int8 / fp8 e4m3 with per-head
 * scales, their calibration maxima (on top of earlier maxima) and KIVI's key groups (a
 * sequence length that leaves a residual block). All exact: the same float operations. */
static void test_kv_cache_kernels(void)
{
    const int rows = 37, heads = 3, head_dim = 64, width = heads * head_dim;
    const float scales[3] = {0.002f, 0.013f, 0.25f}; /* with values of 1: fp8 saturates, subnormals, normal */
    for (int fp8 = 0; fp8 < 2; fp8++) {
        float *x = host_random((size_t)rows * width, 1.0f);
        float *dx = dev_from(x, (size_t)rows * width * 4), *ds = dev_from(scales, sizeof scales);
        kn_kv_format format = fp8 ? KN_KV_FP8 : KN_KV_INT8;
        CALL(kn_kv_quantize_static(dx, ds, rows, heads, head_dim, format));
        CALL(kn_cpu_kv_quantize_static(x, scales, rows, heads, head_dim, format));
        compare(fp8 ? "kn_kv_quantize_static fp8 e4m3" : "kn_kv_quantize_static int8", dx, x, (size_t)rows * width,
                0.0);
        kn_free(dx);
        kn_free(ds);
        free(x);
    }
    float *x = host_random((size_t)rows * width, 2.0f), absmax[3] = {0.5f, 0.0f, 100.0f};
    float *dx = dev_from(x, (size_t)rows * width * 4), *dm = dev_from(absmax, sizeof absmax);
    CALL(kn_kv_head_absmax(dm, dx, rows, heads, head_dim));
    CALL(kn_cpu_kv_head_absmax(absmax, x, rows, heads, head_dim));
    compare("kn_kv_head_absmax over earlier maxima", dm, absmax, 3, 0.0);
    kn_free(dx);
    kn_free(dm);
    free(x);
    const int batch = 2, seq = 70, channels = 96, group = 32; /* 2 blocks and 6 residual tokens per sequence */
    for (int bits = 2; bits <= 4; bits += 2) {
        float *k = host_random((size_t)batch * seq * channels, 1.0f);
        float *dk = dev_from(k, (size_t)batch * seq * channels * 4);
        CALL(kn_kv_quantize_channel_groups(dk, batch, seq, channels, group, bits));
        CALL(kn_cpu_kv_quantize_channel_groups(k, batch, seq, channels, group, bits));
        char what[64];
        snprintf(what, sizeof what, "kn_kv_quantize_channel_groups bits=%d", bits);
        compare(what, dk, k, (size_t)batch * seq * channels, 0.0);
        kn_free(dk);
        free(k);
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

/* One block call's inputs and outputs on both backends: W [100, 200] random (with
 * `zero_half`, about half of it set to +0 or -0), Hinv, the geometry's group_of_column,
 * random grids (a group starts at col0, so every grid the block uses is computed in it),
 * codes 0xff on the host and Err and codes poisoned on the device. */
typedef struct {
    int rows, n, col0, ncols, group, ldg;
    size_t ng;
    int32_t group_of_column[200];
    float *Hinv, *W, *scale, *zero, *Err;
    uint8_t *codes;
    float *dHinv, *dW, *dscale, *dzero, *dErr;
    int32_t *dgroups;
    uint8_t *dcodes;
} block_fixture;

static void block_fixture_init(block_fixture *f, block_geometry geo, bool zero_half)
{
    f->rows = 100, f->n = 200, f->col0 = geo.col0, f->ncols = geo.ncols, f->group = geo.group;
    f->ldg = (f->n + f->group - 1) / f->group;
    f->ng = (size_t)f->rows * f->ldg;
    size_t size = (size_t)f->rows * f->n;
    f->Hinv = host_hinv(f->n);
    f->dHinv = dev_from(f->Hinv, (size_t)f->n * f->n * 4);
    for (int c = 0; c < f->n; c++)
        f->group_of_column[c] = c / f->group;
    f->dgroups = dev_from(f->group_of_column, sizeof f->group_of_column);
    f->W = host_random(size, 0.1f);
    if (zero_half)
        for (size_t i = 0; i < size; i++)
            if (sq_rng_below(&rng, 2))
                f->W[i] = i % 3 ? 0.0f : -0.0f;
    f->scale = host_random(f->ng, 1.0f);
    f->zero = host_random(f->ng, 1.0f);
    f->codes = malloc(size);
    memset(f->codes, 0xff, size);
    f->Err = malloc((size_t)f->rows * f->ncols * 4);
    f->dW = dev_from(f->W, size * 4);
    f->dscale = dev_from(f->scale, f->ng * 4);
    f->dzero = dev_from(f->zero, f->ng * 4);
    f->dErr = dev_poisoned((size_t)f->rows * f->ncols * 4);
    f->dcodes = dev_poisoned(size);
}

/* The block's results on the two backends must be identical: W and Err, and with
 * `quantized` the grids and codes (codes outside the block stay as the CPU left them,
 * 0xff, like the poison). */
static void block_fixture_compare(const block_fixture *f, const char *kernel, const char *how, bool quantized)
{
    char what[256];
    snprintf(what, sizeof what, "%s W (%s)", kernel, how);
    compare(what, f->dW, f->W, (size_t)f->rows * f->n, 0.0);
    snprintf(what, sizeof what, "%s Err (%s)", kernel, how);
    compare(what, f->dErr, f->Err, (size_t)f->rows * f->ncols, 0.0);
    if (!quantized)
        return;
    snprintf(what, sizeof what, "%s scale (%s)", kernel, how);
    compare(what, f->dscale, f->scale, f->ng, 0.0);
    snprintf(what, sizeof what, "%s zero (%s)", kernel, how);
    compare(what, f->dzero, f->zero, f->ng, 0.0);
    snprintf(what, sizeof what, "%s codes (%s)", kernel, how);
    compare_codes(what, f->dcodes, f->codes, (size_t)f->rows * f->n, 0.0);
}

static void block_fixture_free(block_fixture *f)
{
    kn_free(f->dW);
    kn_free(f->dscale);
    kn_free(f->dzero);
    kn_free(f->dErr);
    kn_free(f->dcodes);
    kn_free(f->dHinv);
    kn_free(f->dgroups);
    free(f->W);
    free(f->scale);
    free(f->zero);
    free(f->codes);
    free(f->Err);
    free(f->Hinv);
}

/* One GPTQ block with identical inputs: the GPU kernel must reproduce the CPU exactly.
 * `masked`: half of W zeroed at random, the mask taken by each backend's kn_mark_zeros
 * (compared too) and kept by the block. */
static void gptq_block_case(block_geometry geo, bool sym, bool masked)
{
    const int bits = 4;
    block_fixture f;
    block_fixture_init(&f, geo, masked);
    const size_t size = (size_t)f.rows * f.n;
    char how[96];
    snprintf(how, sizeof how, "%s%s, groups of %d, block [%d, %d)", sym ? "sym" : "asym", masked ? ", masked" : "",
             f.group, f.col0, f.col0 + f.ncols);
    uint8_t *mask = NULL, *dmask = NULL;
    if (masked) {
        mask = malloc(size);
        dmask = dev_poisoned(size);
        CALL(kn_mark_zeros(dmask, f.dW, size));
        CALL(kn_cpu_mark_zeros(mask, f.W, size));
        compare_codes("kn_mark_zeros", dmask, mask, size, 0.0);
    }
    CALL(kn_gptq_block(f.dW, f.dcodes, f.dErr, f.dHinv, f.dscale, f.dzero, f.ldg, f.dgroups, true, f.group, f.rows,
                       f.n, f.col0, f.ncols, bits, sym, dmask));
    CALL(kn_cpu_gptq_block(f.W, f.codes, f.Err, f.Hinv, f.scale, f.zero, f.ldg, f.group_of_column, true, f.group,
                           f.rows, f.n, f.col0, f.ncols, bits, sym, mask));
    block_fixture_compare(&f, "kn_gptq_block", how, true);
    if (masked) {
        /* The reference itself: every masked entry of the block at its zero point, 0 in W. */
        size_t off_grid = 0;
        for (int r = 0; r < f.rows; r++)
            for (int j = f.col0; j < f.col0 + f.ncols; j++) {
                size_t k = (size_t)r * f.n + j;
                if (mask[k])
                    off_grid += f.codes[k] != f.zero[(size_t)r * f.ldg + f.group_of_column[j]] || f.W[k] != 0.0f;
            }
        report(off_grid == 0, "kn_gptq_block (%s): masked entries at the zero point (%zu are not)", how, off_grid);
    }
    kn_free(dmask);
    free(mask);
    block_fixture_free(&f);
}

static void test_gptq_block(void)
{
    for (int k = 0; k < N_BLOCK_CASES; k++)
        for (int sym = 0; sym < 2; sym++)
            for (int masked = 0; masked < 2; masked++)
                gptq_block_case(block_cases[k], sym, masked);
}

/* The lazy update after the block [col0, col0 + block) of a whole pass, on each backend
 * with its own kn_gemm: W[:, end:] -= Err · Hinv[block, end:]. */
static sq_status lazy_update(float *dW, float *W, const float *dErr, const float *Err, const float *dHinv,
                             const float *Hinv, int rows, int n, int col0, int block)
{
    int end = col0 + block;
    if (end >= n)
        return SQ_OK;
    SQ_TRY(kn_gemm(false, false, rows, n - end, block, -1.0f, dErr, block, dHinv + (size_t)col0 * n + end, n, 1.0f,
                   dW + end, n));
    return kn_cpu_gemm(false, false, rows, n - end, block, -1.0f, Err, block, Hinv + (size_t)col0 * n + end, n, 1.0f,
                       W + end, n);
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
        CALL(kn_gptq_block(dW, dcodes, dErr, dHinv, dscale, dzero, 1, dgroups, false, -1, rows, n, col0, block, bits,
                           false, NULL));
        CALL(kn_cpu_gptq_block(W, codes, Err, Hinv, scale, zero, 1, group_of_column, false, -1, rows, n, col0, block,
                               bits, false, NULL));
        CALL(lazy_update(dW, W, dErr, Err, dHinv, Hinv, rows, n, col0, block));
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
    block_fixture f;
    block_fixture_init(&f, geo, false);
    if (prune_group == 0)
        prune_group = f.ncols;
    CALL(kn_sparsegpt_block(f.dW, f.dcodes, f.dErr, f.dHinv, f.dscale, f.dzero, f.ldg, f.dgroups, true, f.group,
                            f.rows, f.n, f.col0, f.ncols, bits, sym, prune_group, prune_count));
    CALL(kn_cpu_sparsegpt_block(f.W, f.codes, f.Err, f.Hinv, f.scale, f.zero, f.ldg, f.group_of_column, true,
                                f.group, f.rows, f.n, f.col0, f.ncols, bits, sym, prune_group, prune_count));
    char how[128];
    snprintf(how, sizeof how, "%s, groups of %d, block [%d, %d), %d of every %d", bits == 0 ? "unquantized"
             : sym ? "4-bit sym" : "4-bit asym", f.group, f.col0, f.col0 + f.ncols, prune_count, prune_group);
    block_fixture_compare(&f, "kn_sparsegpt_block", how, bits > 0);
    block_fixture_free(&f);
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
        CALL(kn_sparsegpt_block(dW, NULL, dErr, dHinv, NULL, NULL, 1, NULL, false, -1, rows, n, col0, block, 0,
                                false, block, block / 2));
        CALL(kn_cpu_sparsegpt_block(W, NULL, Err, Hinv, NULL, NULL, 1, NULL, false, -1, rows, n, col0, block, 0,
                                    false, block, block / 2));
        CALL(lazy_update(dW, W, dErr, Err, dHinv, Hinv, rows, n, col0, block));
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

/* The Hessian's upper-triangle sums (quant/hessian.c): kn_hessian_upper's upper triangle against
 * the CPU's product (fp16 inputs), and, from the same products, kn_fixed_accumulate_upper's lanes
 * and kn_fixed_to_f32_symmetric's floats bit for bit those of the CPU backend. */
static void test_fixed_accumulate_upper(void)
{
    const int rows = 300, cols = 203, seqs = 3;
    const size_t n = (size_t)cols * cols, lanes = 3 * n * sizeof(int64_t);
    float *X = host_random((size_t)rows * cols, 1.0f), *H = malloc(n * 4);
    float *dX = dev_from(X, (size_t)rows * cols * 4), *dH = dev_poisoned(n * 4);
    CALL(kn_hessian_upper(dH, dX, rows, cols));
    CALL(kn_cpu_hessian_upper(H, X, rows, cols));
    float *gpu = downloaded(dH, n);
    double worst = 0, scale = 0;
    for (int r = 0; r < cols; r++)
        for (int c = r; c < cols; c++) {
            double d = fabs((double)gpu[(size_t)r * cols + c] - H[(size_t)r * cols + c]);
            worst = d > worst ? d : worst;
            scale = fabs(H[(size_t)r * cols + c]) > scale ? fabs(H[(size_t)r * cols + c]) : scale;
        }
    report(worst <= 1e-3 * scale, "kn_hessian_upper: upper triangle within 1e-3 of the CPU's (%.2e of the largest)",
           worst / scale);
    float *products = host_random(n * seqs, 3.0f);
    int64_t *acc = calloc(3 * n, sizeof *acc), *gpu_acc = malloc(lanes), *dacc = dev_poisoned(lanes);
    float *dproducts = dev_from(products, n * seqs * 4), *dsym = dev_poisoned(n * 4), *sym = malloc(n * 4);
    CALL(kn_zero(dacc, lanes));
    CALL(kn_fixed_accumulate_upper(dacc, dproducts, cols, seqs, n));
    CALL(kn_cpu_fixed_accumulate_upper(acc, products, cols, seqs, n));
    CALL(kn_download(gpu_acc, dacc, lanes));
    report(memcmp(gpu_acc, acc, lanes) == 0, "kn_fixed_accumulate_upper: the CPU's lanes, the lower ones left at 0");
    CALL(kn_fixed_to_f32_symmetric(dsym, dacc, 2.0 / seqs, cols));
    CALL(kn_cpu_fixed_to_f32_symmetric(sym, acc, 2.0 / seqs, cols));
    compare("kn_fixed_to_f32_symmetric", dsym, sym, n, 0.0);
    kn_free(dX), kn_free(dH), kn_free(dacc), kn_free(dproducts), kn_free(dsym);
    free(X), free(H), free(gpu), free(products), free(acc), free(gpu_acc), free(sym);
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

/* ---- training: backward passes, chunked loss, optimizer ------------------ */

static void test_rmsnorm_backward(void)
{
    const int rows = 300, dim = 512;
    size_t n = (size_t)rows * dim;
    float *x = host_random(n, 2.0f), *w = host_random(dim, 1.0f), *dy = host_random(n, 1.0f);
    float *dx = host_random(n, 1.0f); /* accumulated into: starts non-zero on both backends */
    float *d_x = dev_from(x, n * 4), *d_w = dev_from(w, dim * 4), *d_dy = dev_from(dy, n * 4);
    float *d_dx = dev_from(dx, n * 4);
    CALL(kn_rmsnorm_backward(d_dx, d_dy, d_x, d_w, rows, dim, 1e-5f));
    CALL(kn_cpu_rmsnorm_backward(dx, dy, x, w, rows, dim, 1e-5f));
    compare("kn_rmsnorm_backward 300x512, dx += (accumulating)", d_dx, dx, n, 1e-5);
    kn_free(d_x);
    kn_free(d_w);
    kn_free(d_dy);
    kn_free(d_dx);
    free(x);
    free(w);
    free(dy);
    free(dx);
}

/* Query (8 heads) and key (2 kv heads) gradients of a GQA layer; the backward undoes the forward. */
static void test_rope_backward(void)
{
    const int batch = 2, seq = 150, head_dim = 64, pos0 = 3;
    const int head_counts[2] = {8, 2};
    float inv_freq[32];
    for (int i = 0; i < head_dim / 2; i++)
        inv_freq[i] = (float)pow(500000.0, -2.0 * i / head_dim);
    float *dfreq = dev_from(inv_freq, sizeof inv_freq);
    for (int c = 0; c < 2; c++) {
        int heads = head_counts[c];
        size_t n = (size_t)batch * seq * heads * head_dim;
        float *d = host_random(n, 1.0f), *start = host_copy(d, n);
        float *dd = dev_from(d, n * 4);
        CALL(kn_rope_backward(dd, dfreq, batch, seq, heads, head_dim, pos0));
        CALL(kn_cpu_rope_backward(d, inv_freq, batch, seq, heads, head_dim, pos0));
        char what[128];
        snprintf(what, sizeof what, "kn_rope_backward batch=%d seq=%d heads=%d head_dim=%d", batch, seq, heads,
                 head_dim);
        compare(what, dd, d, n, 1e-6);
        CALL(kn_rope(dd, dfreq, batch, seq, heads, head_dim, pos0));
        snprintf(what, sizeof what, "kn_rope after kn_rope_backward gives the input back (heads=%d)", heads);
        compare(what, dd, start, n, 1e-6);
        kn_free(dd);
        free(d);
        free(start);
    }
    kn_free(dfreq);
}

static void test_swiglu_backward(void)
{
    const size_t n = 300 * 1376 + 5;
    float *g = host_random(n, 3.0f), *u = host_random(n, 1.0f), *dy = host_random(n, 1.0f);
    float *dg = malloc(n * 4), *du = malloc(n * 4);
    float *d_g = dev_from(g, n * 4), *d_u = dev_from(u, n * 4), *d_dy = dev_from(dy, n * 4);
    float *d_dg = dev_poisoned(n * 4), *d_du = dev_poisoned(n * 4);
    CALL(kn_swiglu_backward(d_dg, d_du, d_dy, d_g, d_u, n));
    CALL(kn_cpu_swiglu_backward(dg, du, dy, g, u, n));
    compare("kn_swiglu_backward dgate (written over poison)", d_dg, dg, n, 1e-5);
    compare("kn_swiglu_backward dup (written over poison)", d_du, du, n, 1e-5);
    kn_free(d_g);
    kn_free(d_u);
    kn_free(d_dy);
    kn_free(d_dg);
    kn_free(d_du);
    free(g);
    free(u);
    free(dy);
    free(dg);
    free(du);
}

/* One kn_linear_backward call on both backends. dx_start NULL: dx is not asked for;
 * dw_start NULL: no weight gradient. The gradients dy are of a loss's size (1e-8):
 * below fp16's smallest subnormal, so an fp16 copy would lose them. */
static void linear_backward_case(int rows, int in, int out, bool want_dx, bool accumulate_dx, bool want_dw)
{
    size_t nx = (size_t)rows * in, ny = (size_t)rows * out, nw = (size_t)out * in;
    float *x = host_random(nx, 1.0f), *w = host_random(nw, 0.05f), *dy = host_random(ny, 1e-8f);
    float *dx = host_random(nx, 1e-8f), *dw = host_random(nw, 1e-6f);
    float *d_x = dev_from(x, nx * 4), *d_w = dev_from(w, nw * 4), *d_dy = dev_from(dy, ny * 4);
    float *d_dx = dev_from(dx, nx * 4), *d_dw = dev_from(dw, nw * 4);
    if (want_dx && !accumulate_dx)
        poison(d_dx, nx * 4); /* written, so never read */
    CALL(kn_linear_backward(want_dx ? d_dx : NULL, want_dw ? d_dw : NULL, d_dy, d_x, d_w, rows, in, out,
                            accumulate_dx));
    CALL(kn_cpu_linear_backward(want_dx ? dx : NULL, want_dw ? dw : NULL, dy, x, w, rows, in, out, accumulate_dx));
    char what[160];
    snprintf(what, sizeof what, "kn_linear_backward %dx%d -> %d, dx %s (bf16 inputs)", rows, in, out,
             !want_dx ? "NULL: left alone" : accumulate_dx ? "+= dy W" : "= dy W over poison");
    compare(what, d_dx, dx, nx, want_dx ? 1e-2 : 0.0);
    snprintf(what, sizeof what, "kn_linear_backward %dx%d -> %d, dweight %s (fp32)", rows, in, out,
             want_dw ? "+= dyT x" : "NULL: left alone");
    compare(what, d_dw, dw, nw, want_dw ? 1e-5 : 0.0);
    kn_free(d_x);
    kn_free(d_w);
    kn_free(d_dy);
    kn_free(d_dx);
    kn_free(d_dw);
    free(x);
    free(w);
    free(dy);
    free(dx);
    free(dw);
}

static void test_linear_backward(void)
{
    linear_backward_case(300, 512, 384, true, true, true);
    linear_backward_case(300, 512, 384, true, false, true);
    linear_backward_case(300, 512, 384, false, false, true);
    linear_backward_case(300, 512, 384, true, true, false);
    linear_backward_case(300, 16, 1376, true, false, true); /* LoRA B: in = r */
    linear_backward_case(300, 512, 16, true, true, true);   /* LoRA A: out = r */
}

static void test_dropout(void)
{
    const size_t n = 300 * 512 + 7;
    const float p = 0.1f;
    const uint64_t seed = 0x9d2c5680a5a5f00dull;
    float *x = host_random(n, 1.0f), *y = malloc(n * 4);
    float *d_x = dev_from(x, n * 4), *d_y = dev_poisoned(n * 4);
    CALL(kn_dropout(d_y, d_x, n, p, seed));
    CALL(kn_cpu_dropout(y, x, n, p, seed));
    compare("kn_dropout p=0.1: the CPU's mask and values, exactly", d_y, y, n, 0.0);
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++)
        dropped += y[i] == 0.0f;
    report(fabs((double)dropped / n - p) < 0.01, "kn_dropout p=0.1 drops %zu of %zu entries (expected within 1%% of p)",
           dropped, n);
    CALL(kn_dropout(d_x, d_x, n, p, seed));
    compare("kn_dropout in place (out == x)", d_x, y, n, 0.0);
    CALL(kn_upload(d_x, x, n * 4));
    poison(d_y, n * 4);
    CALL(kn_dropout(d_y, d_x, n, 0.0f, seed));
    compare("kn_dropout p=0 copies", d_y, x, n, 0.0);
    report(kn_dropout(d_y, d_x, n, 1.0f, seed) == SQ_ERR_ARG, "kn_dropout rejects p=1: %s", sq_last_error());
    kn_free(d_x);
    kn_free(d_y);
    free(x);
    free(y);
}

/* The loss over vocabulary chunks of 1000 (the last one shorter), some rows without a target. */
static void test_ce_chunked(void)
{
    const int rows = 300, vocab = 2500, chunk = 1000;
    float *logits = host_random((size_t)rows * vocab, 3.0f), *weights = host_random(rows, 1.0f);
    int32_t *targets = malloc(rows * sizeof *targets);
    for (int r = 0; r < rows; r++) {
        targets[r] = r % 17 == 5 ? -1 : (int32_t)sq_rng_below(&rng, vocab);
        weights[r] = fabsf(weights[r]) / rows;
    }
    float *state = malloc(3 * rows * 4), *nll = malloc(rows * 4), *lse = malloc(rows * 4);
    float *dz = malloc((size_t)rows * chunk * 4);
    float *d_state = dev_poisoned(3 * rows * 4), *d_nll = dev_poisoned(rows * 4), *d_lse = dev_poisoned(rows * 4);
    float *d_weights = dev_from(weights, rows * 4), *d_chunk = dev_poisoned((size_t)rows * chunk * 4);
    int32_t *d_targets = dev_from(targets, rows * sizeof *targets);
    CALL(kn_ce_begin(d_state, rows));
    CALL(kn_cpu_ce_begin(state, rows));
    for (int v0 = 0; v0 < vocab; v0 += chunk) {
        int n = vocab - v0 < chunk ? vocab - v0 : chunk;
        for (int r = 0; r < rows; r++) /* the chunk's logits, [rows, n] */
            memcpy(dz + (size_t)r * n, logits + (size_t)r * vocab + v0, n * 4);
        CALL(kn_upload(d_chunk, dz, (size_t)rows * n * 4));
        CALL(kn_ce_chunk_forward(d_state, d_chunk, d_targets, rows, v0, n));
        CALL(kn_cpu_ce_chunk_forward(state, dz, targets, rows, v0, n));
    }
    compare("kn_ce_chunk_forward 300 rows, vocab 2500 in chunks of 1000: state [max | sum | target logit]", d_state,
            state, 3 * rows, 1e-5);
    CALL(kn_ce_finish(d_nll, d_lse, d_state, d_targets, rows));
    CALL(kn_cpu_ce_finish(nll, lse, state, targets, rows));
    compare("kn_ce_finish nll (0 where target < 0)", d_nll, nll, rows, 1e-5);
    compare("kn_ce_finish lse", d_lse, lse, rows, 1e-5);
    for (int v0 = 0; v0 < vocab; v0 += chunk) {
        int n = vocab - v0 < chunk ? vocab - v0 : chunk;
        for (int r = 0; r < rows; r++)
            memcpy(dz + (size_t)r * n, logits + (size_t)r * vocab + v0, n * 4);
        CALL(kn_upload(d_chunk, dz, (size_t)rows * n * 4));
        CALL(kn_ce_chunk_backward(d_chunk, d_lse, d_targets, d_weights, rows, v0, n));
        CALL(kn_cpu_ce_chunk_backward(dz, lse, targets, weights, rows, v0, n));
        char what[128];
        snprintf(what, sizeof what, "kn_ce_chunk_backward chunk [%d, %d): dz in place", v0, v0 + n);
        compare(what, d_chunk, dz, (size_t)rows * n, 1e-5);
    }
    kn_free(d_state);
    kn_free(d_nll);
    kn_free(d_lse);
    kn_free(d_weights);
    kn_free(d_chunk);
    kn_free(d_targets);
    free(logits);
    free(weights);
    free(targets);
    free(state);
    free(nll);
    free(lse);
    free(dz);
}

/* Added to a running sum, within 1e-9 of the CPU's index-order sum, and the same bits on a second run:
 * kn_sum_squares, or kn_sum_products of x with a second vector. */
static void test_fixed_order_sum(bool products)
{
    const size_t n = 3000017;
    const char *name = products ? "kn_sum_products" : "kn_sum_squares";
    float *x = host_random(n, 0.01f), *y = products ? host_random(n, 0.02f) : x;
    float *d_x = dev_from(x, n * 4), *d_y = products ? dev_from(y, n * 4) : d_x;
    const double start = 1.5;
    double cpu = start, gpu[2];
    CALL(products ? kn_cpu_sum_products(&cpu, x, y, n) : kn_cpu_sum_squares(&cpu, x, n));
    double *d_sum = dev_from(&start, sizeof start);
    for (int run = 0; run < 2; run++) {
        CALL(kn_upload(d_sum, &start, sizeof start));
        CALL(products ? kn_sum_products(d_sum, d_x, d_y, n) : kn_sum_squares(d_sum, d_x, n));
        CALL(kn_download(&gpu[run], d_sum, sizeof gpu[run]));
    }
    double err = fabs(gpu[0] - cpu) / fabs(cpu);
    report(err <= 1e-9, "%s of %zu values added to %.1f: %.17g vs CPU %.17g, relative error %.3g "
           "(tolerance 1e-9)", name, n, start, gpu[0], cpu, err);
    report(memcmp(&gpu[0], &gpu[1], sizeof gpu[0]) == 0, "%s: the same bits on a second run", name);
    kn_free(d_x);
    kn_free(d_sum);
    free(x);
    if (products) {
        kn_free(d_y);
        free(y);
    }
}

static void test_scale(void)
{
    const size_t n = 100003;
    float *x = host_random(n, 1.0f);
    float *d_x = dev_from(x, n * 4);
    CALL(kn_scale(d_x, 0.37f, n));
    CALL(kn_cpu_scale(x, 0.37f, n));
    compare("kn_scale", d_x, x, n, 0.0);
    kn_free(d_x);
    free(x);
}

/* Three steps (t = 1, 2, 3) with fresh gradients, weight decay on. */
static void test_adamw(void)
{
    const size_t n = 100003;
    float *param = host_random(n, 0.02f), *m = calloc(n, 4), *v = calloc(n, 4);
    float *d_param = dev_from(param, n * 4), *d_m = dev_from(m, n * 4), *d_v = dev_from(v, n * 4);
    float *d_grad = dev_poisoned(n * 4);
    for (int t = 1; t <= 3; t++) {
        float *grad = host_random(n, 1e-3f);
        CALL(kn_upload(d_grad, grad, n * 4));
        CALL(kn_adamw(d_param, d_grad, d_m, d_v, n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, t));
        CALL(kn_cpu_adamw(param, grad, m, v, n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, t));
        free(grad);
    }
    compare("kn_adamw 3 steps: param", d_param, param, n, 1e-6);
    compare("kn_adamw 3 steps: m", d_m, m, n, 1e-6);
    compare("kn_adamw 3 steps: v", d_v, v, n, 1e-6);
    report(kn_adamw(d_param, d_grad, d_m, d_v, n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 0) == SQ_ERR_ARG,
           "kn_adamw rejects step 0: %s", sq_last_error());
    kn_free(d_param);
    kn_free(d_m);
    kn_free(d_v);
    kn_free(d_grad);
    free(param);
    free(m);
    free(v);
}

/* Double quantization as a base weight uses it: the absmax from kn_dequantize_blockwise8,
 * then the weights from kn_dequantize_nf4 with that (device) absmax. */
static void test_dequantize_nf4(void)
{
    const size_t n = 512 * 384, blocks = n / 64;
    uint8_t *packed = malloc(n / 2), *q = malloc(blocks);
    for (size_t i = 0; i < n / 2; i++)
        packed[i] = (uint8_t)sq_rng_next(&rng);
    for (size_t i = 0; i < blocks; i++)
        q[i] = (uint8_t)sq_rng_next(&rng);
    float *code8 = host_random(256, 1.0f), *absmax2 = host_random((blocks + 255) / 256, 0.05f);
    const float offset = 0.0371f;
    float *absmax = malloc(blocks * 4), *W = malloc(n * 4);
    uint8_t *d_packed = dev_from(packed, n / 2), *d_q = dev_from(q, blocks);
    float *d_code8 = dev_from(code8, 256 * 4), *d_absmax2 = dev_from(absmax2, (blocks + 255) / 256 * 4);
    float *d_absmax = dev_poisoned(blocks * 4), *d_W = dev_poisoned(n * 4);
    CALL(kn_dequantize_blockwise8(d_absmax, d_q, d_code8, d_absmax2, offset, blocks));
    CALL(kn_cpu_dequantize_blockwise8(absmax, q, code8, absmax2, offset, blocks));
    compare("kn_dequantize_blockwise8 (double-quantized absmax)", d_absmax, absmax, blocks, 0.0);
    CALL(kn_dequantize_nf4(d_W, d_packed, d_absmax, n));
    CALL(kn_cpu_dequantize_nf4(W, packed, absmax, n));
    compare("kn_dequantize_nf4 512x384", d_W, W, n, 0.0);
    report(kn_dequantize_nf4(d_W, d_packed, d_absmax, 96) == SQ_ERR_ARG, "kn_dequantize_nf4 rejects 96 values: %s",
           sq_last_error());
    kn_free(d_packed);
    kn_free(d_q);
    kn_free(d_code8);
    kn_free(d_absmax2);
    kn_free(d_absmax);
    kn_free(d_W);
    free(packed);
    free(q);
    free(code8);
    free(absmax2);
    free(absmax);
    free(W);
}

/* AWQ's kernels: the same operations in the same order as the CPU, so the same bits
 * (the row dots are double sums in column order; 1e-12 relative allows a fused multiply-add). */
static void test_awq_kernels(void)
{
    const int rows = 37, cols = 100, group = 32, ngroups = (cols + group - 1) / group;
    float *X = host_random((size_t)rows * cols, 2.0f), *s = host_random(cols, 1.0f), *r = host_random(rows, 1.0f);
    float *B = host_random((size_t)rows * cols, 1.0f), *limit = host_random((size_t)rows * ngroups, 1.0f);
    float *sums = malloc(cols * 4);
    double *dots = malloc((size_t)rows * ngroups * sizeof *dots), *gpu_dots = malloc((size_t)rows * ngroups * 8);
    float *dX = dev_from(X, (size_t)rows * cols * 4), *ds = dev_from(s, cols * 4), *dr = dev_from(r, rows * 4);
    float *dB = dev_from(B, (size_t)rows * cols * 4), *dlimit = dev_from(limit, (size_t)rows * ngroups * 4);
    float *dsums = dev_poisoned(cols * 4);
    double *ddots = dev_poisoned((size_t)rows * ngroups * 8);
    CALL(kn_column_abs_sums(dsums, dX, rows, cols));
    CALL(kn_cpu_column_abs_sums(sums, X, rows, cols));
    compare("kn_column_abs_sums", dsums, sums, cols, 0.0);
    CALL(kn_group_row_dots(ddots, dX, dB, rows, cols, group));
    CALL(kn_cpu_group_row_dots(dots, X, B, rows, cols, group));
    CALL(kn_download(gpu_dots, ddots, (size_t)rows * ngroups * 8));
    double worst = 0.0;
    for (int k = 0; k < rows * ngroups; k++)
        worst = fmax(worst, fabs(gpu_dots[k] - dots[k]) / fmax(fabs(dots[k]), 1e-30));
    report(worst <= 1e-12, "kn_group_row_dots [%d, %d] in groups of %d (a short last one): relative error %.3g "
           "(tolerance 1e-12)", rows, cols, group, worst);
    CALL(kn_scale_rows_columns(dX, dr, ds, rows, cols));
    CALL(kn_cpu_scale_rows_columns(X, r, s, rows, cols));
    compare("kn_scale_rows_columns rows and columns", dX, X, (size_t)rows * cols, 0.0);
    CALL(kn_scale_rows_columns(dX, NULL, ds, rows, cols));
    CALL(kn_cpu_scale_rows_columns(X, NULL, s, rows, cols));
    compare("kn_scale_rows_columns columns only", dX, X, (size_t)rows * cols, 0.0);
    for (int k = 0; k < rows * ngroups; k++)
        limit[k] = fabsf(limit[k]);
    CALL(kn_upload(dlimit, limit, (size_t)rows * ngroups * 4));
    CALL(kn_clamp_groups(dX, dlimit, rows, cols, group));
    CALL(kn_cpu_clamp_groups(X, limit, rows, cols, group));
    compare("kn_clamp_groups", dX, X, (size_t)rows * cols, 0.0);
    kn_free(dX), kn_free(ds), kn_free(dr), kn_free(dB), kn_free(dlimit), kn_free(dsums), kn_free(ddots);
    free(X), free(s), free(r), free(B), free(limit), free(sums), free(dots), free(gpu_dots);
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
    test_large_transfers();
    test_gemm();
    test_linear();
    test_linear_per_block();
    test_linear_lora();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_attention_backward();
    test_elementwise();
    test_cross_entropy();
    test_fake_quantize();
    test_smoothing_kernels();
    test_kv_cache_kernels();
    test_hessian();
    test_fixed_accumulate();
    test_fixed_accumulate_upper();
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
    test_rmsnorm_backward();
    test_rope_backward();
    test_swiglu_backward();
    test_linear_backward();
    test_dropout();
    test_ce_chunked();
    test_fixed_order_sum(false);
    test_fixed_order_sum(true);
    test_scale();
    test_adamw();
    test_dequantize_nf4();
    test_awq_kernels();
    printf("1..%d\n", test_number);
    kn_shutdown();
    return failures ? 1 : 0;
}
