/* config.c: parse a Hugging Face config.json into sq_model_config, with the defaults
 * transformers applies for Llama, Mistral and Qwen2, and compute RoPE inverse frequencies
 * (plain, "linear" and Llama 3.1 "llama3" scaling as transformers' rope utilities do). */
#include "model/config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/fileio.h"
#include "model/geometry.h"

static const struct {
    const char *architecture;
    const char *model_type;
} supported[] = {
    {"LlamaForCausalLM", "llama"},
    {"MistralForCausalLM", "mistral"},
    {"Qwen2ForCausalLM", "qwen2"},
};
#define N_SUPPORTED ((int)(sizeof supported / sizeof supported[0]))

/* A present, non-null field, or NULL. */
static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

static sq_status get_int(json_t *obj, const char *origin, const char *key, bool required, int fallback,
                         int min, int *out)
{
    json_t *v = field(obj, key);
    if (!v) {
        if (required)
            return sq_fail(SQ_ERR_FORMAT, "%s: missing required field \"%s\"", origin, key);
        *out = fallback;
        return SQ_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > 1 << 30)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be an integer >= %d", origin, key, min);
    *out = (int)json_integer_value(v);
    return SQ_OK;
}

static sq_status get_number(json_t *obj, const char *origin, const char *key, bool required, double fallback,
                            double *out)
{
    json_t *v = field(obj, key);
    if (!v) {
        if (required)
            return sq_fail(SQ_ERR_FORMAT, "%s: missing required field \"%s\"", origin, key);
        *out = fallback;
        return SQ_OK;
    }
    /* the values are kept as floats: a larger one would become infinity */
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !(json_number_value(v) <= FLT_MAX))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be a positive number no larger than %g", origin, key,
                       (double)FLT_MAX);
    *out = json_number_value(v);
    return SQ_OK;
}

static sq_status get_bool(json_t *obj, const char *origin, const char *key, bool fallback, bool *out)
{
    json_t *v = field(obj, key);
    if (!v) {
        *out = fallback;
        return SQ_OK;
    }
    if (!json_is_boolean(v))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be true or false", origin, key);
    *out = json_is_true(v);
    return SQ_OK;
}

/* A token id: absent/null -> -1, an integer, or (eos) a list whose first element is used. */
static sq_status get_token_id(json_t *obj, const char *origin, const char *key, int *out)
{
    json_t *v = field(obj, key);
    if (json_is_array(v) && json_array_size(v) > 0)
        v = json_array_get(v, 0);
    else if (json_is_array(v))
        v = NULL;
    if (!v) {
        *out = -1;
        return SQ_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 30)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be a token id or a list of them", origin, key);
    *out = (int)json_integer_value(v);
    return SQ_OK;
}

static sq_status parse_identity(sq_model_config *cfg, const char *origin, json_t *root)
{
    json_t *archs = field(root, "architectures");
    json_t *type = field(root, "model_type");
    if (archs && (!json_is_array(archs) || !json_is_string(json_array_get(archs, 0))))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"architectures\" must be a list of strings", origin);
    if (type && !json_is_string(type))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"model_type\" must be a string", origin);
    if (!archs && !type)
        return sq_fail(SQ_ERR_FORMAT, "%s: missing required field \"architectures\"", origin);
    const char *arch = archs ? json_string_value(json_array_get(archs, 0)) : NULL;
    const char *mtype = type ? json_string_value(type) : NULL;
    for (int i = 0; i < N_SUPPORTED; i++) {
        if (arch ? !strcmp(arch, supported[i].architecture) : !strcmp(mtype, supported[i].model_type)) {
            snprintf(cfg->architecture, sizeof cfg->architecture, "%s", supported[i].architecture);
            snprintf(cfg->model_type, sizeof cfg->model_type, "%s", mtype ? mtype : supported[i].model_type);
            return SQ_OK;
        }
    }
    return sq_fail(SQ_ERR_UNSUPPORTED,
                   "%s: architecture \"%s\" is not supported (LlamaForCausalLM, MistralForCausalLM, "
                   "Qwen2ForCausalLM)",
                   origin, arch ? arch : mtype);
}

