/* kv_cache_request.c: an evaluation's KV cache options into an sq_kv_cache (see kv_cache_request.h). */
#include "model/kv_cache_request.h"

#include <string.h>

bool sq_kv_cache_requested(const sq_kv_cache_request *rq) { return rq->scales || rq->dtype || rq->kivi_bits; }

sq_status sq_kv_cache_request_check(const sq_kv_cache_request *rq, const char *where)
{
    if (rq->dtype && !rq->scales)
        return sq_fail(SQ_ERR_ARG, "%s: a KV cache dtype needs scales (\"model\" or a kv_cache_scales.json)", where);
    if (rq->kivi_bits && rq->scales)
        return sq_fail(SQ_ERR_ARG, "%s: KIVI and static KV scales exclude each other", where);
    if (rq->kivi_bits && rq->kivi_bits != 2 && rq->kivi_bits != 4)
        return sq_fail(SQ_ERR_ARG, "%s: KIVI bits must be 2 or 4 (got %d)", where, rq->kivi_bits);
    kn_kv_format format;
    if (rq->dtype)
        SQ_TRY(sq_kv_format_parse(rq->dtype, where, &format));
    return SQ_OK;
}

sq_status sq_kv_cache_open(sq_kv_cache *kv, const sq_kv_cache_request *rq, const char *model_dir,
                           const sq_checkpoint *ckpt, const sq_model_config *cfg)
{
    SQ_TRY(sq_kv_cache_request_check(rq, "KV cache"));
    if (rq->kivi_bits)
        return sq_kv_cache_kivi(kv, rq->kivi_bits, SQ_KIVI_GROUP);
    sq_kv_scales scales;
    if (strcmp(rq->scales, "model") == 0)
        SQ_TRY(sq_kv_scales_load_model(&scales, model_dir, ckpt, cfg));
    else
        SQ_TRY(sq_kv_scales_load_file(&scales, rq->scales, cfg));
    kn_kv_format format = scales.format;
    sq_status st = rq->dtype ? sq_kv_format_parse(rq->dtype, "KV cache dtype", &format) : SQ_OK;
    if (st == SQ_OK)
        st = sq_kv_cache_static(kv, &scales, format);
    sq_kv_scales_free(&scales);
    return st;
}

void sq_kv_cache_request_describe(const sq_kv_cache_request *rq, const sq_kv_cache *kv, json_t *metrics)
{
    json_t *d = rq->kivi_bits ? json_pack("{s:s, s:i, s:i}", "method", "kivi", "bits", kv->bits, "group", kv->group)
                              : json_pack("{s:s, s:s, s:s}", "method", "static", "scales", rq->scales, "dtype",
                                          sq_kv_format_name(kv->format));
    json_object_set_new(metrics, "kv_cache", d);
}
