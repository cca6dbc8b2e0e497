/* bench_kernels_cuda.c: times the CUDA backend's main kernels on fixed
 * workloads and prints achieved TFLOP/s (a benchmark, not a test: it asserts
 * nothing). Each figure is the median of REPEATS runs after WARMUP runs, timed
 * with CUDA events around the call only; inputs are random (never zeros), and
 * inputs a kernel overwrites are restored outside the timed region.
 *
 * FLOP counts: GEMM 2mnk; Hessian (syrk) rows·cols·(cols+1); SPD inverse n³
 * (the textbook potrf n³/3 + potri 2n³/3, whatever the method); Cholesky n³/3; GPTQ pass: in-block updates rows·Σ ncols²
 * plus lazy updates 2·rows·block·Σ(n - block end); causal attention: the causal half, forward
 * 2·2·b·h·s²·d/2 (QKᵀ and PV), backward 2.5× that (QKᵀ, dO Vᵀ, dV, dK, dQ), whatever a kernel
 * executes (the cuBLAS path computes the masked half too, the flash backward recomputes);
 * kn_linear_backward's dx 2·rows·in·out (its time includes the bf16 copies of dy and W).
 *
 * Usage: bench_kernels_cuda [attention | qlora]   (the attention rows alone, or the kernels of one
 * QLoRA training layer at the 7B shape; no argument: everything but the latter) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "core/rng.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/flash_attention.h"
#include "quant/gptq.h"

#define WARMUP 2
#define MAX_REPEATS 20

static sq_rng rng;

static void die(const char *what)
{
    printf("Bail out! %s: %s\n", what, sq_last_error());
    exit(1);
}

#define CHECK(expr)            \
    do {                       \
        if ((expr) != SQ_OK)   \
            die(#expr);        \
    } while (0)

#define CUDA(expr)                                                               \
    do {                                                                         \
        cudaError_t e_ = (expr);                                                 \
        if (e_ != cudaSuccess) {                                                 \
            printf("Bail out! %s: %s\n", #expr, cudaGetErrorString(e_));         \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

static float *dev_random(size_t n, float scale)
{
    float *host = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        host[i] = scale * ((float)(sq_rng_next(&rng) >> 40) / 16777216.0f - 0.5f);
    float *dev = NULL;
    CHECK(kn_alloc((void **)&dev, n * sizeof(float)));
    CHECK(kn_upload(dev, host, n * sizeof(float)));
    free(host);
    return dev;
}

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

typedef void (*prepare_fn)(void *ctx);
typedef void (*run_fn)(void *ctx);

/* Median milliseconds of `run`, each repeat preceded by `prepare` (untimed). */
static float time_ms(run_fn run, prepare_fn prepare, void *ctx, int repeats)
{
    cudaEvent_t start, stop;
    CUDA(cudaEventCreate(&start));
    CUDA(cudaEventCreate(&stop));
    float times[MAX_REPEATS];
    for (int i = 0; i < WARMUP + repeats; i++) {
        if (prepare)
            prepare(ctx);
        CUDA(cudaEventRecord(start, 0));
        run(ctx);
        CUDA(cudaEventRecord(stop, 0));
        CUDA(cudaEventSynchronize(stop));
        CUDA(cudaGetLastError());
        if (i >= WARMUP)
            CUDA(cudaEventElapsedTime(&times[i - WARMUP], start, stop));
    }
    CUDA(cudaEventDestroy(start));
    CUDA(cudaEventDestroy(stop));
    qsort(times, repeats, sizeof(float), compare_floats);
    return times[repeats / 2];
}

static void row(const char *what, float ms, double flops)
{
    printf("| %-46s | %10.3f | %8.1f |\n", what, ms, flops / (ms * 1e-3) / 1e12);
    fflush(stdout);
}

/* ---- workloads ----------------------------------------------------------- */

typedef struct {
    int n;
    float *A, *B, *C;
} gemm_ctx;

