/* kv_scales.h: static KV-cache scales, one per layer and key/value head (or one
 * per layer: strategy "tensor"), as the kv_cache step calibrates them and as
 * eval reads them back:
 *   scale = absmax / 127 (int8) or absmax / 448 (fp8 e4m3), absmax the largest |k|
 *   (after RoPE) or |v| of the head over every calibration token, in fp32; a zero
 *   scale becomes FLT_EPSILON, as compressed-tensors replaces its zero scales.
 * Two homes, read alike:
 *   kv_cache_scales.json  {"format": "shardq-kv-cache-scales/1", "dtype": "int8"|"fp8",
 *                          "strategy": "attn_head"|"tensor", "num_layers": L, "num_kv_heads": H,
 *                          "k_scale": [[H floats] x L], "v_scale": [[...] x L]}
 *                          (a "tensor" file repeats the layer's scale over its heads);
 *   a checkpoint          config.json's quantization_config.kv_cache_scheme
 *                          ({"num_bits": 8, "type": "float"|"int", "strategy": "attn_head"|
 *                          "tensor", "dynamic": false, "symmetric": true}, compressed-tensors)
 *                          and fp32 tensors model.layers.N.self_attn.k_scale / v_scale of shape
 *                          [H, 1, 1] (attn_head, compressed-tensors' shape) or [1] (tensor).
 * Scales made for one grid serve another by the ratio of the grids' maxima. */
#ifndef SQ_MODEL_KV_SCALES_H
#define SQ_MODEL_KV_SCALES_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"
#include "kernels/kernels.h"
#include "model/checkpoint.h"
#include "model/config.h"

typedef struct {
    int num_layers, num_kv_heads;
    kn_kv_format format; /* the grid they were calibrated for */
    bool per_head;       /* strategy "attn_head"; else "tensor" (one scale per layer) */
    float *k_scale, *v_scale; /* host [num_layers * num_kv_heads] */
} sq_kv_scales;

#define SQ_KV_SCALES_FILE "kv_cache_scales.json"

/* The kv_cache step's options: the grid and whether each kv head gets its own scale. */
typedef struct {
    kn_kv_format format; /* "dtype": "fp8" (default) or "int8" */
    bool per_head;       /* "strategy": "attn_head" (default) or "tensor" */
} sq_kv_calibration_options;

/* "int8" / "fp8" and back; the parse names `what` (a flag or JSON path) in its error. */
const char *sq_kv_format_name(kn_kv_format format);
sq_status sq_kv_format_parse(const char *name, const char *what, kn_kv_format *format);

/* Scales from per-head absolute maxima (host, [num_layers * num_kv_heads] each). */
sq_status sq_kv_scales_from_absmax(sq_kv_scales *s, const float *k_absmax, const float *v_absmax, int num_layers,
                                   int num_kv_heads, kn_kv_format format, bool per_head);
/* The scales for grid `to` into k and v [num_layers * num_kv_heads]. */
sq_status sq_kv_scales_convert(const sq_kv_scales *s, kn_kv_format to, float *k, float *v);

/* kv_cache_scales.json's document (a new reference) and compressed-tensors' kv_cache_scheme. */
json_t *sq_kv_scales_json(const sq_kv_scales *s);
json_t *sq_kv_cache_scheme(const sq_kv_scales *s);

/* A kv_cache_scales.json file, checked against the model's layer and kv-head counts. */
sq_status sq_kv_scales_load_file(sq_kv_scales *s, const char *path, const sq_model_config *cfg);
/* The scales a checkpoint carries (config.json in config_dir, tensors in ckpt). */
sq_status sq_kv_scales_load_model(sq_kv_scales *s, const char *config_dir, const sq_checkpoint *ckpt,
                                  const sq_model_config *cfg);
void sq_kv_scales_free(sq_kv_scales *s);

#endif
