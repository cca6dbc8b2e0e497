/* config_rope.c: the RoPE settings of a config.json, from either layout transformers writes —
 * before 5: top-level "rope_theta" and "rope_scaling" ({"rope_type" or "type", "factor", ...});
 * from 5: "rope_parameters" ({"rope_theta", "rope_type", "factor", ...}) — and the inverse
 * frequencies they give (plain, "linear" and Llama 3.1 "llama3" scaling as transformers' rope
 * utilities compute them). A setting present in one layout is never replaced by a default;
 * present in both, the two must agree or the config is refused naming both fields. */
#include "model/config_rope.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

/* The scaling one layout gives: rope_scaling or rope_parameters. */
typedef struct {
    bool given;           /* the section names a rope type */
    char section[24];     /* "rope_scaling" or "rope_parameters" */
    char type_key[16];    /* "rope_type" or "type" */
    sq_rope_scaling_type type;
    double factor, low, high;
    int original;
} rope_scaling_read;

static const char *const scaling_names[] = {"default", "linear", "llama3"};

const char *sq_rope_scaling_name(sq_rope_scaling_type type) { return scaling_names[type]; }

/* A present, non-null member, or NULL. */
static json_t *member(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_null(v) ? NULL : v;
}

/* The JSON path of a key: "section.key", or "key" at the top level. */
static void json_path(char *out, size_t size, const char *section, const char *key)
{
    snprintf(out, size, "%s%s%s", section ? section : "", section ? "." : "", key);
}

/* A positive number that fits a float (the settings are kept as floats: a larger one would be
 * infinity); *present false (and *out untouched) when absent and not required. */
static sq_status positive_number(json_t *obj, const char *origin, const char *section, const char *key,
                                 bool required, bool *present, double *out)
{
    char path[64];
    json_path(path, sizeof path, section, key);
    json_t *v = member(obj, key);
    *present = v != NULL;
    if (!v)
        return required ? sq_fail(SQ_ERR_FORMAT, "%s: missing required field \"%s\"", origin, path) : SQ_OK;
    if (!json_is_number(v) || !(json_number_value(v) > 0) || !(json_number_value(v) <= FLT_MAX))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be a positive number no larger than %g", origin, path,
                       (double)FLT_MAX);
    *out = json_number_value(v);
    return SQ_OK;
}

static sq_status required_number(json_t *obj, const char *origin, const char *section, const char *key, double *out)
{
    bool present;
    return positive_number(obj, origin, section, key, true, &present, out);
}

static sq_status parse_type(json_t *obj, const char *origin, rope_scaling_read *r, const char **name)
{
    const char *key = member(obj, "rope_type") ? "rope_type" : "type";
    json_t *type = member(obj, key);
    *name = NULL;
    if (!type)
        return SQ_OK;
    snprintf(r->type_key, sizeof r->type_key, "%s", key);
    if (!json_is_string(type))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s.%s\" must be a string", origin, r->section, key);
    *name = json_string_value(type);
    return SQ_OK;
}

/* One layout's scaling. rope_scaling must name its type; rope_parameters may give only
 * rope_theta (then r->given stays false). */
static sq_status read_scaling(json_t *root, const char *origin, const char *section, int max_position,
                              rope_scaling_read *r)
{
    *r = (rope_scaling_read){.type = SQ_ROPE_SCALING_NONE, .factor = 1, .low = 1, .high = 1,
                             .original = max_position};
    snprintf(r->section, sizeof r->section, "%s", section);
    json_t *obj = member(root, section);
    if (!obj)
        return SQ_OK;
    if (!json_is_object(obj))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be an object or null", origin, section);
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        if (json_is_object(value))
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: field \"%s.%s\": RoPE parameters per attention type are not "
                           "supported (one set for every layer)", origin, section, key);
    }
    const char *name;
    SQ_TRY(parse_type(obj, origin, r, &name));
    if (!name) {
        if (!strcmp(section, "rope_scaling"))
            return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s.rope_type\" must be a string", origin, section);
        return SQ_OK;
    }
    r->given = true;
    if (!strcmp(name, "default"))
        return SQ_OK;
    if (!strcmp(name, "linear")) {
        r->type = SQ_ROPE_SCALING_LINEAR;
        return required_number(obj, origin, section, "factor", &r->factor);
    }
    if (strcmp(name, "llama3"))
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: field \"%s.%s\": rope type \"%s\" is not supported (default, linear, "
                       "llama3)", origin, section, r->type_key, name);
    r->type = SQ_ROPE_SCALING_LLAMA3;
    double original;
    SQ_TRY(required_number(obj, origin, section, "factor", &r->factor));
    SQ_TRY(required_number(obj, origin, section, "low_freq_factor", &r->low));
    SQ_TRY(required_number(obj, origin, section, "high_freq_factor", &r->high));
    SQ_TRY(required_number(obj, origin, section, "original_max_position_embeddings", &original));
    if (original != floor(original) || original > 1 << 30)
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s.original_max_position_embeddings\" must be an integer", origin,
                       section);
    r->original = (int)original;
    if (!((float)r->high > (float)r->low)) /* as floats: equal ones would divide by zero in the smoothing */
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s.high_freq_factor\" must exceed low_freq_factor", origin,
                       section);
    return SQ_OK;
}