static void run_sgemm(void *p)
{
    gemm_ctx *g = p;
    CHECK(kn_gemm(false, false, g->n, g->n, g->n, 1.0f, g->A, g->n, g->B, g->n, 0.0f, g->C, g->n));
}

static void run_linear(void *p)
{
    gemm_ctx *g = p;
    CHECK(kn_linear(g->C, g->A, g->B, NULL, g->n, g->n, g->n));
}

/* Llama-2-7B attention at seq 2048: q/out/dout/dq [batch·seq, heads·head_dim], k, v, dk, dv alike (no GQA). */
typedef struct {
    int batch, seq, heads, head_dim;
    float *q, *k, *v, *out, *dout, *dq, *dk, *dv;
    float *lse2; /* [batch][heads][seq], kept by the forward for the backward */
} attention_ctx;

static void run_attention(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_attention(a->out, NULL, a->q, a->k, a->v, a->batch, a->seq, a->heads, a->heads, a->head_dim));
}

static void run_attention_flash(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_flash_attention(a->out, NULL, a->q, a->k, a->v, a->batch, a->seq, a->heads, a->heads,
                                  a->head_dim));
}

static void run_attention_flash_keeping_lse2(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_flash_attention(a->out, a->lse2, a->q, a->k, a->v, a->batch, a->seq, a->heads, a->heads,
                                  a->head_dim));
}

static void run_attention_cublas(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_attention_cublas(a->out, a->q, a->k, a->v, a->batch, a->seq, a->heads, a->heads, a->head_dim));
}

static void run_attention_backward(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_attention_backward(a->dq, a->dk, a->dv, a->dout, NULL, NULL, a->q, a->k, a->v, a->batch, a->seq,
                                a->heads, a->heads, a->head_dim));
}

static void run_attention_backward_flash(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_flash_attention_backward(a->dq, a->dk, a->dv, a->dout, NULL, NULL, a->q, a->k, a->v, a->batch,
                                           a->seq, a->heads, a->heads, a->head_dim));
}

static void run_attention_backward_flash_given_lse2(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_flash_attention_backward(a->dq, a->dk, a->dv, a->dout, a->out, a->lse2, a->q, a->k, a->v, a->batch,
                                           a->seq, a->heads, a->heads, a->head_dim));
}

static void run_attention_backward_cublas(void *p)
{
    attention_ctx *a = p;
    CHECK(kn_cuda_attention_backward_cublas(a->dq, a->dk, a->dv, a->dout, a->q, a->k, a->v, a->batch, a->seq,
                                            a->heads, a->heads, a->head_dim));
}

