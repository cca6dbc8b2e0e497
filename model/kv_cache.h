/* kv_cache.h: what happens to the attention's keys (after RoPE) and values on
 * their way into the KV cache, beside today's per-token simulation
 * (sq_layer_options.kv_cache_bits):
 *   SQ_KV_STATIC   quantize-dequantize with static per-head scales (int8 or fp8
 *                  e4m3, calibrated by the kv_cache step: model/kv_scales.h);
 *   SQ_KV_KIVI     KIVI (Liu et al. 2024): keys per channel over blocks of `group`
 *                  tokens, values per token (per head over head_dim), both asymmetric
 *                  at `bits`; the last seq % group tokens of a sequence (an unfinished
 *                  block) stay in full precision, keys and values alike, as KIVI keeps
 *                  its residual tokens;
 *   SQ_KV_OBSERVE  leave them exact and record each head's absolute maximum (the
 *                  calibration of the static scales).
 * Perplexity scores a window at once, so every query sees the whole cache quantized
 * as it would be after the window was generated (a simulation, as kv_cache_bits is). */
#ifndef SQ_MODEL_KV_CACHE_H
#define SQ_MODEL_KV_CACHE_H

#include "core/status.h"
#include "kernels/kernels.h"
#include "model/kv_scales.h"

typedef enum { SQ_KV_STATIC, SQ_KV_KIVI, SQ_KV_OBSERVE } sq_kv_cache_mode;

#define SQ_KIVI_GROUP 32 /* KIVI's key group size (the paper's G) */

typedef struct sq_kv_cache {
    sq_kv_cache_mode mode;
    int num_layers, num_kv_heads;
    kn_kv_format format;  /* static */
    float *k_scale, *v_scale; /* static: device [num_layers * num_kv_heads] */
    float *k_absmax, *v_absmax; /* observe: device [num_layers * num_kv_heads], start at 0 */
    int bits, group;      /* kivi */
} sq_kv_cache;

/* Static: the scales converted to `format` (model/kv_scales.h) and uploaded. */
sq_status sq_kv_cache_static(sq_kv_cache *kv, const sq_kv_scales *scales, kn_kv_format format);
/* KIVI at 2 or 4 bits (any 1..8 is accepted), group tokens per key block. */
sq_status sq_kv_cache_kivi(sq_kv_cache *kv, int bits, int group);
/* Observe: zeroed maxima for num_layers x num_kv_heads. */
sq_status sq_kv_cache_observe(sq_kv_cache *kv, int num_layers, int num_kv_heads);
void sq_kv_cache_free(sq_kv_cache *kv);

/* Called by the layer after RoPE: k and v [batch*seq, kv_heads*head_dim] of layer `layer`. */
sq_status sq_kv_cache_apply(const sq_kv_cache *kv, int layer, float *k, float *v, int batch, int seq, int kv_heads,
                            int head_dim);

#endif
