/* training_pending.c (CUDA backend): the training kernels of kernels.h are
 * not written for CUDA yet (the CPU backend is their reference; the CUDA
 * versions are the next issue). Each entry point reports that plainly, so a
 * qlora step on a CUDA build fails with a clear message rather than a link
 * error or a wrong result. */
#include "kernels/kernels.h"

#define PENDING(name) sq_fail(SQ_ERR_UNSUPPORTED, "%s: not implemented on the CUDA backend yet (build with CUDA=0)", name)

sq_status kn_rmsnorm_backward(float *dx, const float *dy, const float *x, const float *weight, int rows, int dim,
                              float eps)
{
    (void)dx, (void)dy, (void)x, (void)weight, (void)rows, (void)dim, (void)eps;
    return PENDING("kn_rmsnorm_backward");
}

sq_status kn_rope_backward(float *d, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0)
{
    (void)d, (void)inv_freq, (void)batch, (void)seq, (void)heads, (void)head_dim, (void)pos0;
    return PENDING("kn_rope_backward");
}

sq_status kn_swiglu_backward(float *dgate, float *dup, const float *dy, const float *gate, const float *up, size_t n)
{
    (void)dgate, (void)dup, (void)dy, (void)gate, (void)up, (void)n;
    return PENDING("kn_swiglu_backward");
}

sq_status kn_linear_backward(float *dx, float *dweight, const float *dy, const float *x, const float *weight,
                             int rows, int in_features, int out_features, bool accumulate_dx)
{
    (void)dx, (void)dweight, (void)dy, (void)x, (void)weight, (void)rows, (void)in_features, (void)out_features,
        (void)accumulate_dx;
    return PENDING("kn_linear_backward");
}

sq_status kn_dropout(float *out, const float *x, size_t n, float p, uint64_t seed)
{
    (void)out, (void)x, (void)n, (void)p, (void)seed;
    return PENDING("kn_dropout");
}

sq_status kn_ce_begin(float *state, int rows)
{
    (void)state, (void)rows;
    return PENDING("kn_ce_begin");
}

sq_status kn_ce_chunk_forward(float *state, const float *logits, const int32_t *targets, int rows, int v0, int n)
{
    (void)state, (void)logits, (void)targets, (void)rows, (void)v0, (void)n;
    return PENDING("kn_ce_chunk_forward");
}

sq_status kn_ce_finish(float *nll, float *lse, const float *state, const int32_t *targets, int rows)
{
    (void)nll, (void)lse, (void)state, (void)targets, (void)rows;
    return PENDING("kn_ce_finish");
}

sq_status kn_ce_chunk_backward(float *logits, const float *lse, const int32_t *targets, const float *row_weight,
                               int rows, int v0, int n)
{
    (void)logits, (void)lse, (void)targets, (void)row_weight, (void)rows, (void)v0, (void)n;
    return PENDING("kn_ce_chunk_backward");
}

sq_status kn_sum_squares(double *sum, const float *x, size_t n)
{
    (void)sum, (void)x, (void)n;
    return PENDING("kn_sum_squares");
}

sq_status kn_scale(float *x, float s, size_t n)
{
    (void)x, (void)s, (void)n;
    return PENDING("kn_scale");
}

sq_status kn_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                   float eps, float weight_decay, int t)
{
    (void)param, (void)grad, (void)m, (void)v, (void)n, (void)lr, (void)beta1, (void)beta2, (void)eps,
        (void)weight_decay, (void)t;
    return PENDING("kn_adamw");
}

sq_status kn_dequantize_nf4(float *W, const uint8_t *packed, const float *absmax, size_t n)
{
    (void)W, (void)packed, (void)absmax, (void)n;
    return PENDING("kn_dequantize_nf4");
}

sq_status kn_dequantize_blockwise8(float *out, const uint8_t *q, const float *code8, const float *absmax2,
                                   float offset, size_t n)
{
    (void)out, (void)q, (void)code8, (void)absmax2, (void)offset, (void)n;
    return PENDING("kn_dequantize_blockwise8");
}
