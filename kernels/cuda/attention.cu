/* attention.cu (CUDA backend): kn_attention, and its cuBLAS path. Head dims
 * 64 and 128 go to the flash kernels (flash_forward.cu); the others run here,
 * as two batched tensor-core GEMMs around a fused causal softmax — the whole
 * score matrix of a chunk of heads is materialised.
 *
 * For one sequence and one query head h (key/value head kv = h / group):
 *   S = scale · Q_h K_kvᵀ          [seq, seq]   (cuBLAS, TF32, fp32 accumulation)
 *   P = causal_softmax(S)          row t keeps keys 0..t, the rest become 0
 *   O_h = P V_kv                   [seq, head_dim]
 * Layout, batching of heads and chunking: attention_heads.cuh, shared with
 * the backward (attention_backward.cu). Where kn_attention is asked for each
 * row's log-sum-exp, this path forms it apart, by direct sums (lse2_rows). This
 * file also holds the score cap. */
#include "kernels/cuda/attention_heads.cuh"
#include "kernels/cuda/flash_attention.h"

#define SCORE_BYTES_DEFAULT ((size_t)512 << 20)

static size_t score_bytes_max = SCORE_BYTES_DEFAULT;

extern "C" void kn_cuda_set_attention_score_cap(size_t bytes)
{
    score_bytes_max = bytes ? bytes : SCORE_BYTES_DEFAULT;
}

extern "C" size_t kn_cuda_attention_score_cap(void) { return score_bytes_max; }

/* O for one chunk of heads, through its score buffer. */
static sq_status attention_heads(float *out, const float *q, const float *k, const float *v, const head_chunk &c)
{
    SQ_TRY(scores_from_heads(c.scores[0], k, q, c.scale, c));
    SQ_TRY(causal_softmax(c.scores[0], c));
    return query_heads_from_scores(out, v, c.scores[0], 1.0f, c);
}

extern "C" sq_status kn_cuda_attention_shape(const char *who, int batch, int seq, int n_heads, int n_kv_heads,
                                             int head_dim)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "%s: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", who, batch, seq,
                       n_heads, n_kv_heads, head_dim);
    return SQ_OK;
}

extern "C" sq_status kn_attention(float *out, float *lse2, const float *q, const float *k, const float *v, int batch,
                                  int seq, int n_heads, int n_kv_heads, int head_dim)
{
    if (kn_cuda_flash_supported(head_dim))
        return kn_cuda_flash_attention(out, lse2, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim);
    SQ_TRY(kn_cuda_attention_cublas(out, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim));
    return lse2 ? kn_cuda_attention_lse2(lse2, q, k, batch, seq, n_heads, n_kv_heads, head_dim) : SQ_OK;
}

/* One block per query row (b, h, t) of lse2 [batch][n_heads][seq]: log2 Σ_s≤t exp2(x_s), x_s the
 * score scale·q_t·k_s in base 2, with the row's maximum taken out first. */
static __global__ void lse2_rows(float *lse2, const float *q, const float *k, int seq, int n_heads, int group,
                                 int head_dim, float scale_log2)
{
    const int t = blockIdx.x % seq, h = blockIdx.x / seq % n_heads, b = blockIdx.x / seq / n_heads;
    const size_t q_width = (size_t)n_heads * head_dim, kv_width = (size_t)(n_heads / group) * head_dim;
    const float *qt = q + ((size_t)b * seq + t) * q_width + (size_t)h * head_dim;
    const float *k0 = k + (size_t)b * seq * kv_width + (size_t)(h / group) * head_dim;
    auto score = [&](int s) {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += qt[d] * k0[(size_t)s * kv_width + d];
        return dot * scale_log2;
    };
    float local_max = -INFINITY;
    for (int s = threadIdx.x; s <= t; s += blockDim.x)
        local_max = fmaxf(local_max, score(s));
    const float row_max = block_reduce(local_max, reduce_max());
    float local_sum = 0.0f;
    for (int s = threadIdx.x; s <= t; s += blockDim.x)
        local_sum += exp2f(score(s) - row_max);
    const float sum = block_reduce(local_sum, reduce_sum());
    if (threadIdx.x == 0)
        lse2[blockIdx.x] = row_max + log2f(sum);
}

extern "C" sq_status kn_cuda_attention_lse2(float *lse2, const float *q, const float *k, int batch, int seq,
                                            int n_heads, int n_kv_heads, int head_dim)
{
    SQ_TRY(kn_cuda_attention_shape("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim));
    const size_t rows = (size_t)batch * n_heads * seq;
    if (rows == 0)
        return SQ_OK;
    if (rows > INT32_MAX)
        return sq_fail(SQ_ERR_ARG, "kn_attention: %zu query rows is too many for the log-sum-exp kernel", rows);
    const float scale_log2 = (float)(M_LOG2E / sqrt((double)head_dim));
    lse2_rows<<<(unsigned)rows, ATTENTION_ROW_THREADS>>>(lse2, q, k, seq, n_heads, n_heads / n_kv_heads, head_dim,
                                                        scale_log2);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_cuda_attention_cublas(float *out, const float *q, const float *k, const float *v, int batch,
                                              int seq, int n_heads, int n_kv_heads, int head_dim)
{
    return attention_in_chunks("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim, 1,
                               [&](const head_chunk &c) { return attention_heads(out, q, k, v, c); });
}