static void attention_rows(void)
{
    attention_ctx a = {4, 2048, 32, 128, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    const size_t n = (size_t)a.batch * a.seq * a.heads * a.head_dim;
    float **buffers[] = {&a.q, &a.k, &a.v, &a.out, &a.dout, &a.dq, &a.dk, &a.dv, &a.lse2};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        *buffers[i] = dev_random(n, 2.0f);
    run_attention_flash_keeping_lse2(&a); /* out and lse2 of these q, k, v for the backward given them */
    const double forward = 2.0 * a.batch * a.heads * (double)a.seq * a.seq * a.head_dim;
    row("kn_attention b4 s2048 32x128 (7B)", time_ms(run_attention, NULL, &a, 10), forward);
    row("  flash forward (bf16)", time_ms(run_attention_flash, NULL, &a, 10), forward);
    row("  cuBLAS forward (TF32)", time_ms(run_attention_cublas, NULL, &a, 10), forward);
    row("kn_attention_backward b4 s2048 32x128 (7B)", time_ms(run_attention_backward, NULL, &a, 10), 2.5 * forward);
    row("  flash forward keeping lse2 (bf16)", time_ms(run_attention_flash_keeping_lse2, NULL, &a, 10), forward);
    row("  flash backward (bf16)", time_ms(run_attention_backward_flash, NULL, &a, 10), 2.5 * forward);
    row("  flash backward given out, lse2 (bf16)", time_ms(run_attention_backward_flash_given_lse2, NULL, &a, 10),
        2.5 * forward);
    row("  cuBLAS backward (TF32)", time_ms(run_attention_backward_cublas, NULL, &a, 10), 2.5 * forward);
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        kn_free(*buffers[i]);
}

/* ---- one QLoRA training layer's kernels at the 7B shape (batch 4 x 2048 rows, r = 16) ----
 * Each call lora/train_layer.c makes for a layer, on buffers of its shapes: the per-layer
 * budget of bench/RESULTS.md's QLoRA section is these rows times their counts per step. */
typedef struct {
    int rows, in, out, r;
    float *x, *W, *A, *B, *y, *u, *dy, *dx, *dA, *dB, *du;
} lora_ctx;

static void run_lora_forward(void *p)
{
    lora_ctx *c = p;
    CHECK(kn_linear_lora(c->y, c->u, c->x, c->W, NULL, c->A, c->B, 2.0f, c->rows, c->in, c->out, c->r));
}

static void run_lora_dx(void *p) /* dx = dy W, the frozen base's input gradient */
{
    lora_ctx *c = p;
    CHECK(kn_linear_backward(c->dx, NULL, c->dy, c->x, c->W, c->rows, c->in, c->out, false));
}

static void run_lora_adapter_grads(void *p) /* dB, du, dA and dx += du A, as lora_linear_backward does */
{
    lora_ctx *c = p;
    CHECK(kn_gemm(true, false, c->out, c->r, c->rows, 2.0f, c->dy, c->out, c->u, c->r, 1.0f, c->dB, c->r));
    CHECK(kn_gemm(false, false, c->rows, c->r, c->out, 2.0f, c->dy, c->out, c->B, c->r, 0.0f, c->du, c->r));
    CHECK(kn_linear_backward(NULL, c->dA, c->du, c->x, c->A, c->rows, c->in, c->r, false));
    CHECK(kn_linear_backward(c->dx, NULL, c->du, c->x, c->A, c->rows, c->in, c->r, true));
}

typedef struct {
    int rows, dim;
    float *x, *y, *z, *w, *dx;
} pointwise_ctx;

static void run_rmsnorm(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_rmsnorm(c->y, c->x, c->w, c->rows, c->dim, 1e-5f));
}

static void run_rmsnorm_backward(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_rmsnorm_backward(c->dx, c->y, c->x, c->w, c->rows, c->dim, 1e-5f));
}

static void run_swiglu(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_swiglu(c->y, c->x, c->z, (size_t)c->rows * c->dim));
}

static void run_swiglu_backward(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_swiglu_backward(c->dx, c->w, c->y, c->x, c->z, (size_t)c->rows * c->dim));
}

static void run_add(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_add_inplace(c->y, c->x, (size_t)c->rows * c->dim));
}

static void run_rope(void *p)
{
    pointwise_ctx *c = p;
    CHECK(kn_rope(c->y, c->w, c->rows / 2048, 2048, c->dim / 128, 128, 0));
}

typedef struct {
    size_t n;
    float *W, *absmax;
    uint8_t *packed;
} dequantize_ctx;

static void run_dequantize_nf4(void *p)
{
    dequantize_ctx *c = p;
    CHECK(kn_dequantize_nf4(c->W, c->packed, c->absmax, c->n));
}

