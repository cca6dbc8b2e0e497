/* kv_scales.c: static KV-cache scales, computed, converted, written and read (see kv_scales.h). */
#include "model/kv_scales.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "kernels/kv_cache_grid.h"

#define FILE_FORMAT "shardq-kv-cache-scales/1"

const char *sq_kv_format_name(kn_kv_format format) { return format == KN_KV_FP8 ? "fp8" : "int8"; }

sq_status sq_kv_format_parse(const char *name, const char *what, kn_kv_format *format)
{
    if (name && strcmp(name, "int8") == 0)
        *format = KN_KV_INT8;
    else if (name && strcmp(name, "fp8") == 0)
        *format = KN_KV_FP8;
    else
        return sq_fail(SQ_ERR_ARG, "%s: must be \"int8\" or \"fp8\" (got %s)", what, name ? name : "nothing");
    return SQ_OK;
}

static float grid_max(kn_kv_format format) { return format == KN_KV_FP8 ? KN_E4M3_MAX : KN_INT8_MAX; }

static sq_status scales_alloc(sq_kv_scales *s, int num_layers, int num_kv_heads, kn_kv_format format, bool per_head)
{
    *s = (sq_kv_scales){.num_layers = num_layers, .num_kv_heads = num_kv_heads, .format = format,
                        .per_head = per_head};
    size_t n = (size_t)num_layers * num_kv_heads;
    if (num_layers <= 0 || num_kv_heads <= 0)
        return sq_fail(SQ_ERR_ARG, "KV scales: %d layers x %d kv heads", num_layers, num_kv_heads);
    s->k_scale = calloc(n, sizeof(float));
    s->v_scale = calloc(n, sizeof(float));
    if (!s->k_scale || !s->v_scale) {
        sq_kv_scales_free(s);
        return sq_fail(SQ_ERR_NOMEM, "KV scales: out of memory");
    }
    return SQ_OK;
}

void sq_kv_scales_free(sq_kv_scales *s)
{
    free(s->k_scale);
    free(s->v_scale);
    memset(s, 0, sizeof *s);
}

/* Strategy "tensor": every head of a layer takes the layer's largest scale. */
static void share_per_layer(float *scale, int num_layers, int num_kv_heads)
{
    for (int l = 0; l < num_layers; l++) {
        float *row = scale + (size_t)l * num_kv_heads, m = row[0];
        for (int h = 1; h < num_kv_heads; h++)
            m = row[h] > m ? row[h] : m;
        for (int h = 0; h < num_kv_heads; h++)
            row[h] = m;
    }
}

sq_status sq_kv_scales_from_absmax(sq_kv_scales *s, const float *k_absmax, const float *v_absmax, int num_layers,
                                   int num_kv_heads, kn_kv_format format, bool per_head)
{
    SQ_TRY(scales_alloc(s, num_layers, num_kv_heads, format, per_head));
    const float qmax = grid_max(format);
    for (size_t i = 0; i < (size_t)num_layers * num_kv_heads; i++) {
        float k = k_absmax[i] / qmax, v = v_absmax[i] / qmax;
        s->k_scale[i] = k > 0.0f ? k : FLT_EPSILON; /* a head that was all zeros */
        s->v_scale[i] = v > 0.0f ? v : FLT_EPSILON;
    }
    if (!per_head) {
        share_per_layer(s->k_scale, num_layers, num_kv_heads);
        share_per_layer(s->v_scale, num_layers, num_kv_heads);
    }
    return SQ_OK;
}

sq_status sq_kv_scales_convert(const sq_kv_scales *s, kn_kv_format to, float *k, float *v)
{
    const float ratio = grid_max(s->format) / grid_max(to);
    for (size_t i = 0; i < (size_t)s->num_layers * s->num_kv_heads; i++) {
        k[i] = to == s->format ? s->k_scale[i] : s->k_scale[i] * ratio;
        v[i] = to == s->format ? s->v_scale[i] : s->v_scale[i] * ratio;
    }
    return SQ_OK;
}

static json_t *scale_rows(const sq_kv_scales *s, const float *scale)
{
    json_t *rows = json_array();
    for (int l = 0; rows && l < s->num_layers; l++) {
        json_t *row = json_array();
        for (int h = 0; row && h < s->num_kv_heads; h++)
            json_array_append_new(row, json_real(scale[(size_t)l * s->num_kv_heads + h]));
        json_array_append_new(rows, row);
    }
    return rows;
}

