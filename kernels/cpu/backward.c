/* backward.c (CPU backend): the backward passes of the pointwise and
 * row-wise pieces of a decoder layer — RMSNorm, SwiGLU, a linear's input
 * gradient — and inverted dropout (its own backward). Shapes as in the
 * forward kernels (kernels.h); each gradient line below cites the forward
 * line it inverts. */
#include <math.h>
#include <string.h>

#include "kernels/dropout_mask.h"
#include "kernels/kernels.h"

sq_status kn_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *weight, int rows, int dim,
                              float eps)
{
    if (rows < 0 || dim <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_rmsnorm_backward: bad shape rows=%d dim=%d", rows, dim);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *dyr = dy + (size_t)r * dim;
        float *dxr = dx + (size_t)r * dim;
        double sum_sq = 0.0, dot = 0.0;
        for (int i = 0; i < dim; i++) {
            sum_sq += (double)xr[i] * xr[i];           /* forward: mean(x²) */
            dot += (double)xr[i] * weight[i] * dyr[i]; /* Σ x_i w_i dy_i: the path through inv */
        }
        double inv = 1.0 / sqrt(sum_sq / dim + eps); /* forward: inv = 1/sqrt(mean(x²) + eps) */
        double through_inv = dot * inv * inv * inv / dim;
        for (int i = 0; i < dim; i++) /* y_i = x_i inv w_i: direct path minus the path through inv */
            dxr[i] += (float)(inv * weight[i] * dyr[i] - xr[i] * through_inv);
    }
    return SQ_OK;
}

sq_status kn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate, const float *up, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float sig = 1.0f / (1.0f + expf(-g)); /* forward: silu(g) = g σ(g) */
        float silu = g * sig;
        dup[i] = dy[i] * silu;                                   /* y = silu(g) u: dy/du = silu(g) */
        dgate[i] = dy[i] * up[i] * sig * (1.0f + g * (1.0f - sig)); /* silu'(g) = σ(1 + g(1 - σ)) */
    }
    return SQ_OK;
}

sq_status kn_linear_backward(float *dx, float *dweight, const float *dy, const float *x, const float *weight,
                             int rows, int in_features, int out_features, bool accumulate_dx)
{
    /* forward: y[rows,out] = x[rows,in] Wᵀ[in,out] */
    if (dx) /* dx[rows,in] = dy[rows,out] W[out,in] */
        SQ_TRY(kn_gemm(false, false, rows, in_features, out_features, 1.0f, dy, out_features, weight, in_features,
                       accumulate_dx ? 1.0f : 0.0f, dx, in_features));
    if (dweight) /* dW[out,in] += dyᵀ[out,rows] x[rows,in] */
        SQ_TRY(kn_gemm(true, false, out_features, in_features, rows, 1.0f, dy, out_features, x, in_features, 1.0f,
                       dweight, in_features));
    return SQ_OK;
}

sq_status kn_dropout(float *out, const float *x, size_t n, float p, uint64_t seed)
{
    if (!(p >= 0.0f && p < 1.0f))
        return sq_fail(SQ_ERR_ARG, "kn_dropout: p %g is outside [0, 1)", p);
    if (p == 0.0f) {
        if (out != x)
            memmove(out, x, n * sizeof *out);
        return SQ_OK;
    }
    const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = kn_dropout_keep(seed, i, p) ? x[i] * keep_scale : 0.0f;
    return SQ_OK;
}
