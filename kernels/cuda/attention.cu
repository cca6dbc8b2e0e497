/* attention.cu (CUDA backend): causal scaled dot-product attention with
 * grouped-query heads, as two batched tensor-core GEMMs around a fused causal
 * softmax — the whole score matrix of a chunk of heads is materialised, which
 * at calibration lengths (seq ≤ a few thousand) is cheap next to the GEMMs.
 *
 * For one sequence and one query head h (key/value head kv = h / group):
 *   S = scale · Q_h K_kvᵀ          [seq, seq]   (cuBLAS, TF32, fp32 accumulation)
 *   P = causal_softmax(S)          row t keeps keys 0..t, the rest become 0
 *   O_h = P V_kv                   [seq, head_dim]
 * Layout, batching of heads and chunking: attention_heads.cuh, shared with
 * the backward (attention_backward.cu). This file also holds the score cap. */
#include "kernels/cuda/attention_heads.cuh"

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

extern "C" sq_status kn_attention(float *out, const float *q, const float *k, const float *v, int batch, int seq,
                                  int n_heads, int n_kv_heads, int head_dim)
{
    return attention_in_chunks("kn_attention", batch, seq, n_heads, n_kv_heads, head_dim, 1,
                               [&](const head_chunk &c) { return attention_heads(out, q, k, v, c); });
}