static void qlora_layer_rows(void)
{
    const int rows = 8192, r = 16, shapes[3][2] = {{4096, 4096}, {4096, 11008}, {11008, 4096}};
    const char *names[3] = {"q/k/v/o 4096->4096", "gate/up 4096->11008", "down 11008->4096"};
    for (int i = 0; i < 3; i++) {
        const int in = shapes[i][0], out = shapes[i][1];
        lora_ctx c = {rows, in, out, r, dev_random((size_t)rows * in, 2.0f), dev_random((size_t)out * in, 0.1f),
                      dev_random((size_t)r * in, 0.1f), dev_random((size_t)out * r, 0.1f),
                      dev_random((size_t)rows * out, 1.0f), dev_random((size_t)rows * r, 1.0f),
                      dev_random((size_t)rows * out, 1.0f), dev_random((size_t)rows * in, 1.0f),
                      dev_random((size_t)r * in, 1.0f), dev_random((size_t)out * r, 1.0f),
                      dev_random((size_t)rows * r, 1.0f)};
        const double product = 2.0 * rows * in * out;
        char what[96];
        snprintf(what, sizeof what, "lora forward %s", names[i]);
        row(what, time_ms(run_lora_forward, NULL, &c, 10), product);
        snprintf(what, sizeof what, "  base dx = dy W %s", names[i]);
        row(what, time_ms(run_lora_dx, NULL, &c, 10), product);
        snprintf(what, sizeof what, "  adapter grads (fp32) %s", names[i]);
        row(what, time_ms(run_lora_adapter_grads, NULL, &c, 10), 2.0 * rows * r * (2.0 * out + 2.0 * in));
        float *bufs[] = {c.x, c.W, c.A, c.B, c.y, c.u, c.dy, c.dx, c.dA, c.dB, c.du};
        for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
            kn_free(bufs[b]);
    }
    const int dims[2] = {4096, 11008};
    for (int i = 0; i < 2; i++) {
        const int dim = dims[i];
        const size_t n = (size_t)rows * dim;
        pointwise_ctx c = {rows, dim, dev_random(n, 2.0f), dev_random(n, 2.0f), dev_random(n, 2.0f),
                           dev_random(n, 1.0f), dev_random(n, 1.0f)};
        if (dim == 4096) {
            row("rmsnorm 8192 x 4096", time_ms(run_rmsnorm, NULL, &c, 10), 0);
            row("rmsnorm backward 8192 x 4096", time_ms(run_rmsnorm_backward, NULL, &c, 10), 0);
            row("add in place 8192 x 4096", time_ms(run_add, NULL, &c, 10), 0);
            row("rope 8192 x 32 x 128", time_ms(run_rope, NULL, &c, 10), 0);
            dequantize_ctx d = {(size_t)4096 * 11008, NULL, dev_random((size_t)4096 * 11008 / 64, 1.0f), NULL};
            CHECK(kn_alloc((void **)&d.W, d.n * sizeof(float)));
            CHECK(kn_alloc((void **)&d.packed, d.n / 2));
            CHECK(kn_zero(d.packed, d.n / 2));
            row("dequantize nf4 4096 x 11008 (to fp32)", time_ms(run_dequantize_nf4, NULL, &d, 10), 0);
            kn_free(d.W), kn_free(d.absmax), kn_free(d.packed);
        } else {
            row("swiglu 8192 x 11008", time_ms(run_swiglu, NULL, &c, 10), 0);
            row("swiglu backward 8192 x 11008", time_ms(run_swiglu_backward, NULL, &c, 10), 0);
        }
        float *bufs[] = {c.x, c.y, c.z, c.w, c.dx};
        for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
            kn_free(bufs[b]);
    }
}

typedef struct {
    int rows, cols;
    float *X, *H;
} hessian_ctx;

static void run_hessian(void *p)
{
    hessian_ctx *h = p;
    CHECK(kn_hessian_accumulate(h->H, h->X, h->rows, h->cols, 1.0f, 1.0f));
}

typedef struct {
    int n;
    float *pristine, *A;
} solve_ctx;

static void restore_matrix(void *p)
{
    solve_ctx *s = p;
    CHECK(kn_copy(s->A, s->pristine, (size_t)s->n * s->n * sizeof(float)));
}

static void run_inverse(void *p)
{
    solve_ctx *s = p;
    CHECK(kn_spd_inverse(s->A, s->n));
}

static void run_inverse_cholesky(void *p)
{
    solve_ctx *s = p;
    CHECK(kn_inverse_cholesky_upper(s->A, s->n));
}

static void run_cholesky(void *p)
{
    solve_ctx *s = p;
    CHECK(kn_cholesky_upper(s->A, s->n));
}