static sq_status parse_rope_scaling(sq_model_config *cfg, const char *origin, json_t *root)
{
    cfg->rope_scaling = SQ_ROPE_SCALING_NONE;
    cfg->rope_factor = 1.0f;
    cfg->rope_low_freq_factor = 1.0f;
    cfg->rope_high_freq_factor = 1.0f;
    cfg->rope_original_max_position = cfg->max_position_embeddings;
    json_t *rs = field(root, "rope_scaling");
    if (!rs)
        return SQ_OK;
    if (!json_is_object(rs))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"rope_scaling\" must be an object or null", origin);
    json_t *type = field(rs, "rope_type");
    if (!type)
        type = field(rs, "type");
    if (!json_is_string(type))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"rope_scaling.rope_type\" must be a string", origin);
    const char *name = json_string_value(type);
    char where[160];
    double factor, low, high;
    if (!strcmp(name, "default"))
        return SQ_OK;
    snprintf(where, sizeof where, "%s: rope_scaling", origin);
    if (!strcmp(name, "linear")) {
        SQ_TRY(get_number(rs, where, "factor", true, 1.0, &factor));
        cfg->rope_scaling = SQ_ROPE_SCALING_LINEAR;
        cfg->rope_factor = (float)factor;
        return SQ_OK;
    }
    if (!strcmp(name, "llama3")) {
        SQ_TRY(get_number(rs, where, "factor", true, 1.0, &factor));
        SQ_TRY(get_number(rs, where, "low_freq_factor", true, 1.0, &low));
        SQ_TRY(get_number(rs, where, "high_freq_factor", true, 1.0, &high));
        SQ_TRY(get_int(rs, where, "original_max_position_embeddings", true, 0, 1,
                       &cfg->rope_original_max_position));
        if (!((float)high > (float)low))
            return sq_fail(SQ_ERR_FORMAT, "%s: rope_scaling: high_freq_factor must exceed low_freq_factor",
                           origin);
        cfg->rope_scaling = SQ_ROPE_SCALING_LLAMA3;
        cfg->rope_factor = (float)factor;
        cfg->rope_low_freq_factor = (float)low;
        cfg->rope_high_freq_factor = (float)high;
        return SQ_OK;
    }
    return sq_fail(SQ_ERR_UNSUPPORTED, "%s: rope_scaling type \"%s\" is not supported (linear, llama3)", origin,
                   name);
}

