/* loss_chunked.c (CPU backend): cross-entropy over chunks of the vocabulary
 * (kernels.h), so the LM head never materialises [rows, vocab] logits: the
 * forward keeps an online logsumexp per row (running max and running sum of
 * exponentials), the backward turns one recomputed chunk of logits into its
 * gradient in place. State layout: [max | sum | target logit], rows each. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_ce_begin(float *state, int rows)
{
    if (rows < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_begin: rows %d", rows);
    for (int r = 0; r < rows; r++) {
        state[r] = -INFINITY;  /* running max */
        state[rows + r] = 0.0f; /* running Σ e^(z - max) */
        state[2 * rows + r] = 0.0f;
    }
    return SQ_OK;
}

sq_status kn_ce_chunk_forward(float *state, const float *logits, const int32_t *targets, int rows, int v0, int n)
{
    if (rows < 0 || n <= 0 || v0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_chunk_forward: bad shape rows=%d v0=%d n=%d", rows, v0, n);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *z = logits + (size_t)r * n;
        float chunk_max = z[0];
        for (int j = 1; j < n; j++)
            chunk_max = z[j] > chunk_max ? z[j] : chunk_max;
        float old_max = state[r], new_max = chunk_max > old_max ? chunk_max : old_max;
        double sum = old_max == -INFINITY ? 0.0 : state[rows + r] * exp((double)old_max - new_max);
        for (int j = 0; j < n; j++)
            sum += exp((double)z[j] - new_max);
        state[r] = new_max;
        state[rows + r] = (float)sum;
        int t = targets[r];
        if (t >= v0 && t < v0 + n)
            state[2 * rows + r] = z[t - v0];
    }
    return SQ_OK;
}

sq_status kn_ce_finish(float *nll, float *lse, const float *state, const int32_t *targets, int rows)
{
    if (rows < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_finish: rows %d", rows);
    for (int r = 0; r < rows; r++) {
        lse[r] = (float)(state[r] + log((double)state[rows + r]));
        nll[r] = targets[r] < 0 ? 0.0f : lse[r] - state[2 * rows + r];
    }
    return SQ_OK;
}

sq_status kn_ce_chunk_backward(float *logits, const float *lse, const int32_t *targets, const float *row_weight,
                               int rows, int v0, int n)
{
    if (rows < 0 || n <= 0 || v0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_chunk_backward: bad shape rows=%d v0=%d n=%d", rows, v0, n);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        float *z = logits + (size_t)r * n;
        int t = targets[r];
        float w = t < 0 ? 0.0f : row_weight[r];
        /* nll = lse - z_t: d/dz_j = softmax_j - [j == t], scaled by the row's weight in the loss */
        for (int j = 0; j < n; j++)
            z[j] = w * (expf(z[j] - lse[r]) - (v0 + j == t ? 1.0f : 0.0f));
    }
    return SQ_OK;
}
