/* attention_backward.c (CPU backend): the backward of causal grouped-query
 * attention (kn_attention). Each query row's softmax is recomputed here, as
 * flash-attention backward passes do; the forward's out and lse2, when given,
 * are not needed (the reference keeps one way).
 *
 *   q [batch*seq, n_heads*head_dim], k, v [batch*seq, n_kv_heads*head_dim]
 *   dout, dq like q; dk, dv like k.
 *
 * One OpenMP task per (sequence, kv head): it owns that kv head's dk/dv rows
 * and the dq rows of the heads of its group, so no two threads write the same
 * float and the sums run in a fixed order (heads of the group in order, query
 * rows in order) whatever the thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* dq, dk, dv of one query head h over one sequence; dk/dv accumulate. p and dp hold seq floats. */
static void head_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                          const float *v, int seq, int h, int kv, int head_dim, size_t q_width, size_t kv_width,
                          float scale, float *p, float *dp)
{
    for (int t = 0; t < seq; t++) {
        const float *qt = q + (size_t)t * q_width + (size_t)h * head_dim;
        const float *dot_ = dout + (size_t)t * q_width + (size_t)h * head_dim;
        /* forward: z_s = scale q_t·k_s, p = softmax over s ≤ t */
        float max_z = -INFINITY;
        for (int s = 0; s <= t; s++) {
            const float *ks = k + (size_t)s * kv_width + (size_t)kv * head_dim;
            float z = 0.0f;
            for (int d = 0; d < head_dim; d++)
                z += qt[d] * ks[d];
            p[s] = z * scale;
            if (p[s] > max_z)
                max_z = p[s];
        }
        float sum = 0.0f;
        for (int s = 0; s <= t; s++) {
            p[s] = expf(p[s] - max_z);
            sum += p[s];
        }
        /* forward: o_t = Σ_s p_s v_s, so dp_s = do_t·v_s and dv_s += p_s do_t */
        float p_dot_dp = 0.0f; /* Σ_s p_s dp_s = do_t·o_t */
        for (int s = 0; s <= t; s++) {
            p[s] /= sum;
            const float *vs = v + (size_t)s * kv_width + (size_t)kv * head_dim;
            float *dvs = dv + (size_t)s * kv_width + (size_t)kv * head_dim;
            float acc = 0.0f;
            for (int d = 0; d < head_dim; d++) {
                acc += dot_[d] * vs[d];
                dvs[d] += p[s] * dot_[d];
            }
            dp[s] = acc;
            p_dot_dp += p[s] * acc;
        }
        /* softmax: dz_s = p_s (dp_s - Σ p dp); z_s = scale q_t·k_s gives dq_t and dk_s */
        float *dqt = dq + (size_t)t * q_width + (size_t)h * head_dim;
        memset(dqt, 0, sizeof(float) * head_dim);
        for (int s = 0; s <= t; s++) {
            float dz = p[s] * (dp[s] - p_dot_dp) * scale;
            const float *ks = k + (size_t)s * kv_width + (size_t)kv * head_dim;
            float *dks = dk + (size_t)s * kv_width + (size_t)kv * head_dim;
            for (int d = 0; d < head_dim; d++) {
                dqt[d] += dz * ks[d];
                dks[d] += dz * qt[d];
            }
        }
    }
}

sq_status kn_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                                const float *lse2, const float *q, const float *k, const float *v, int batch, int seq,
                                int n_heads, int n_kv_heads, int head_dim)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "kn_attention_backward: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d",
                       batch, seq, n_heads, n_kv_heads, head_dim);
    if (!out != !lse2)
        return sq_fail(SQ_ERR_ARG, "kn_attention_backward: the forward's out and lse2 go together (one is NULL)");
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const int group = n_heads / n_kv_heads;
    const size_t q_width = (size_t)n_heads * head_dim, kv_width = (size_t)n_kv_heads * head_dim;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    memset(dk, 0, sizeof(float) * (size_t)batch * seq * kv_width);
    memset(dv, 0, sizeof(float) * (size_t)batch * seq * kv_width);
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *p = malloc(sizeof(float) * 2 * (size_t)seq);
        if (!p)
            failed = 1;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < batch; b++) {
            for (int kv = 0; kv < n_kv_heads; kv++) {
                if (!p)
                    continue;
                size_t q0 = (size_t)b * seq * q_width, kv0 = (size_t)b * seq * kv_width;
                for (int h = kv * group; h < (kv + 1) * group; h++)
                    head_backward(dq + q0, dk + kv0, dv + kv0, dout + q0, q + q0, k + kv0, v + kv0, seq, h, kv,
                                  head_dim, q_width, kv_width, scale, p, p + seq);
            }
        }
        free(p);
    }
    if (failed)
        return sq_fail(SQ_ERR_NOMEM, "kn_attention_backward: cannot allocate scores for seq=%d", seq);
    return SQ_OK;
}