static sq_status parse_root(sq_model_config *cfg, const char *origin, json_t *root)
{
    SQ_TRY(parse_identity(cfg, origin, root));
    SQ_TRY(get_int(root, origin, "hidden_size", true, 0, 1, &cfg->hidden_size));
    SQ_TRY(get_int(root, origin, "intermediate_size", true, 0, 1, &cfg->intermediate_size));
    SQ_TRY(get_int(root, origin, "num_hidden_layers", true, 0, 1, &cfg->num_layers));
    SQ_TRY(get_int(root, origin, "num_attention_heads", true, 0, 1, &cfg->num_heads));
    SQ_TRY(get_int(root, origin, "vocab_size", true, 0, 1, &cfg->vocab_size));
    SQ_TRY(get_int(root, origin, "num_key_value_heads", false, cfg->num_heads, 1, &cfg->num_kv_heads));
    if (cfg->num_heads % cfg->num_kv_heads != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"num_key_value_heads\" (%d) must divide num_attention_heads (%d)",
                       origin, cfg->num_kv_heads, cfg->num_heads);
    if (!field(root, "head_dim") && cfg->hidden_size % cfg->num_heads != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"hidden_size\" (%d) is not a multiple of num_attention_heads (%d)",
                       origin, cfg->hidden_size, cfg->num_heads);
    SQ_TRY(get_int(root, origin, "head_dim", false, cfg->hidden_size / cfg->num_heads, 2, &cfg->head_dim));
    if (cfg->head_dim % 2 != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"head_dim\" (%d) must be even for rotary embeddings", origin,
                       cfg->head_dim);
    SQ_TRY(get_int(root, origin, "max_position_embeddings", false, 2048, 1, &cfg->max_position_embeddings));
    SQ_TRY(sq_model_geometry_check(cfg, origin));

    double eps, theta;
    SQ_TRY(get_number(root, origin, "rms_norm_eps", false, 1e-6, &eps));
    SQ_TRY(get_number(root, origin, "rope_theta", false, 10000.0, &theta));
    if (!(eps < 1.0))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"rms_norm_eps\" must be below 1, got %g", origin, eps);
    if (!(theta > 1.0))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"rope_theta\" must be above 1, got %g", origin, theta);
    cfg->rms_norm_eps = (float)eps;
    cfg->rope_theta = (float)theta;
    SQ_TRY(parse_rope_scaling(cfg, origin, root));

    SQ_TRY(get_bool(root, origin, "tie_word_embeddings", false, &cfg->tie_word_embeddings));
    bool flag;
    SQ_TRY(get_bool(root, origin, "attention_bias", false, &flag));
    bool qwen2 = !strcmp(cfg->architecture, "Qwen2ForCausalLM");
    cfg->attention_bias = qwen2 || flag;
    cfg->o_proj_bias = !qwen2 && flag;
    SQ_TRY(get_bool(root, origin, "mlp_bias", false, &cfg->mlp_bias));
    SQ_TRY(get_token_id(root, origin, "bos_token_id", &cfg->bos_token_id));
    SQ_TRY(get_token_id(root, origin, "eos_token_id", &cfg->eos_token_id));

    json_t *dtype = field(root, "torch_dtype");
    if (!dtype)
        dtype = field(root, "dtype");
    cfg->torch_dtype = SQ_DTYPE_F32;
    if (dtype) {
        if (!json_is_string(dtype))
            return sq_fail(SQ_ERR_FORMAT, "%s: field \"torch_dtype\" must be a string", origin);
        if (sq_dtype_from_torch_name(json_string_value(dtype), &cfg->torch_dtype) != SQ_OK)
            return sq_fail(SQ_ERR_FORMAT, "%s: field \"torch_dtype\": unknown dtype \"%s\"", origin,
                           json_string_value(dtype));
    }
    return SQ_OK;
}

sq_status sq_model_config_parse(sq_model_config *cfg, const char *origin, const char *text, size_t len)
{
    memset(cfg, 0, sizeof *cfg);
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON (line %d, column %d): %s", origin, err.line, err.column,
                       err.text);
    sq_status st = json_is_object(root) ? parse_root(cfg, origin, root)
                                        : sq_fail(SQ_ERR_FORMAT, "%s: must be a JSON object", origin);
    json_decref(root);
    return st;
}

sq_status sq_model_config_load(sq_model_config *cfg, const char *path)
{
    char *text;
    size_t len;
    SQ_TRY(sq_read_file(path, &text, &len));
    sq_status st = sq_model_config_parse(cfg, path, text, len);
    free(text);
    return st;
}

void sq_model_rope_inv_freq(const sq_model_config *cfg, float *inv_freq)
{
    int half = cfg->head_dim / 2;
    double factor = cfg->rope_factor > 0 ? cfg->rope_factor : 1.0;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)cfg->rope_theta, (2.0 * i) / cfg->head_dim);
        if (cfg->rope_scaling == SQ_ROPE_SCALING_LINEAR) {
            f /= factor;
        } else if (cfg->rope_scaling == SQ_ROPE_SCALING_LLAMA3) {
            double original = cfg->rope_original_max_position;
            double low = cfg->rope_low_freq_factor, high = cfg->rope_high_freq_factor;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > original / low) {
                f /= factor;
            } else if (wavelen >= original / high) {
                double smooth = (original / wavelen - low) / (high - low);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}
