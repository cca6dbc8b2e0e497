/* loss.cu (CUDA backend): per-token negative log-likelihood from logits,
 * nll = logsumexp(logits) - logits[target]; one thread block per row, the row
 * maximum subtracted before exponentiating and the sum kept in double. */
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda/reduce.cuh"

__global__ void cross_entropy_rows(float *nll, const float *logits, const int32_t *targets, int vocab)
{
    const float *row = logits + (size_t)blockIdx.x * vocab;
    float max_logit = -INFINITY;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        max_logit = fmaxf(max_logit, row[i]);
    max_logit = block_reduce(max_logit, reduce_max());
    double sum = 0.0;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x)
        sum += exp((double)row[i] - max_logit);
    sum = block_reduce(sum, reduce_sum());
    if (threadIdx.x == 0)
        nll[blockIdx.x] = (float)(max_logit + log(sum) - row[targets[blockIdx.x]]);
}

extern "C" sq_status kn_cross_entropy(float *nll, const float *logits, const int32_t *targets, int rows, int vocab)
{
    if (rows < 0 || vocab <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_cross_entropy: bad shape rows=%d vocab=%d", rows, vocab);
    if (rows == 0)
        return SQ_OK;
    SQ_TRY(kn_cuda_check_indices(targets, (size_t)rows, vocab, "kn_cross_entropy", "target"));
    cross_entropy_rows<<<rows, 256>>>(nll, logits, targets, vocab);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