static sq_status disagree(const char *origin, const char *what_a, const char *what_b, double a, double b)
{
    return sq_fail(SQ_ERR_FORMAT, "%s: fields \"%s\" (%.17g) and \"%s\" (%.17g) disagree; give one or make them equal",
                   origin, what_a, a, what_b, b);
}

/* Both layouts name a type: every setting they give must be the same. */
static sq_status check_agree(const char *origin, const rope_scaling_read *a, const rope_scaling_read *b)
{
    char pa[64], pb[64];
    if (a->type != b->type) {
        json_path(pa, sizeof pa, a->section, a->type_key);
        json_path(pb, sizeof pb, b->section, b->type_key);
        return sq_fail(SQ_ERR_FORMAT, "%s: fields \"%s\" (\"%s\") and \"%s\" (\"%s\") disagree; give one or make them "
                       "equal", origin, pa, sq_rope_scaling_name(a->type), pb, sq_rope_scaling_name(b->type));
    }
    const struct {
        const char *key;
        double va, vb;
    } values[] = {{"factor", a->factor, b->factor},
                  {"low_freq_factor", a->low, b->low},
                  {"high_freq_factor", a->high, b->high},
                  {"original_max_position_embeddings", a->original, b->original}};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i].va != values[i].vb) {
            json_path(pa, sizeof pa, a->section, values[i].key);
            json_path(pb, sizeof pb, b->section, values[i].key);
            return disagree(origin, pa, pb, values[i].va, values[i].vb);
        }
    return SQ_OK;
}

static sq_status parse_theta(sq_model_config *cfg, const char *origin, json_t *root)
{
    json_t *params = member(root, "rope_parameters");
    double top = 0, inner = 0;
    bool has_top, has_inner = false;
    SQ_TRY(positive_number(root, origin, NULL, "rope_theta", false, &has_top, &top));
    if (json_is_object(params))
        SQ_TRY(positive_number(params, origin, "rope_parameters", "rope_theta", false, &has_inner, &inner));
    if (has_top && has_inner && top != inner)
        return disagree(origin, "rope_theta", "rope_parameters.rope_theta", top, inner);
    double theta = has_inner ? inner : has_top ? top : 10000.0;
    if (!(theta > 1.0))
        return sq_fail(SQ_ERR_FORMAT, "%s: field \"%s\" must be above 1, got %g", origin,
                       has_inner ? "rope_parameters.rope_theta" : "rope_theta", theta);
    cfg->rope_theta = (float)theta;
    snprintf(cfg->rope_theta_from, sizeof cfg->rope_theta_from, "%s",
             has_inner ? "rope_parameters.rope_theta" : has_top ? "rope_theta" : "");
    return SQ_OK;
}

sq_status sq_model_config_parse_rope(sq_model_config *cfg, const char *origin, json_t *root)
{
    rope_scaling_read legacy, params;
    SQ_TRY(read_scaling(root, origin, "rope_scaling", cfg->max_position_embeddings, &legacy));
    SQ_TRY(read_scaling(root, origin, "rope_parameters", cfg->max_position_embeddings, &params));
    SQ_TRY(parse_theta(cfg, origin, root));
    if (legacy.given && params.given)
        SQ_TRY(check_agree(origin, &legacy, &params));
    const rope_scaling_read *r = params.given ? &params : &legacy;
    cfg->rope_scaling = r->type;
    cfg->rope_factor = (float)r->factor;
    cfg->rope_low_freq_factor = (float)r->low;
    cfg->rope_high_freq_factor = (float)r->high;
    cfg->rope_original_max_position = r->original;
    cfg->rope_type_from[0] = '\0';
    if (r->given)
        snprintf(cfg->rope_type_from, sizeof cfg->rope_type_from, "%s.%s", r->section, r->type_key);
    return SQ_OK;
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
