/* geometry.c: checked layer widths and the linears' shapes (see geometry.h). */
#include "model/geometry.h"

#include <stdint.h>

static sq_status check_width(const char *origin, const char *what, int64_t width)
{
    if (width < 1 || width > SQ_MODEL_MAX_WIDTH)
        return sq_fail(SQ_ERR_FORMAT, "%s: %s is %lld, outside 1..%d", origin, what, (long long)width,
                       SQ_MODEL_MAX_WIDTH);
    return SQ_OK;
}

sq_status sq_model_geometry_check(const sq_model_config *cfg, const char *origin)
{
    SQ_TRY(check_width(origin, "field \"hidden_size\"", cfg->hidden_size));
    SQ_TRY(check_width(origin, "field \"intermediate_size\"", cfg->intermediate_size));
    SQ_TRY(check_width(origin, "field \"vocab_size\"", cfg->vocab_size));
    SQ_TRY(check_width(origin, "num_attention_heads * head_dim", (int64_t)cfg->num_heads * cfg->head_dim));
    SQ_TRY(check_width(origin, "num_key_value_heads * head_dim", (int64_t)cfg->num_kv_heads * cfg->head_dim));
    if (cfg->num_layers < 1 || cfg->num_layers > SQ_MODEL_MAX_LAYERS)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"num_hidden_layers\" is %d, outside 1..%d", origin, cfg->num_layers,
                       SQ_MODEL_MAX_LAYERS);
    return SQ_OK;
}

void sq_linear_shape(const sq_model_config *cfg, sq_linear_id id, int *in_features, int *out_features)
{
    int hidden = cfg->hidden_size, inter = cfg->intermediate_size;
    int q_width = cfg->num_heads * cfg->head_dim, kv_width = cfg->num_kv_heads * cfg->head_dim;
    switch (id) {
    case SQ_LINEAR_Q: *in_features = hidden, *out_features = q_width; break;
    case SQ_LINEAR_K:
    case SQ_LINEAR_V: *in_features = hidden, *out_features = kv_width; break;
    case SQ_LINEAR_O: *in_features = q_width, *out_features = hidden; break;
    case SQ_LINEAR_GATE:
    case SQ_LINEAR_UP: *in_features = hidden, *out_features = inter; break;
    default: *in_features = inter, *out_features = hidden; break;
    }
}