/* An SPD matrix with condition number ~1e2: XᵀX/rows + I (the damping step adds I). */
static float *dev_spd(int n)
{
    float *X = dev_random((size_t)n * n, 2.0f), *H = NULL;
    CHECK(kn_alloc((void **)&H, (size_t)n * n * sizeof(float)));
    CHECK(kn_hessian_accumulate(H, X, n, n, 1.0f / n, 0.0f));
    CHECK(kn_hessian_prepare(H, NULL, 0, n, 1.0f));
    kn_free(X);
    return H;
}

/* ---- the SPD inverse, step by step --------------------------------------
 * The library calls one method; these rows time each candidate step on its
 * own (column-major lower factor L, as kn_spd_inverse uses), to choose. */
typedef struct {
    int n;
    float *pristine, *A, *M, *work;
    int work_len, *info;
    void *trtri_work, *trtri_host;
    size_t trtri_bytes, trtri_host_bytes;
} steps_ctx;

static void cusolver_ok(cusolverStatus_t st, const char *what)
{
    if (st != CUSOLVER_STATUS_SUCCESS) {
        printf("Bail out! %s: cusolver status %d\n", what, (int)st);
        exit(1);
    }
}

static void cublas_ok(cublasStatus_t st, const char *what)
{
    if (st != CUBLAS_STATUS_SUCCESS) {
        printf("Bail out! %s: %s\n", what, cublasGetStatusString(st));
        exit(1);
    }
}

static void step_restore(void *p)
{
    steps_ctx *c = p;
    CHECK(kn_copy(c->A, c->pristine, (size_t)c->n * c->n * sizeof(float)));
}

static void step_potrf(void *p)
{
    steps_ctx *c = p;
    cusolver_ok(cusolverDnSpotrf(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, c->n, c->A, c->n, c->work, c->work_len,
                                 c->info), "potrf");
}

static void step_restore_factored(void *p)
{
    step_restore(p);
    step_potrf(p);
}

static void step_potri(void *p)
{
    steps_ctx *c = p;
    cusolver_ok(cusolverDnSpotri(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, c->n, c->A, c->n, c->work, c->work_len,
                                 c->info), "potri");
}

static void step_trtri(void *p)
{
    steps_ctx *c = p;
    cusolver_ok(cusolverDnXtrtri(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, c->n, CUDA_R_32F, c->A,
                                 c->n, c->trtri_work, c->trtri_bytes, c->trtri_host, c->trtri_host_bytes, c->info),
                "trtri");
}

/* M := I, for the triangular solve L M = I. */
static void step_restore_factored_identity(void *p)
{
    steps_ctx *c = p;
    step_restore_factored(p);
    CHECK(kn_fill(c->M, 0.0f, (size_t)c->n * c->n));
    CHECK(kn_hessian_prepare(c->M, NULL, 0, c->n, 0.0f)); /* zero diagonal := 1 */
}

static void step_trsm(void *p)
{
    steps_ctx *c = p;
    const float one = 1.0f;
    cublas_ok(cublasStrsm(kn_cuda_blas(), CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, CUBLAS_DIAG_NON_UNIT,
                          c->n, c->n, &one, c->A, c->n, c->M, c->n), "trsm");
}

static void step_syrk(void *p)
{
    steps_ctx *c = p;
    const float one = 1.0f, zero = 0.0f;
    cublas_ok(cublasSsyrk(kn_cuda_blas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_T, c->n, c->n, &one, c->A, c->n, &zero,
                          c->M, c->n), "syrk");
}

static void step_malloc(void *p)
{
    steps_ctx *c = p;
    float *scratch = NULL;
    CUDA(cudaMalloc((void **)&scratch, (size_t)c->n * c->n * sizeof(float)));
    CUDA(cudaFree(scratch));
}