json_t *sq_kv_scales_json(const sq_kv_scales *s)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o}", "format", FILE_FORMAT, "dtype",
                     sq_kv_format_name(s->format), "strategy", s->per_head ? "attn_head" : "tensor", "num_layers",
                     s->num_layers, "num_kv_heads", s->num_kv_heads, "k_scale", scale_rows(s, s->k_scale), "v_scale",
                     scale_rows(s, s->v_scale));
}

json_t *sq_kv_cache_scheme(const sq_kv_scales *s)
{
    return json_pack("{s:i, s:s, s:s, s:b, s:b}", "num_bits", 8, "type", s->format == KN_KV_FP8 ? "float" : "int",
                     "strategy", s->per_head ? "attn_head" : "tensor", "dynamic", 0, "symmetric", 1);
}

static sq_status check_counts(const char *origin, int num_layers, int num_kv_heads, const sq_model_config *cfg)
{
    if (num_layers != cfg->num_layers || num_kv_heads != cfg->num_kv_heads)
        return sq_fail(SQ_ERR_MISMATCH, "%s: scales for %d layers x %d kv heads, the model has %d x %d", origin,
                       num_layers, num_kv_heads, cfg->num_layers, cfg->num_kv_heads);
    return SQ_OK;
}

static sq_status parse_strategy(const char *name, const char *what, bool *per_head)
{
    if (name && (strcmp(name, "attn_head") == 0 || strcmp(name, "tensor") == 0)) {
        *per_head = strcmp(name, "attn_head") == 0;
        return SQ_OK;
    }
    return sq_fail(SQ_ERR_FORMAT, "%s: must be \"attn_head\" or \"tensor\"", what);
}

/* doc[key] = [[H positive numbers] x L] into scale. */
static sq_status parse_rows(const char *path, json_t *doc, const char *key, const sq_kv_scales *s, float *scale)
{
    json_t *rows = json_object_get(doc, key);
    if (!json_is_array(rows) || (int)json_array_size(rows) != s->num_layers)
        return sq_fail(SQ_ERR_FORMAT, "%s: %s: must be an array of %d layers", path, key, s->num_layers);
    for (int l = 0; l < s->num_layers; l++) {
        json_t *row = json_array_get(rows, (size_t)l);
        if (!json_is_array(row) || (int)json_array_size(row) != s->num_kv_heads)
            return sq_fail(SQ_ERR_FORMAT, "%s: %s[%d]: must be an array of %d kv heads", path, key, l,
                           s->num_kv_heads);
        for (int h = 0; h < s->num_kv_heads; h++) {
            json_t *x = json_array_get(row, (size_t)h);
            double v = json_number_value(x);
            if (!json_is_number(x) || !(v > 0.0) || v > FLT_MAX)
                return sq_fail(SQ_ERR_FORMAT, "%s: %s[%d][%d]: must be a positive finite number", path, key, l, h);
            scale[(size_t)l * s->num_kv_heads + h] = (float)v;
        }
    }
    return SQ_OK;
}

static sq_status parse_file(sq_kv_scales *s, const char *path, json_t *doc, const sq_model_config *cfg)
{
    const char *format = json_string_value(json_object_get(doc, "format"));
    if (!json_is_object(doc) || !format || strcmp(format, FILE_FORMAT) != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: format: must be \"%s\"", path, FILE_FORMAT);
    static const char *const keys[] = {"format", "dtype", "strategy", "num_layers", "num_kv_heads", "k_scale",
                                       "v_scale", NULL};
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value) {
        int known = 0;
        for (int k = 0; keys[k]; k++)
            known = known || strcmp(key, keys[k]) == 0;
        if (!known)
            return sq_fail(SQ_ERR_FORMAT, "%s: %s: unknown key", path, key);
    }
    kn_kv_format fmt;
    bool per_head;
    char what[64];
    snprintf(what, sizeof what, "%s: dtype", path);
    if (sq_kv_format_parse(json_string_value(json_object_get(doc, "dtype")), what, &fmt) != SQ_OK)
        return sq_fail(SQ_ERR_FORMAT, "%s", sq_last_error());
    snprintf(what, sizeof what, "%s: strategy", path);
    SQ_TRY(parse_strategy(json_string_value(json_object_get(doc, "strategy")), what, &per_head));
    json_t *layers = json_object_get(doc, "num_layers"), *heads = json_object_get(doc, "num_kv_heads");
    if (!json_is_integer(layers) || !json_is_integer(heads))
        return sq_fail(SQ_ERR_FORMAT, "%s: num_layers and num_kv_heads: must be integers", path);
    SQ_TRY(check_counts(path, (int)json_integer_value(layers), (int)json_integer_value(heads), cfg));
    SQ_TRY(scales_alloc(s, cfg->num_layers, cfg->num_kv_heads, fmt, per_head));
    sq_status st = parse_rows(path, doc, "k_scale", s, s->k_scale);
    if (st == SQ_OK)
        st = parse_rows(path, doc, "v_scale", s, s->v_scale);
    if (st != SQ_OK)
        sq_kv_scales_free(s);
    return st;
}

