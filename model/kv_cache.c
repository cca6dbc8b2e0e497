/* kv_cache.c: the KV cache treatments of the layer's attention (see kv_cache.h). */
#include "model/kv_cache.h"

#include <stdlib.h>
#include <string.h>

static sq_status upload_floats(float **dev, const float *host, size_t n)
{
    SQ_TRY(kn_alloc((void **)dev, n * sizeof(float)));
    return kn_upload(*dev, host, n * sizeof(float));
}

sq_status sq_kv_cache_static(sq_kv_cache *kv, const sq_kv_scales *scales, kn_kv_format format)
{
    *kv = (sq_kv_cache){.mode = SQ_KV_STATIC, .num_layers = scales->num_layers,
                        .num_kv_heads = scales->num_kv_heads, .format = format};
    size_t n = (size_t)scales->num_layers * scales->num_kv_heads;
    float *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
    sq_status st = k && v ? sq_kv_scales_convert(scales, format, k, v) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = upload_floats(&kv->k_scale, k, n);
    if (st == SQ_OK)
        st = upload_floats(&kv->v_scale, v, n);
    free(k);
    free(v);
    if (st != SQ_OK)
        sq_kv_cache_free(kv);
    return st;
}

sq_status sq_kv_cache_kivi(sq_kv_cache *kv, int bits, int group)
{
    if (bits < 1 || bits > 8 || group < 1)
        return sq_fail(SQ_ERR_ARG, "KIVI KV cache: bits %d (1..8) or group %d (>= 1) out of range", bits, group);
    *kv = (sq_kv_cache){.mode = SQ_KV_KIVI, .bits = bits, .group = group};
    return SQ_OK;
}

sq_status sq_kv_cache_observe(sq_kv_cache *kv, int num_layers, int num_kv_heads)
{
    *kv = (sq_kv_cache){.mode = SQ_KV_OBSERVE, .num_layers = num_layers, .num_kv_heads = num_kv_heads};
    size_t bytes = (size_t)num_layers * num_kv_heads * sizeof(float);
    sq_status st = kn_alloc((void **)&kv->k_absmax, bytes);
    if (st == SQ_OK)
        st = kn_alloc((void **)&kv->v_absmax, bytes);
    if (st == SQ_OK)
        st = kn_zero(kv->k_absmax, bytes);
    if (st == SQ_OK)
        st = kn_zero(kv->v_absmax, bytes);
    if (st != SQ_OK)
        sq_kv_cache_free(kv);
    return st;
}

void sq_kv_cache_free(sq_kv_cache *kv)
{
    kn_free(kv->k_scale);
    kn_free(kv->v_scale);
    kn_free(kv->k_absmax);
    kn_free(kv->v_absmax);
    memset(kv, 0, sizeof *kv);
}

sq_status sq_kv_cache_apply(const sq_kv_cache *kv, int layer, float *k, float *v, int batch, int seq, int kv_heads,
                            int head_dim)
{
    const int rows = batch * seq;
    if (kv->mode != SQ_KV_KIVI && (layer < 0 || layer >= kv->num_layers || kv_heads != kv->num_kv_heads))
        return sq_fail(SQ_ERR_MISMATCH, "KV cache: scales for %d layers x %d kv heads, layer %d has %d kv heads",
                       kv->num_layers, kv->num_kv_heads, layer, kv_heads);
    const size_t at = (size_t)layer * kv_heads;
    switch (kv->mode) {
    case SQ_KV_STATIC:
        SQ_TRY(kn_kv_quantize_static(k, kv->k_scale + at, rows, kv_heads, head_dim, kv->format));
        return kn_kv_quantize_static(v, kv->v_scale + at, rows, kv_heads, head_dim, kv->format);
    case SQ_KV_OBSERVE:
        SQ_TRY(kn_kv_head_absmax(kv->k_absmax + at, k, rows, kv_heads, head_dim));
        return kn_kv_head_absmax(kv->v_absmax + at, v, rows, kv_heads, head_dim);
    case SQ_KV_KIVI: {
        SQ_TRY(kn_kv_quantize_channel_groups(k, batch, seq, kv_heads * head_dim, kv->group, kv->bits));
        const int quantized = seq / kv->group * kv->group, width = kv_heads * head_dim;
        for (int b = 0; b < batch && quantized > 0; b++)
            SQ_TRY(kn_fake_quantize_rows(v + (size_t)b * seq * width, quantized * kv_heads, head_dim, kv->bits));
        return SQ_OK;
    }
    default: return sq_fail(SQ_ERR_ARG, "KV cache: mode %d does not exist", (int)kv->mode);
    }
}