static void inverse_steps(int n)
{
    steps_ctx c = {n, dev_spd(n), NULL, NULL, NULL, 0, NULL, NULL, NULL, 0, 0};
    size_t bytes = (size_t)n * n * sizeof(float);
    CHECK(kn_alloc((void **)&c.A, bytes));
    CHECK(kn_alloc((void **)&c.M, bytes));
    CHECK(kn_alloc((void **)&c.info, sizeof(int)));
    int potrf_len = 0, potri_len = 0;
    cusolver_ok(cusolverDnSpotrf_bufferSize(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, n, c.A, n, &potrf_len), "size");
    cusolver_ok(cusolverDnSpotri_bufferSize(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, n, c.A, n, &potri_len), "size");
    c.work_len = potrf_len > potri_len ? potrf_len : potri_len;
    CHECK(kn_alloc((void **)&c.work, (size_t)c.work_len * sizeof(float) + 4));
    cusolver_ok(cusolverDnXtrtri_bufferSize(kn_cuda_solver(), CUBLAS_FILL_MODE_LOWER, CUBLAS_DIAG_NON_UNIT, n,
                                            CUDA_R_32F, c.A, n, &c.trtri_bytes, &c.trtri_host_bytes), "size");
    CHECK(kn_alloc(&c.trtri_work, c.trtri_bytes + 4));
    c.trtri_host = malloc(c.trtri_host_bytes + 4);
    double n3 = (double)n * n * n;
    char what[64];
    snprintf(what, sizeof what, "  step potrf n=%d", n);
    row(what, time_ms(step_potrf, step_restore, &c, 5), n3 / 3);
    snprintf(what, sizeof what, "  step potri n=%d", n);
    row(what, time_ms(step_potri, step_restore_factored, &c, 5), 2 * n3 / 3);
    snprintf(what, sizeof what, "  step trtri n=%d", n);
    row(what, time_ms(step_trtri, step_restore_factored, &c, 5), n3 / 3);
    snprintf(what, sizeof what, "  step trsm L M = I n=%d", n);
    row(what, time_ms(step_trsm, step_restore_factored_identity, &c, 5), n3);
    snprintf(what, sizeof what, "  step syrk M^T M n=%d", n);
    row(what, time_ms(step_syrk, NULL, &c, 5), n3);
    snprintf(what, sizeof what, "  step cudaMalloc+cudaFree n^2 floats n=%d", n);
    row(what, time_ms(step_malloc, NULL, &c, 5), 0.0);
    kn_free(c.pristine);
    kn_free(c.A);
    kn_free(c.M);
    kn_free(c.info);
    kn_free(c.work);
    kn_free(c.trtri_work);
    free(c.trtri_host);
}

typedef struct {
    int rows, n, block, bits, lazy;
    float *W0, *W, *Hinv, *Err, *scale, *zero;
    uint8_t *codes;
    int32_t *groups;
} gptq_ctx;

static void restore_weight(void *p)
{
    gptq_ctx *g = p;
    CHECK(kn_copy(g->W, g->W0, (size_t)g->rows * g->n * sizeof(float)));
}

static void run_gptq(void *p)
{
    gptq_ctx *g = p;
    for (int col0 = 0; col0 < g->n; col0 += g->block) {
        int end = col0 + g->block;
        CHECK(kn_gptq_block(g->W, g->codes, g->Err, g->Hinv, g->scale, g->zero, g->n / 128, g->groups, true, 128,
                            g->rows, g->n, col0, g->block, g->bits, false, NULL));
        if (g->lazy && end < g->n)
            CHECK(kn_gemm(false, false, g->rows, g->n - end, g->block, -1.0f, g->Err, g->block,
                          g->Hinv + (size_t)col0 * g->n + end, g->n, 1.0f, g->W + end, g->n));
    }
}

/* ---- one 7B layer's GPTQ solves, as the job runs them ---------------------
 * The four solves of a true-sequential layer (q,k,v stacked | o | gate,up stacked
 * | down: sq_gptq_solve_stacked on device copies of W and H, which it consumes,
 * results downloaded to the host): the calibration's solve phase per layer on
 * one rank, less the install of the results into the layer's weights. */
