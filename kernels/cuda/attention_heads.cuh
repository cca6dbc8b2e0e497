/* attention_heads.cuh (CUDA backend): what the attention forward
 * (attention.cu) and backward (attention_backward.cu) share — the walk over
 * chunks of heads sized by the score cap (kn_cuda_attention_score_cap), the
 * three strided-batched GEMM shapes between head matrices and [seq, seq] score
 * matrices, and the causal softmax. One place, so forward and backward cannot
 * disagree on layout or on the order heads are visited.
 *
 * Heads of one sequence that share an offset g inside their group are a
 * strided batch (query head kv·group + g reads key/value head kv), so each
 * GEMM is one strided-batched cuBLAS call per (sequence, g, chunk of heads).
 *
 * Layout, in cuBLAS's column-major terms: Q, K, V, O (and their gradients)
 * rows are tokens with leading dimension n_heads·head_dim (query side) or
 * n_kv_heads·head_dim (key/value side), so each head is a column-major
 * [head_dim, seq] matrix. A score matrix S (or P, dP, dS) is kept as its
 * column-major transpose [seq_keys, seq_queries]: scores[t·seq + s] = S_ts,
 * a query's scores are contiguous, which is what the row kernels walk.
 *
 * Precision: TF32 inputs with fp32 accumulation, as kn_linear (DESIGN allows
 * reduced-precision products with fp32 accumulation). */
#ifndef SQ_KERNELS_CUDA_ATTENTION_HEADS_CUH
#define SQ_KERNELS_CUDA_ATTENTION_HEADS_CUH

#include <math.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

/* Threads of the kernels that give one block to each query row of a score matrix. */
#define ATTENTION_ROW_THREADS 256

/* Score matrices a chunk may hold per head: P and dP in the backward, S in the forward. */
#define ATTENTION_MAX_MATRICES 2

/* The query heads kv0·group + g, (kv0+1)·group + g, ... (count of them) of sequence b,
 * with their key/value heads kv0 .. kv0+count-1, and the score buffers they may use. */
struct head_chunk {
    int seq, head_dim, count, g;
    int q_width, kv_width; /* floats per token row, query side and key/value side */
    long long q_stride;    /* floats between consecutive query heads of the chunk: group·head_dim */
    size_t q_at, kv_at;    /* offset of the chunk's first query head and first key/value head */
    float scale;           /* 1/sqrt(head_dim) */
    float *scores[ATTENTION_MAX_MATRICES]; /* each room for count [seq, seq] matrices, seq² apart */
};

/* Runs body(const head_chunk &) over the whole batch with `matrices_per_head` score buffers
 * per head, for kernel `who`: checks the shape (SQ_ERR_ARG), allocates the buffers on the
 * default stream (cudaMallocAsync) for as many key/value heads as fit under
 * kn_cuda_attention_score_cap() (SQ_ERR_UNSUPPORTED when one head does not), frees them.
 * Order: every sequence b, then every group offset g = 0 .. group-1, then every chunk of
 * key/value heads. g runs outside the chunks, so each key/value head meets the query heads
 * of its group in head order (h = kv·group + g): the order the CPU backend sums dk, dv in. */
template <typename Body>
static sq_status attention_in_chunks(const char *who, int batch, int seq, int n_heads, int n_kv_heads, int head_dim,
                                     int matrices_per_head, Body body)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", who, batch, seq,
                       n_heads, n_kv_heads, head_dim);
    if (matrices_per_head < 1 || matrices_per_head > ATTENTION_MAX_MATRICES)
        return sq_fail(SQ_ERR_ARG, "%s: %d score matrices per head (at most %d)", who, matrices_per_head,
                       ATTENTION_MAX_MATRICES);
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const size_t matrix = (size_t)seq * seq, head_bytes = matrices_per_head * matrix * sizeof(float);
    const size_t cap = kn_cuda_attention_score_cap();
    if (head_bytes > cap)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: seq %d needs %.1f MiB of score buffers per head (limit %.1f MiB)", who,
                       seq, head_bytes / 1048576.0, cap / 1048576.0);
    const int chunk = cap / head_bytes < (size_t)n_kv_heads ? (int)(cap / head_bytes) : n_kv_heads;
    const int group = n_heads / n_kv_heads;
    head_chunk c;
    c.seq = seq;
    c.head_dim = head_dim;
    c.q_width = n_heads * head_dim;
    c.kv_width = n_kv_heads * head_dim;
    c.q_stride = (long long)group * head_dim;
    c.scale = (float)(1.0 / sqrt((double)head_dim));
    CUDA_CHECK(cudaMallocAsync((void **)&c.scores[0], (size_t)chunk * head_bytes, 0));
    for (int i = 1; i < matrices_per_head; i++)
        c.scores[i] = c.scores[0] + (size_t)i * chunk * matrix;
    sq_status st = SQ_OK;
    for (int b = 0; b < batch && st == SQ_OK; b++)
        for (c.g = 0; c.g < group && st == SQ_OK; c.g++)
            for (int kv0 = 0; kv0 < n_kv_heads && st == SQ_OK; kv0 += chunk) {
                c.count = n_kv_heads - kv0 < chunk ? n_kv_heads - kv0 : chunk;
                c.q_at = (size_t)b * seq * c.q_width + (size_t)(kv0 * group + c.g) * head_dim;
                c.kv_at = (size_t)b * seq * c.kv_width + (size_t)kv0 * head_dim;
                st = body(c);
            }
    sq_status freed = CUDA_STATUS(cudaFreeAsync(c.scores[0], 0));
    return st != SQ_OK ? st : freed;
}

