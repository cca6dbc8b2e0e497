/* rope.c (CPU backend): rotary position embedding, Hugging Face "rotate half"
 * convention: for each head, the pair (x[i], x[i + head_dim/2]) is rotated by
 * the angle position * inv_freq[i] (the backward: by minus that angle). Angles are formed in double and the
 * cos/sin table is built once per position, then applied to every head. */
#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"

/* Rotate every (x1, x2) pair by the angle (direction +1) or by minus it (-1, the backward). */
static sq_status rotate(float *x, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0,
                        float direction)
{
    if (batch < 0 || seq < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 || pos0 < 0)
        return sq_fail(SQ_ERR_ARG, "kn_rope%s: bad shape batch=%d seq=%d heads=%d head_dim=%d pos0=%d",
                       direction > 0 ? "" : "_backward", batch, seq, heads, head_dim, pos0);
    int half = head_dim / 2;
    float *cos_sin = malloc(sizeof(float) * 2 * (size_t)half * (seq ? seq : 1));
    if (!cos_sin)
        return sq_fail(SQ_ERR_NOMEM, "kn_rope: cannot allocate the cos/sin table for %d positions", seq);
    for (int t = 0; t < seq; t++) {
        for (int i = 0; i < half; i++) {
            double angle = (double)(pos0 + t) * (double)inv_freq[i];
            cos_sin[((size_t)t * half + i) * 2] = (float)cos(angle);
            cos_sin[((size_t)t * half + i) * 2 + 1] = (float)sin(angle);
        }
    }
    size_t width = (size_t)heads * head_dim;
#pragma omp parallel for schedule(static)
    for (long row = 0; row < (long)batch * seq; row++) {
        const float *cs = cos_sin + (size_t)(row % seq) * half * 2;
        for (int h = 0; h < heads; h++) {
            float *xh = x + (size_t)row * width + (size_t)h * head_dim;
            for (int i = 0; i < half; i++) {
                float c = cs[2 * i], s = direction * cs[2 * i + 1];
                float x1 = xh[i], x2 = xh[i + half];
                xh[i] = x1 * c - x2 * s;
                xh[i + half] = x2 * c + x1 * s;
            }
        }
    }
    free(cos_sin);
    return SQ_OK;
}

sq_status kn_rope(float *x, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0)
{
    return rotate(x, inv_freq, batch, seq, heads, head_dim, pos0, 1.0f);
}

/* The rotation's transpose is the rotation by minus the angle. */
sq_status kn_rope_backward(float *d, const float *inv_freq, int batch, int seq, int heads, int head_dim, int pos0)
{
    return rotate(d, inv_freq, batch, seq, heads, head_dim, pos0, -1.0f);
}