typedef struct {
    int cols, nparts, part_rows[3];
    float *W0, *H0, *W, *H;
} solve_group;

typedef struct {
    solve_group group[4];
    sq_quant_options opt;
} layer_solve_ctx;

static void restore_layer(void *p)
{
    layer_solve_ctx *c = p;
    for (int g = 0; g < 4; g++) {
        solve_group *s = &c->group[g];
        size_t rows = 0;
        for (int i = 0; i < s->nparts; i++)
            rows += (size_t)s->part_rows[i];
        CHECK(kn_copy(s->W, s->W0, rows * s->cols * sizeof(float)));
        CHECK(kn_copy(s->H, s->H0, (size_t)s->cols * s->cols * sizeof(float)));
    }
}

static void run_layer_solve(void *p)
{
    layer_solve_ctx *c = p;
    for (int g = 0; g < 4; g++) {
        solve_group *s = &c->group[g];
        sq_quant_result parts[3];
        CHECK(sq_gptq_solve_stacked(s->W, s->H, s->cols, &c->opt, s->nparts, s->part_rows, parts));
        for (int i = 0; i < s->nparts; i++)
            sq_quant_result_free(&parts[i]);
    }
}

static void layer_solve_rows(void)
{
    const int hidden = 4096, inter = 11008;
    layer_solve_ctx c = {.opt = {.bits = 4, .group_size = 128, .sym = true, .damp_percent = 0.01,
                                 .block_size = 128, .true_sequential = true}};
    const solve_group shapes[4] = {{.cols = hidden, .nparts = 3, .part_rows = {hidden, hidden, hidden}},
                                   {.cols = hidden, .nparts = 1, .part_rows = {hidden}},
                                   {.cols = hidden, .nparts = 2, .part_rows = {inter, inter}},
                                   {.cols = inter, .nparts = 1, .part_rows = {hidden}}};
    for (int g = 0; g < 4; g++) {
        solve_group *s = &c.group[g];
        *s = shapes[g];
        size_t rows = 0;
        for (int i = 0; i < s->nparts; i++)
            rows += (size_t)s->part_rows[i];
        s->W0 = dev_random(rows * s->cols, 0.2f);
        s->H0 = dev_spd(s->cols);
        CHECK(kn_alloc((void **)&s->W, rows * s->cols * sizeof(float)));
        CHECK(kn_alloc((void **)&s->H, (size_t)s->cols * s->cols * sizeof(float)));
    }
    row("GPTQ solves of a 7B layer (4 stacked, g128)", time_ms(run_layer_solve, restore_layer, &c, 3), 0.0);
    for (int g = 0; g < 4; g++) {
        solve_group *s = &c.group[g];
        kn_free(s->W0), kn_free(s->H0), kn_free(s->W), kn_free(s->H);
    }
}