/* What a GEMM operand of a chunk is; it sets the leading dimension and the batch stride. */
enum operand_kind { QUERY_HEAD, KV_HEAD, SCORES };

static inline int operand_ld(const head_chunk &c, operand_kind kind)
{
    return kind == QUERY_HEAD ? c.q_width : kind == KV_HEAD ? c.kv_width : c.seq;
}

static inline long long operand_stride(const head_chunk &c, operand_kind kind)
{
    return kind == QUERY_HEAD ? c.q_stride : kind == KV_HEAD ? c.head_dim : (long long)c.seq * c.seq;
}

/* One TF32 strided-batched GEMM over the chunk's heads, in cuBLAS's column-major terms:
 * C_i = alpha · op(A_i) op(B_i) + beta · C_i (beta 0 writes C without reading it). */
static inline sq_status chunk_gemm(const head_chunk &c, cublasOperation_t op_a, cublasOperation_t op_b, int m, int n,
                                   int k, float alpha, const float *A, operand_kind a, const float *B, operand_kind b,
                                   float beta, float *C, operand_kind kind_c)
{
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(kn_cuda_blas(), op_a, op_b, m, n, k, &alpha, A, CUDA_R_32F,
                                            operand_ld(c, a), operand_stride(c, a), B, CUDA_R_32F, operand_ld(c, b),
                                            operand_stride(c, b), &beta, C, CUDA_R_32F, operand_ld(c, kind_c),
                                            operand_stride(c, kind_c), c.count, CUBLAS_COMPUTE_32F_FAST_TF32,
                                            CUBLAS_GEMM_DEFAULT));
    return SQ_OK;
}

/* scores_h[keys, queries] = alpha · KVᵀ Q_h per head: S from K and Q, dP from V and dO. */
static inline sq_status scores_from_heads(float *scores, const float *kv_side, const float *q_side, float alpha,
                                          const head_chunk &c)
{
    return chunk_gemm(c, CUBLAS_OP_T, CUBLAS_OP_N, c.seq, c.seq, c.head_dim, alpha, kv_side + c.kv_at, KV_HEAD,
                      q_side + c.q_at, QUERY_HEAD, 0.0f, scores, SCORES);
}

/* Query head h, row t: out_t = alpha · Σ_s S_ts kv_s (written): O from P and V, dQ from dS and K. */
static inline sq_status query_heads_from_scores(float *q_out, const float *kv_side, const float *scores, float alpha,
                                                const head_chunk &c)
{
    return chunk_gemm(c, CUBLAS_OP_N, CUBLAS_OP_N, c.head_dim, c.seq, c.seq, alpha, kv_side + c.kv_at, KV_HEAD, scores,
                      SCORES, 0.0f, q_out + c.q_at, QUERY_HEAD);
}

/* Key/value head, row s: out_s = alpha · Σ_t S_ts q_t + beta · out_s: dV from P and dO, dK
 * from dS and Q. */
static inline sq_status kv_heads_from_scores(float *kv_out, const float *q_side, const float *scores, float alpha,
                                             float beta, const head_chunk &c)
{
    return chunk_gemm(c, CUBLAS_OP_N, CUBLAS_OP_T, c.head_dim, c.seq, c.seq, alpha, q_side + c.q_at, QUERY_HEAD,
                      scores, SCORES, beta, kv_out + c.kv_at, KV_HEAD);
}

/* One block per query row of S ([seq, rows] as above): softmax over keys 0..t where
 * t = row % seq is the query position; later keys are set to 0. */
static __global__ void causal_softmax_rows(float *S, int seq)
{
    float *row = S + (size_t)blockIdx.x * seq;
    const int t = blockIdx.x % seq;
    float local_max = -INFINITY;
    for (int s = threadIdx.x; s <= t; s += blockDim.x)
        local_max = fmaxf(local_max, row[s]);
    const float row_max = block_reduce(local_max, reduce_max());
    float local_sum = 0.0f;
    for (int s = threadIdx.x; s <= t; s += blockDim.x) {
        float p = expf(row[s] - row_max);
        row[s] = p;
        local_sum += p;
    }
    const float inv_sum = 1.0f / block_reduce(local_sum, reduce_sum());
    for (int s = threadIdx.x; s < seq; s += blockDim.x)
        row[s] = s <= t ? row[s] * inv_sum : 0.0f;
}

/* The chunk's scores become their causal softmax P, in place. */
static inline sq_status causal_softmax(float *scores, const head_chunk &c)
{
    causal_softmax_rows<<<(unsigned)c.count * c.seq, ATTENTION_ROW_THREADS>>>(scores, c.seq);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

#endif