sq_status sq_kv_scales_load_file(sq_kv_scales *s, const char *path, const sq_model_config *cfg)
{
    *s = (sq_kv_scales){0};
    json_error_t err;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        return sq_fail(SQ_ERR_FORMAT, "%s:%d:%d: cannot read the KV scales: %s", path, err.line, err.column, err.text);
    sq_status st = parse_file(s, path, doc, cfg);
    json_decref(doc);
    return st;
}

/* One scale tensor per layer: [H, 1, 1] or [1] floats, read as fp32. */
static sq_status read_layer_scales(const sq_checkpoint *ckpt, const char *which, sq_kv_scales *s, float *scale)
{
    const int H = s->num_kv_heads;
    for (int l = 0; l < s->num_layers; l++) {
        char name[96];
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", l, which);
        float *row = scale + (size_t)l * H;
        SQ_TRY(sq_checkpoint_read_f32(ckpt, name, row, s->per_head ? (size_t)H : 1));
        for (int h = 0; h < H; h++) {
            if (!s->per_head)
                row[h] = row[0];
            if (!(row[h] > 0.0f) || row[h] > FLT_MAX)
                return sq_fail(SQ_ERR_FORMAT, "%s: %s: scale %g is not a positive finite number",
                               sq_checkpoint_dir(ckpt), name, (double)row[h]);
        }
    }
    return SQ_OK;
}

sq_status sq_kv_scales_load_model(sq_kv_scales *s, const char *config_dir, const sq_checkpoint *ckpt,
                                  const sq_model_config *cfg)
{
    *s = (sq_kv_scales){0};
    char *path = sq_path_join(config_dir, "config.json");
    if (!path)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    json_error_t err;
    json_t *config = json_load_file(path, 0, &err);
    json_t *scheme = json_object_get(json_object_get(config, "quantization_config"), "kv_cache_scheme");
    sq_status st = SQ_OK;
    if (!config)
        st = sq_fail(SQ_ERR_FORMAT, "%s:%d:%d: %s", path, err.line, err.column, err.text);
    else if (!json_is_object(scheme))
        st = sq_fail(SQ_ERR_NOT_FOUND, "%s: quantization_config.kv_cache_scheme: absent (the model has no KV scales; "
                     "a kv_cache step writes them)", path);
    const char *type = json_string_value(json_object_get(scheme, "type"));
    json_t *bits = json_object_get(scheme, "num_bits");
    bool per_head = false;
    if (st == SQ_OK && (!type || (strcmp(type, "float") != 0 && strcmp(type, "int") != 0) ||
                        json_integer_value(bits) != 8 || !json_is_true(json_object_get(scheme, "symmetric"))))
        st = sq_fail(SQ_ERR_UNSUPPORTED, "%s: quantization_config.kv_cache_scheme: only 8-bit symmetric \"float\" "
                     "(fp8 e4m3) or \"int\" scales are read", path);
    if (st == SQ_OK) {
        char what[512];
        snprintf(what, sizeof what, "%s: quantization_config.kv_cache_scheme.strategy", path);
        st = parse_strategy(json_string_value(json_object_get(scheme, "strategy")), what, &per_head);
    }
    if (st == SQ_OK)
        st = scales_alloc(s, cfg->num_layers, cfg->num_kv_heads, strcmp(type, "float") == 0 ? KN_KV_FP8 : KN_KV_INT8,
                          per_head);
    if (st == SQ_OK)
        st = read_layer_scales(ckpt, "k_scale", s, s->k_scale);
    if (st == SQ_OK)
        st = read_layer_scales(ckpt, "v_scale", s, s->v_scale);
    if (st != SQ_OK)
        sq_kv_scales_free(s);
    json_decref(config);
    free(path);
    return st;
}
