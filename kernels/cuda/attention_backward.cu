/* attention_backward.cu (CUDA backend): the backward of causal grouped-query
 * attention (kn_attention). The probabilities are recomputed with the
 * forward's own GEMM and softmax (the forward's out and lse2 are not read here), a
 * chunk of heads at a time, then five batched TF32 GEMMs and one row kernel
 * give the gradients. For one sequence, query head h and its kv head:
 *   S = scale · Q_h K_kvᵀ,  P = causal_softmax(S)            (as the forward)
 *   dV_kv (+)= Pᵀ dO_h                                      [keys, head_dim]
 *   dP = dO_h V_kvᵀ                                          [queries, keys]
 *   D_t = Σ_s P_ts dP_ts,  dS_ts = P_ts (dP_ts − D_t)        (row kernel; 0 for s > t)
 *   dQ_h = scale · dS K_kv                                   (written)
 *   dK_kv (+)= scale · dSᵀ Q_h
 * The first head of each group (g = 0) writes dk and dv (beta 0: their old
 * contents are never read), the others add to them in head order — the order
 * of the CPU backend. Each head needs two [seq, seq] buffers, P and dP (dS
 * overwrites dP), so a chunk holds half the heads the forward's would.
 * Layout and chunking: attention_heads.cuh. Head dims 64 and 128 go to the
 * flash backward instead (flash_backward.cu: no seq×seq buffers, about as fast
 * at the 7B shape; bench/RESULTS.md). */
#include "kernels/cuda/attention_heads.cuh"
#include "kernels/cuda/flash_attention.h"

/* One block per query row t (rows laid out as in attention_heads.cuh):
 * D_t = Σ_{s≤t} P_ts dP_ts, then dP_ts becomes dS_ts = P_ts (dP_ts − D_t) for s ≤ t, 0 beyond. */
static __global__ void softmax_backward_rows(float *dP, const float *P, int seq)
{
    const size_t row0 = (size_t)blockIdx.x * seq;
    const int t = blockIdx.x % seq;
    float local = 0.0f;
    for (int s = threadIdx.x; s <= t; s += blockDim.x)
        local += P[row0 + s] * dP[row0 + s];
    const float D = block_reduce(local, reduce_sum());
    for (int s = threadIdx.x; s < seq; s += blockDim.x)
        dP[row0 + s] = s <= t ? P[row0 + s] * (dP[row0 + s] - D) : 0.0f;
}

/* The gradients of one chunk of heads, through its buffers P (scores[0]) and dP / dS (scores[1]). */
static sq_status backward_heads(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, const head_chunk &c)
{
    float *P = c.scores[0], *dS = c.scores[1];
    const float beta = c.g == 0 ? 0.0f : 1.0f;
    SQ_TRY(scores_from_heads(P, k, q, c.scale, c));
    SQ_TRY(causal_softmax(P, c));
    SQ_TRY(kv_heads_from_scores(dv, dout, P, 1.0f, beta, c));
    SQ_TRY(scores_from_heads(dS, v, dout, 1.0f, c));
    softmax_backward_rows<<<(unsigned)c.count * c.seq, ATTENTION_ROW_THREADS>>>(dS, P, c.seq);
    CUDA_CHECK_LAUNCH();
    SQ_TRY(query_heads_from_scores(dq, k, dS, c.scale, c));
    return kv_heads_from_scores(dk, q, dS, c.scale, beta, c);
}

extern "C" sq_status kn_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                           const float *lse2, const float *q, const float *k, const float *v,
                                           int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    if (!out != !lse2)
        return sq_fail(SQ_ERR_ARG, "kn_attention_backward: the forward's out and lse2 go together (one is NULL)");
    if (kn_cuda_flash_supported(head_dim))
        return kn_cuda_flash_attention_backward(dq, dk, dv, dout, out, lse2, q, k, v, batch, seq, n_heads, n_kv_heads,
                                                head_dim);
    return kn_cuda_attention_backward_cublas(dq, dk, dv, dout, q, k, v, batch, seq, n_heads, n_kv_heads, head_dim);
}

extern "C" sq_status kn_cuda_attention_backward_cublas(float *dq, float *dk, float *dv, const float *dout,
                                                       const float *q, const float *k, const float *v, int batch,
                                                       int seq, int n_heads, int n_kv_heads, int head_dim)
{
    return attention_in_chunks("kn_attention_backward", batch, seq, n_heads, n_kv_heads, head_dim, 2,
                               [&](const head_chunk &c) { return backward_heads(dq, dk, dv, dout, q, k, v, c); });
}
