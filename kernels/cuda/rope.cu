/* rope.cu (CUDA backend): rotary position embedding in place, Hugging Face
 * "rotate half": the pair (x[i], x[i + head_dim/2]) of each head is rotated by
 * position * inv_freq[i]; the backward rotates by minus that angle (the
 * rotation's transpose). One thread per pair; the angle and its cos/sin are
 * formed in double, as the CPU reference does, so long positions stay exact. */
#include "kernels/cuda/cuda_common.h"

/* direction +1: the forward; -1: the backward (sin negated, exactly, as on the CPU). */
__global__ void rope_pairs(float *x, const float *inv_freq, int seq, int heads, int half, int pos0, float direction,
                           size_t pairs)
{
    GRID_STRIDE(p, pairs)
    {
        int i = (int)(p % half);
        size_t head = p / half; /* over batch*seq*heads */
        size_t row = head / heads;
        int t = (int)(row % seq);
        double angle = (double)(pos0 + t) * (double)inv_freq[i];
        float c = (float)cos(angle), s = __fmul_rn(direction, (float)sin(angle));
        float *xh = x + head * 2 * half;
        float x1 = xh[i], x2 = xh[i + half];
        xh[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        xh[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
}

static sq_status rotate(float *x, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0,
                        float direction)
{
    if (batch < 0 || seq < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 || pos0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_rope%s: bad shape batch=%d seq=%d heads=%d head_dim=%d pos0=%d",
                       direction > 0 ? "" : "_backward", batch, seq, heads, head_dim, pos0);
    size_t pairs = (size_t)batch * seq * heads * (head_dim / 2);
    if (pairs == 0)
        return SQ_OK;
    rope_pairs<<<kn_cuda_blocks(pairs, 256), 256>>>(x, inv_freq, seq, heads, head_dim / 2, pos0, direction, pairs);
    CUDA_CHECK_LAUNCH();
    return SQ_OK;
}

extern "C" sq_status kn_rope(float *x, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0)
{
    return rotate(x, inv_freq, batch, seq, heads, head_dim, pos0, 1.0f);
}

/* The rotation's transpose is the rotation by minus the angle. */
extern "C" sq_status kn_rope_backward(float *d, const float *inv_freq, int batch, int seq, int heads, int head_dim,
                                      int pos0)
{
    return rotate(d, inv_freq, batch, seq, heads, head_dim, pos0, -1.0f);
}
