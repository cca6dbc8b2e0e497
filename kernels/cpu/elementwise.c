/* elementwise.c (CPU backend): the pointwise pieces of a decoder layer —
 * SwiGLU activation, residual addition — and the token embedding lookup. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

sq_status kn_swiglu(float *out, const float *gate, const float *up, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
    return SQ_OK;
}

sq_status kn_add_inplace(float *out, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] += x[i];
    return SQ_OK;
}

sq_status kn_embedding(float *out, const float *table, const int32_t *ids, int n, int dim, int vocab)
{
    if (n < 0 || dim <= 0 || vocab <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_embedding: bad shape n=%d dim=%d vocab=%d", n, dim, vocab);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return sq_fail(SQ_ERR_ARG, "kn_embedding: token id %d at position %d is outside the vocabulary [0, %d)",
                           (int)ids[i], i, vocab);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * dim, table + (size_t)ids[i] * dim, sizeof(float) * dim);
    return SQ_OK;
}
