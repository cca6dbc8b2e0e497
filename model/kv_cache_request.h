/* kv_cache_request.h: the KV cache an evaluation asks for (`shardq eval`'s
 * --kv-cache-scales / --kv-cache-dtype / --kv-cache-kivi and the eval step's
 * kv_cache_scales / kv_cache_dtype / kv_cache_kivi), turned into an sq_kv_cache:
 *   scales "model"  the checkpoint's own k_scale / v_scale (a kv_cache step's output);
 *   scales PATH     a kv_cache_scales.json;
 *   dtype           "int8" or "fp8" (NULL: the grid the scales were calibrated for);
 *   kivi_bits       2 or 4: KIVI (keys per channel in groups of SQ_KIVI_GROUP tokens,
 *                   values per token), exclusive with scales. */
#ifndef SQ_MODEL_KV_CACHE_REQUEST_H
#define SQ_MODEL_KV_CACHE_REQUEST_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/kv_cache.h"

typedef struct {
    const char *scales; /* NULL: none */
    const char *dtype;  /* NULL: the scales' own */
    int kivi_bits;      /* 0: off */
} sq_kv_cache_request;

/* Whether the request asks for anything. */
bool sq_kv_cache_requested(const sq_kv_cache_request *rq);
/* A consistency check of the request alone (messages name `where`, e.g. "--kv-cache-dtype"
 * or "steps[2].eval"). */
sq_status sq_kv_cache_request_check(const sq_kv_cache_request *rq, const char *where);
/* The cache the request asks for; model_dir holds the evaluated model's config.json. */
sq_status sq_kv_cache_open(sq_kv_cache *kv, const sq_kv_cache_request *rq, const char *model_dir,
                           const sq_checkpoint *ckpt, const sq_model_config *cfg);
/* Adds the request to an eval's metrics ("kv_cache": {"scales", "dtype"} or {"kivi_bits", "group"}). */
void sq_kv_cache_request_describe(const sq_kv_cache_request *rq, const sq_kv_cache *kv, json_t *metrics);

#endif
