/* elementwise.cu (CUDA backend): the pointwise pieces of a decoder layer —
 * SwiGLU activation and its backward, residual addition, scaling, inverted
 * dropout — and the token embedding lookup (token ids are range-checked on the
 * GPU first). The backward and dropout repeat the CPU reference's float
 * operations one by one (the _rn intrinsics keep nvcc from fusing a multiply
 * and an add, which the CPU build does not do); the dropout mask is the CPU's,
 * bit for bit (kernels/dropout_mask.h). */
#include "kernels/cuda/cuda_common.h"
#include "kernels/dropout_mask.h"

__global__ void swiglu_kernel(float *out, const float *gate, const float *up, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* kernels.h: dg = dy u σ(g) (1 + g (1 - σ(g)));  du = dy silu(g). */
__global__ void swiglu_backward_kernel(float *dgate, float *dup, const float *dy, const float *gate, const float *up,
                                       size_t n)
{
    GRID_STRIDE(i, n)
    {
        float g = gate[i], d = dy[i];
        float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-g)));
        dup[i] = __fmul_rn(d, __fmul_rn(g, sig));
        float slope = __fadd_rn(1.0f, __fmul_rn(g, __fsub_rn(1.0f, sig)));
        dgate[i] = __fmul_rn(__fmul_rn(__fmul_rn(d, up[i]), sig), slope);
    }
}

__global__ void scale_kernel(float *x, float s, size_t n)
{
    GRID_STRIDE(i, n) x[i] *= s;
}

__global__ void dropout_kernel(float *out, const float *x, size_t n, float p, float keep_scale, uint64_t seed)
{
    GRID_STRIDE(i, n) out[i] = kn_dropout_keep(seed, i, p) ? x[i] * keep_scale : 0.0f;
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

extern "C" sq_status kn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate,
                                        const float *up, size_t n)
{
    if (n == 0)
        return SQ_OK;
    swiglu_backward_kernel<<<kn_cuda_blocks(n, 256), 256>>>(dgate, dup, dy, gate, up, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_scale(float *x, float s, size_t n)
{
    if (n == 0)
        return SQ_OK;
    scale_kernel<<<kn_cuda_blocks(n, 256), 256>>>(x, s, n);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_dropout(float *out, const float *x, size_t n, float p, uint64_t seed)
{
    if (!(p >= 0.0f && p < 1.0f))
        return sq_fail(SQ_ERR_ARG, "kn_dropout: p %g is outside [0, 1)", p);
    if (p == 0.0f) /* a copy */
        return out == x || n == 0 ? SQ_OK : kn_copy(out, x, n * sizeof *out);
    if (n == 0)
        return SQ_OK;
    const float keep_scale = 1.0f / (1.0f - p); /* on the host, as the CPU forms it */
    dropout_kernel<<<kn_cuda_blocks(n, 256), 256>>>(out, x, n, p, keep_scale, seed);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}
