/* config.c: parse a Hugging Face config.json into sq_model_config, with the defaults
 * transformers applies for Llama, Mistral and Qwen2 (the RoPE settings: config_rope.c). */
#include "model/config.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/fileio.h"
#include "model/config_rope.h"
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

/* The checkpoint's dtype: "torch_dtype" (transformers < 5) or "dtype" (transformers 5); both
 * present, they must agree. Neither: float32, transformers' default. */
static sq_status parse_dtype(sq_model_config *cfg, const char *origin, json_t *root)
{
    static const char *const keys[] = {"torch_dtype", "dtype"};
    sq_dtype found[2];
    cfg->torch_dtype = SQ_DTYPE_F32;
    for (int k = 0; k < 2; k++) {
        json_t *v = field(root, keys[k]);
        found[k] = SQ_DTYPE_COUNT;
        if (!v)
            continue;
        if (!json_is_string(v))
            return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be a string", origin, keys[k]);
        if (sq_dtype_from_torch_name(json_string_value(v), &found[k]) != SQ_OK)
            return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\": unknown dtype \"%s\"", origin, keys[k],
                           json_string_value(v));
        cfg->torch_dtype = found[k];
    }
    if (found[0] != SQ_DTYPE_COUNT && found[1] != SQ_DTYPE_COUNT && found[0] != found[1])
        return sq_fail(SQ_ERR_FORMAT, "%s: fields \"torch_dtype\" (%s) and \"dtype\" (%s) disagree", origin,
                       json_string_value(field(root, "torch_dtype")), json_string_value(field(root, "dtype")));
    return SQ_OK;
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

    double eps = 0;
    SQ_TRY(get_number(root, origin, "rms_norm_eps", false, 1e-6, &eps));
    if (!(eps < 1.0))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"rms_norm_eps\" must be below 1, got %g", origin, eps);
    cfg->rms_norm_eps = (float)eps;
    SQ_TRY(sq_model_config_parse_rope(cfg, origin, root));

    SQ_TRY(get_bool(root, origin, "tie_word_embeddings", false, &cfg->tie_word_embeddings));
    bool flag;
    SQ_TRY(get_bool(root, origin, "attention_bias", false, &flag));
    bool qwen2 = !strcmp(cfg->architecture, "Qwen2ForCausalLM");
    cfg->attention_bias = qwen2 || flag;
    cfg->o_proj_bias = !qwen2 && flag;
    SQ_TRY(get_bool(root, origin, "mlp_bias", false, &cfg->mlp_bias));
    SQ_TRY(get_token_id(root, origin, "bos_token_id", &cfg->bos_token_id));
    SQ_TRY(get_token_id(root, origin, "eos_token_id", &cfg->eos_token_id));

    return parse_dtype(cfg, origin, root);
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
