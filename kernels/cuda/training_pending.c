/* training_pending.c (CUDA backend): kn_attention_backward is the one training
 * kernel of kernels.h not written for CUDA yet (kernels/cuda/attention_backward.cu
 * is being written; the CPU backend is its reference). It reports that plainly,
 * so a qlora step on a CUDA build fails with a clear message rather than a link
 * error or a wrong result. */
#include "kernels/kernels.h"

sq_status kn_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                const float *v, int batch, int seq, int n_heads, int n_kv_heads, int head_dim)
{
    (void)dq, (void)dk, (void)dv, (void)dout, (void)q, (void)k, (void)v, (void)batch, (void)seq, (void)n_heads,
        (void)n_kv_heads, (void)head_dim;
    return sq_fail(SQ_ERR_UNSUPPORTED, "kn_attention_backward: not implemented on the CUDA backend yet (build with "
                                       "CUDA=0)");
}
