/* attention.cu (CUDA backend): kn_attention, and its cuBLAS path. Head dims
 * 64 and 128 go to the flash kernels (flash_forward.cu); the others run here,
 * as two batched tensor-core GEMMs around a fused causal softmax — the whole
 * score matrix of a chunk of heads is materialised.
 *
 * For one sequence and one query head h (key/value head kv = h / group):
 *   S = scale · Q_h K_kvᵀ          [seq, seq]   (cuBLAS, TF32, fp32 accumulation)
 *   P = causal_softmax(S)          row t keeps keys 0..t, the rest become 0
 *   O_h = P V_kv                   [seq, head_dim]
 * Heads of one sequence that share an offset g inside their group are a
 * strided batch (query head kv·group + g reads key/value head kv), so each
 * GEMM is one strided-batched cuBLAS call per (sequence, g, chunk of heads).
 *
 * Layout, in cuBLAS's column-major terms: Q, K, V, O rows are tokens with
 * leading dimension n_heads·head_dim (Q, O) or n_kv_heads·head_dim (K, V), so
 * each head is a column-major [head_dim, seq] matrix. S is kept as its
 * column-major transpose [seq_keys, seq_queries]: a query's scores are
 * contiguous, which is what the softmax kernel walks.
 *
 * Precision: TF32 inputs with fp32 accumulation, as kn_linear (DESIGN allows
 * reduced-precision products with fp32 accumulation in the forward pass). */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/flash_attention.h"
#include "kernels/cuda/reduce.cuh"

#define SOFTMAX_THREADS 256
/* Score buffer cap: heads are processed in chunks whose scores fit in this. */
#define SCORE_BYTES_MAX ((size_t)512 << 20)

/* One block per query row of S (column-major [seq, rows]): softmax over keys
 * 0..t where t = row % seq is the query position; later keys are set to 0. */
__global__ void causal_softmax_rows(float *S, int seq)
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

/* The heads kv0 .. kv0+count-1 (key/value heads) at offset g in their group, of one sequence. */
static sq_status attention_heads(float *out, const float *q, const float *k, const float *v, float *scores, int seq,
                                 int n_heads, int n_kv_heads, int head_dim, int g, int kv0, int count)
{
    const int group = n_heads / n_kv_heads;
    const int q_width = n_heads * head_dim, kv_width = n_kv_heads * head_dim;
    const float *q_head = q + (size_t)(kv0 * group + g) * head_dim;
    const float *k_head = k + (size_t)kv0 * head_dim;
    const float *v_head = v + (size_t)kv0 * head_dim;
    float *o_head = out + (size_t)(kv0 * group + g) * head_dim;
    const long long q_stride = (long long)group * head_dim, kv_stride = head_dim, s_stride = (long long)seq * seq;
    const float scale = (float)(1.0 / sqrt((double)head_dim)), one = 1.0f, zero = 0.0f;

    /* Sᵀ[keys, queries] = K_kvᵀ-as-[seq, head_dim] · Q_h-as-[head_dim, seq], scaled. */
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(kn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, seq, seq, head_dim, &scale,
                                            k_head, CUDA_R_32F, kv_width, kv_stride, q_head, CUDA_R_32F, q_width,
                                            q_stride, &zero, scores, CUDA_R_32F, seq, s_stride, count,
                                            CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    causal_softmax_rows<<<(unsigned)count * seq, SOFTMAX_THREADS>>>(scores, seq);
    CUDA_CHECK_LAUNCH();
    /* O_hᵀ[head_dim, queries] = V_kvᵀ[head_dim, keys] · Pᵀ[keys, queries]. */
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(kn_cuda_blas(), CUBLAS_OP_N, CUBLAS_OP_N, head_dim, seq, seq, &one,
                                            v_head, CUDA_R_32F, kv_width, kv_stride, scores, CUDA_R_32F, seq,
                                            s_stride, &zero, o_head, CUDA_R_32F, q_width, q_stride, count,
                                            CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
    return SQ_OK;
}

extern "C" sq_status kn_cuda_attention_shape(const char *who, int batch, int seq, int n_heads, int n_kv_heads,
                                             int head_dim)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", who, batch, seq,
                       n_heads, n_kv_heads, head_dim);
    return SQ_OK;
}

extern "C" sq_status kn_attention(float *out, const float *q, const float *k, const float *v, int batch, int seq,
                                  int n_heads, int n_kv_heads, int head_dim)
{
    if (kn_cuda_flash_supported(head_dim))
        return kn_cuda_flash_attention(out, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim);
    return kn_cuda_attention_cublas(out, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim);
}

extern "C" sq_status kn_cuda_attention_cublas(float *out, const float *q, const float *k, const float *v, int batch,
                                              int seq, int n_heads, int n_kv_heads, int head_dim)
{
    SQ_TRY(kn_cuda_attention_shape("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim));
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const size_t head_scores = (size_t)seq * seq * sizeof(float);
    if (head_scores > SCORE_BYTES_MAX)
        return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention: seq %d needs %zu MiB of scores per head (limit %zu MiB)",
                       seq, head_scores >> 20, SCORE_BYTES_MAX >> 20);
    int chunk = (int)(SCORE_BYTES_MAX / head_scores);
    if (chunk > n_kv_heads)
        chunk = n_kv_heads;
    float *scores = NULL;
    CUDA_CHECK(cudaMallocAsync((void **)&scores, (size_t)chunk * head_scores, 0));
    const int group = n_heads / n_kv_heads;
    const size_t q_seq = (size_t)seq * n_heads * head_dim, kv_seq = (size_t)seq * n_kv_heads * head_dim;
    sq_status st = SQ_OK;
    for (int b = 0; b < batch && st == SQ_OK; b++)
        for (int g = 0; g < group && st == SQ_OK; g++)
            for (int kv0 = 0; kv0 < n_kv_heads && st == SQ_OK; kv0 += chunk) {
                int count = n_kv_heads - kv0 < chunk ? n_kv_heads - kv0 : chunk;
                st = attention_heads(out + b * q_seq, q + b * q_seq, k + b * kv_seq, v + b * kv_seq, scores, seq,
                                     n_heads, n_kv_heads, head_dim, g, kv0, count);
            }
    sq_status freed = CUDA_STATUS(cudaFreeAsync(scores, 0));
    return st != SQ_OK ? st : freed;
}
