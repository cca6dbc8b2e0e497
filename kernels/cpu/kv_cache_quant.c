/* kv_cache_quant.c (CPU backend): the quantized KV caches beside today's per-token
 * simulation (kv_quant.c): static per-head scales (int8, fp8 e4m3; the grid is
 * kernels/kv_cache_grid.h), their calibration (per-head absolute maxima), and
 * KIVI's per-channel key groups. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/kv_cache_grid.h"

static sq_status check_heads(const char *who, int rows, int heads, int head_dim)
{
    if (rows < 0 || heads <= 0 || head_dim <= 0)
        return sq_fail(SQ_ERR_ARG, "%s: bad arguments rows=%d heads=%d head_dim=%d", who, rows, heads, head_dim);
    return SQ_OK;
}

sq_status kn_kv_quantize_static(float *x, const float *scales, int rows, int heads, int head_dim,
                                kn_kv_format format)
{
    SQ_TRY(check_heads("kn_kv_quantize_static", rows, heads, head_dim));
    const int width = heads * head_dim, fp8 = format == KN_KV_FP8;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < width; i++)
            x[(size_t)r * width + i] = kn_kv_static_round(x[(size_t)r * width + i], scales[i / head_dim], fp8);
    return SQ_OK;
}

sq_status kn_kv_head_absmax(float *absmax, const float *x, int rows, int heads, int head_dim)
{
    SQ_TRY(check_heads("kn_kv_head_absmax", rows, heads, head_dim));
    const int width = heads * head_dim;
#pragma omp parallel for schedule(static)
    for (int h = 0; h < heads; h++) {
        float m = absmax[h];
        for (int r = 0; r < rows; r++)
            for (int d = 0; d < head_dim; d++)
                m = fmaxf(m, fabsf(x[(size_t)r * width + h * head_dim + d]));
        absmax[h] = m;
    }
    return SQ_OK;
}

sq_status kn_kv_quantize_channel_groups(float *x, int batch, int seq, int channels, int group, int bits)
{
    if (batch < 0 || seq <= 0 || channels <= 0 || group <= 0 || bits < 1 || bits > 16)
        return sq_fail(SQ_ERR_ARG, "kn_kv_quantize_channel_groups: bad arguments batch=%d seq=%d channels=%d "
                       "group=%d bits=%d", batch, seq, channels, group, bits);
    const int blocks = seq / group; /* whole blocks; the rest stays in full precision */
    const float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < batch; b++)
        for (int blk = 0; blk < blocks; blk++) {
            float *base = x + ((size_t)b * seq + (size_t)blk * group) * channels;
            for (int c = 0; c < channels; c++) {
                float lo = base[c], hi = base[c];
                for (int t = 1; t < group; t++) {
                    lo = fminf(lo, base[(size_t)t * channels + c]);
                    hi = fmaxf(hi, base[(size_t)t * channels + c]);
                }
                float scale = (hi - lo) / maxq;
                if (!(scale > 0.0f))
                    continue;
                for (int t = 0; t < group; t++) {
                    float *v = &base[(size_t)t * channels + c];
                    float q = nearbyintf((*v - lo) / scale);
                    *v = lo + scale * (q > maxq ? maxq : q);
                }
            }
        }
    return SQ_OK;
}