int main(int argc, char **argv)
{
    const bool attention_only = argc > 1 && strcmp(argv[1], "attention") == 0;
    const bool qlora_only = argc > 1 && strcmp(argv[1], "qlora") == 0;
    if (argc > 2 || (argc == 2 && !attention_only && !qlora_only)) {
        fprintf(stderr, "usage: %s [attention | qlora]\n", argv[0]);
        return 2;
    }
    sq_rng_seed(&rng, 1234);
    CHECK(kn_init(0));
    printf("# device: %s\n", kn_device_description());
    printf("| %-46s | %10s | %8s |\n|%s|%s|%s|\n", "workload", "median ms", "TFLOP/s",
           "------------------------------------------------", "------------", "----------");

    gemm_ctx g = {4096, dev_random(4096u * 4096, 2.0f), dev_random(4096u * 4096, 2.0f), dev_random(4096u * 4096, 2.0f)};
    double gemm_flops = 2.0 * 4096.0 * 4096.0 * 4096.0;
    if (attention_only || qlora_only) {
        if (attention_only)
            attention_rows();
        else
            qlora_layer_rows();
        kn_free(g.A);
        kn_free(g.B);
        kn_free(g.C);
        kn_shutdown();
        return 0;
    }
    row("kn_gemm 4096x4096x4096 (SGEMM, fp32)", time_ms(run_sgemm, NULL, &g, 10), gemm_flops);
    row("kn_linear 4096x4096x4096 (TF32 tensor cores)", time_ms(run_linear, NULL, &g, 10), gemm_flops);
    kn_free(g.A);
    kn_free(g.B);
    kn_free(g.C);

    attention_rows();

    hessian_ctx h = {2048, 4096, dev_random(2048u * 4096, 2.0f), dev_random(4096u * 4096, 1.0f)};
    row("kn_hessian_accumulate 2048 rows x 4096 cols", time_ms(run_hessian, NULL, &h, 10),
        2048.0 * 4096.0 * 4097.0);
    kn_free(h.X);
    kn_free(h.H);

    int sizes[2] = {4096, 11008};
    for (int i = 0; i < 2; i++) {
        int n = sizes[i];
        solve_ctx s = {n, dev_spd(n), NULL};
        CHECK(kn_alloc((void **)&s.A, (size_t)n * n * sizeof(float)));
        char what[64];
        snprintf(what, sizeof what, "kn_spd_inverse n=%d", n);
        row(what, time_ms(run_inverse, restore_matrix, &s, i == 0 ? 10 : 5), (double)n * n * n);
        snprintf(what, sizeof what, "kn_cholesky_upper n=%d (potrf)", n);
        row(what, time_ms(run_cholesky, restore_matrix, &s, i == 0 ? 10 : 5), (double)n * n * n / 3.0);
        snprintf(what, sizeof what, "kn_inverse_cholesky_upper n=%d (potrf + inverse)", n);
        row(what, time_ms(run_inverse_cholesky, restore_matrix, &s, i == 0 ? 10 : 5), (double)n * n * n * 2.0 / 3.0);
        kn_free(s.pristine);
        kn_free(s.A);
        inverse_steps(n);
    }

    gptq_ctx q = {4096, 4096, 128, 4, 1, dev_random(4096u * 4096, 0.2f), NULL, dev_spd(4096), NULL, NULL, NULL, NULL,
                  NULL};
    CHECK(kn_spd_inverse(q.Hinv, q.n));
    CHECK(kn_cholesky_upper(q.Hinv, q.n));
    CHECK(kn_alloc((void **)&q.W, (size_t)q.rows * q.n * sizeof(float)));
    CHECK(kn_alloc((void **)&q.Err, (size_t)q.rows * q.block * sizeof(float)));
    CHECK(kn_alloc((void **)&q.scale, (size_t)q.rows * (q.n / 128) * sizeof(float)));
    CHECK(kn_alloc((void **)&q.zero, (size_t)q.rows * (q.n / 128) * sizeof(float)));
    CHECK(kn_alloc((void **)&q.codes, (size_t)q.rows * q.n));
    CHECK(kn_alloc((void **)&q.groups, (size_t)q.n * sizeof(int32_t)));
    int32_t *groups = malloc((size_t)q.n * sizeof(int32_t));
    for (int c = 0; c < q.n; c++)
        groups[c] = c / 128;
    CHECK(kn_upload(q.groups, groups, (size_t)q.n * sizeof(int32_t)));
    free(groups);
    double in_block = 0.0, lazy = 0.0;
    for (int col0 = 0; col0 < q.n; col0 += q.block) {
        in_block += (double)q.rows * q.block * q.block;
        lazy += 2.0 * q.rows * q.block * (q.n - col0 - q.block);
    }
    row("GPTQ pass 4096x4096, block 128, group 128", time_ms(run_gptq, restore_weight, &q, 5), in_block + lazy);
    q.lazy = 0;
    row("  of which kn_gptq_block alone (32 launches)", time_ms(run_gptq, restore_weight, &q, 5), in_block);
    layer_solve_rows();
    qlora_layer_rows();
    printf("# %s\n", "done");
    kn_shutdown();
    return 0;
}
