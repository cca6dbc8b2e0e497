/* loss.c (CPU backend): per-token negative log-likelihood from logits,
 * nll = logsumexp(logits) - logits[target], with the row maximum subtracted
 * before exponentiating and the sum kept in double. */
#include <math.h>

#include "kernels/kernels.h"

sq_status kn_cross_entropy(float *nll, const float *logits, const int32_t *targets, int rows, int vocab)
{
    if (rows < 0 || vocab <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_cross_entropy: bad shape rows=%d vocab=%d", rows, vocab);
    for (int r = 0; r < rows; r++)
        if (targets[r] < 0 || targets[r] >= vocab)
            return sq_fail(SQ_ERR_ARG, "kn_cross_entropy: target %d of row %d is outside the vocabulary [0, %d)",
                           (int)targets[r], r, vocab);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *row = logits + (size_t)r * vocab;
        float max_logit = row[0];
        for (int i = 1; i < vocab; i++)
            if (row[i] > max_logit)
                max_logit = row[i];
        double sum = 0.0;
        for (int i = 0; i < vocab; i++)
            sum += exp((double)row[i] - max_logit);
        nll[r] = (float)(max_logit + log(sum) - row[targets[r]]);
    }
    return SQ_OK;
}
