/* elementwise.cu (CUDA backend): the pointwise pieces of a decoder layer —
 * SwiGLU activation, residual addition — and the token embedding lookup
 * (token ids are range-checked on the GPU first). */
#include "kernels/cuda/cuda_common.h"

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void add_kernel(float *out, const float *x, size_t n)
{
    GRID_STRIDE(i, n) out[i] += x[i];
}

__global__ void embedding_kernel(float *out, const float *table, const int32_t *ids, int n, int dim)
{
    size_t total = (size_t)n * dim;
    GRID_STRIDE(i, total) out[i] = table[(size_t)ids[i / dim] * dim + i % dim];
}

extern "C" sq_status kn_swiglu(float *out, const float *gate, const float *up, size_t n)
{
    if (n == 0)
        return SQ_OK;
    swiglu_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, gate, up, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_add_inplace(float *out, const float *x, size_t n)
{
    if (n == 0)
        return SQ_OK;
    add_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, x, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_embedding(float *out, const float *table, const int32_t *ids, int n, int dim, int vocab)
{
    if (n < 0 || dim <= 0 || vocab <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_embedding: bad shape n=%d dim=%d vocab=%d", n, dim, vocab);
    if (n == 0)
        return SQ_OK;
    SQ_TRY(kn_cuda_check_indices(ids, (size_t)n, vocab, "kn_embedding", "token id"));
    embedding_kernel<<<kn_cuda_blocks((size_t)n * dim, 256), 256>>>(out, table, ids, n, dim);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
