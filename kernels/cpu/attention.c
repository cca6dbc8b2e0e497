/* attention.c (CPU backend): causal scaled dot-product attention with
 * grouped-query heads. One OpenMP task per (sequence, head); each query row
 * forms its scores against keys 0..t, subtracts their maximum before
 * exponentiating (stable softmax) and mixes the values; where asked, it keeps
 * the row's log-sum-exp in base 2, max·log2(e) + log2(Σ exp(score − max)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

sq_status kn_attention(float *out, float *lse2, const float *q, const float *k, const float *v, int batch, int seq,
                       int n_heads, int n_kv_heads, int head_dim)
{
    if (batch < 0 || seq < 0 || n_heads <= 0 || n_kv_heads <= 0 || head_dim <= 0 || n_heads % n_kv_heads)
        return sq_fail(SQ_ERR_ARG, "kn_attention: bad shape batch=%d seq=%d heads=%d kv_heads=%d head_dim=%d", batch,
                       seq, n_heads, n_kv_heads, head_dim);
    if (batch == 0 || seq == 0)
        return SQ_OK;
    const int group = n_heads / n_kv_heads;
    const size_t q_width = (size_t)n_heads * head_dim;
    const size_t kv_width = (size_t)n_kv_heads * head_dim;
    const float scale = (float)(1.0 / sqrt((double)head_dim));
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    {
        float *scores = malloc(sizeof(float) * (size_t)seq);
        if (!scores)
            failed = 1;
#pragma omp for schedule(dynamic, 1) collapse(2)
        for (int b = 0; b < batch; b++) {
            for (int h = 0; h < n_heads; h++) {
                if (!scores)
                    continue;
                const int kv = h / group;
                for (int t = 0; t < seq; t++) {
                    const float *qt = q + ((size_t)b * seq + t) * q_width + (size_t)h * head_dim;
                    float max_score = -INFINITY;
                    for (int s = 0; s <= t; s++) {
                        const float *ks = k + ((size_t)b * seq + s) * kv_width + (size_t)kv * head_dim;
                        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                        for (int d = 0; d < head_dim; d++)
                            dot += qt[d] * ks[d];
                        scores[s] = dot * scale;
                        if (scores[s] > max_score)
                            max_score = scores[s];
                    }
                    float sum = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        scores[s] = expf(scores[s] - max_score);
                        sum += scores[s];
                    }
                    if (lse2)
                        lse2[((size_t)b * n_heads + h) * seq + t] = max_score * (float)M_LOG2E + log2f(sum);
                    float inv_sum = 1.0f / sum;
                    float *ot = out + ((size_t)b * seq + t) * q_width + (size_t)h * head_dim;
                    memset(ot, 0, sizeof(float) * head_dim);
                    for (int s = 0; s <= t; s++) {
                        const float *vs = v + ((size_t)b * seq + s) * kv_width + (size_t)kv * head_dim;
                        float p = scores[s] * inv_sum;
                        for (int d = 0; d < head_dim; d++)
                            ot[d] += p * vs[d];
                    }
                }
            }
        }
        free(scores);
    }
    if (failed)
        return sq_fail(SQ_ERR_NOMEM, "kn_attention: cannot allocate scores for seq=%d", seq);
    return SQ_OK;
}
