/* loss_chunked.cu (CUDA backend): cross-entropy over chunks of the vocabulary
 * (kernels.h), so the LM head never materialises [rows, vocab] logits. The
 * forward keeps an online logsumexp per row — one thread block per row: a block
 * maximum, then the sum of exponentials in double, as the CPU reference does;
 * the backward turns a recomputed chunk of logits into its gradient in place,
 * one thread per logit, with the CPU's float operations (no fused multiply-add).
 * State layout: [max | sum | target logit], rows each. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

__global__ void ce_begin_kernel(float *state, int rows)
{
    GRID_STRIDE(r, (size_t)rows)
    {
        state[r] = -INFINITY;   /* running max */
        state[rows + r] = 0.0f; /* running Σ e^(z - max) */
        state[2 * rows + r] = 0.0f;
    }
}

/* m' = max(m, max_j z_j), s' = s e^(m - m') + Σ_j e^(z_j - m'); the target's logit once seen. */
__global__ void ce_chunk_forward_rows(float *state, const float *logits, const int32_t *targets, int rows, int v0,
                                      int n)
{
    int r = blockIdx.x;
    const float *z = logits + (size_t)r * n;
    float chunk_max = -INFINITY;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        chunk_max = fmaxf(chunk_max, z[j]);
    chunk_max = block_reduce(chunk_max, reduce_max());
    float old_max = state[r], new_max = chunk_max > old_max ? chunk_max : old_max;
    double sum = 0.0;
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        sum += exp((double)z[j] - new_max);
    sum = block_reduce(sum, reduce_sum());
    if (threadIdx.x == 0) {
        double carried = old_max == -INFINITY ? 0.0 : state[rows + r] * exp((double)old_max - new_max);
        state[r] = new_max;
        state[rows + r] = (float)(carried + sum);
        int t = targets[r];
        if (t >= v0 && t < v0 + n)
            state[2 * rows + r] = z[t - v0];
    }
}

__global__ void ce_finish_kernel(float *nll, float *lse, const float *state, const int32_t *targets, int rows)
{
    GRID_STRIDE(r, (size_t)rows)
    {
        float l = (float)(state[r] + log((double)state[rows + r]));
        lse[r] = l;
        nll[r] = targets[r] < 0 ? 0.0f : __fsub_rn(l, state[2 * rows + r]);
    }
}

/* dz_rj = w_r (e^(z_rj - lse_r) - [v0 + j == target_r]), w_r = 0 where target_r < 0. */
__global__ void ce_chunk_backward_kernel(float *logits, const float *lse, const int32_t *targets,
                                         const float *row_weight, int v0, int n, size_t total)
{
    GRID_STRIDE(i, total)
    {
        size_t r = i / n;
        int j = (int)(i % n), t = targets[r];
        float w = t < 0 ? 0.0f : row_weight[r];
        logits[i] = __fmul_rn(w, __fsub_rn(expf(__fsub_rn(logits[i], lse[r])), v0 + j == t ? 1.0f : 0.0f));
    }
}

extern "C" sq_status kn_ce_begin(float *state, int rows)
{
    if (rows < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_begin: rows %d", rows);
    if (rows == 0)
        return SQ_OK;
    ce_begin_kernel<<<kn_cuda_blocks((size_t)rows, 256), 256>>>(state, rows);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_ce_chunk_forward(float *state, const float *logits, const int32_t *targets, int rows, int v0,
                                         int n)
{
    if (rows < 0 || n <= 0 || v0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_chunk_forward: bad shape rows=%d v0=%d n=%d", rows, v0, n);
    if (rows == 0)
        return SQ_OK;
    ce_chunk_forward_rows<<<rows, 256>>>(state, logits, targets, rows, v0, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_ce_finish(float *nll, float *lse, const float *state, const int32_t *targets, int rows)
{
    if (rows < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_finish: rows %d", rows);
    if (rows == 0)
        return SQ_OK;
    ce_finish_kernel<<<kn_cuda_blocks((size_t)rows, 256), 256>>>(nll, lse, state, targets, rows);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_ce_chunk_backward(float *logits, const float *lse, const int32_t *targets,
                                          const float *row_weight, int rows, int v0, int n)
{
    if (rows < 0 || n <= 0 || v0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_ce_chunk_backward: bad shape rows=%d v0=%d n=%d", rows, v0, n);
    size_t total = (size_t)rows * n;
    if (total == 0)
        return SQ_OK;
    ce_chunk_backward_kernel<<<kn_cuda_blocks(total, 256), 256>>>(logits, lse, targets, row_weight, v0, n, total);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
