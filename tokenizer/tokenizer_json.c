/* tokenizer_json.c: checked reads of tokenizer.json fields (see tokenizer_json.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_json.h"

sq_status sq_tkj_bad(const sq_tk_loader *L, const char *path, const char *what)
{
    return sq_fail(SQ_ERR_FORMAT, "%s: %s: %s", L->file, path, what);
}

sq_status sq_tkj_unsupported(const sq_tk_loader *L, const char *path, const char *type)
{
    return sq_fail(SQ_ERR_UNSUPPORTED, "%s: %s: type \"%s\" is not supported", L->file, path, type);
}

char *sq_tk_dup(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

/* Optional boolean member: absent or null keeps *out; anything but a bool is an error. */
sq_status sq_tkj_bool(const sq_tk_loader *L, json_t *obj, const char *path, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return SQ_OK;
    if (!json_is_boolean(v)) {
        char p[256];
        snprintf(p, sizeof p, "%s.%s", path, key);
        return sq_tkj_bad(L, p, "not a boolean");
    }
    *out = json_is_true(v);
    return SQ_OK;
}

/* Required (or optional when !required) string member. */
sq_status sq_tkj_string(const sq_tk_loader *L, json_t *obj, const char *path, const char *key, bool required,
                        const char **s, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    char p[256];
    snprintf(p, sizeof p, "%s.%s", path, key);
    if (!v || json_is_null(v)) {
        *s = NULL;
        *len = 0;
        return required ? sq_tkj_bad(L, p, "missing") : SQ_OK;
    }
    if (!json_is_string(v))
        return sq_tkj_bad(L, p, "not a string");
    *s = json_string_value(v);
    *len = json_string_length(v);
    return SQ_OK;
}

sq_status sq_tkj_type(const sq_tk_loader *L, json_t *obj, const char *path, const char **type)
{
    if (!json_is_object(obj))
        return sq_tkj_bad(L, path, "not an object");
    size_t len;
    return sq_tkj_string(L, obj, path, "type", true, type, &len);
}

sq_status sq_tkj_id(const sq_tk_loader *L, json_t *v, const char *path, int32_t *id)
{
    if (!json_is_integer(v))
        return sq_tkj_bad(L, path, "id is not an integer");
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= (json_int_t)SQ_TK_MAX_VOCAB) {
        char msg[96];
        snprintf(msg, sizeof msg, "id %lld out of range [0, %u)", (long long)x, SQ_TK_MAX_VOCAB);
        return sq_tkj_bad(L, path, msg);
    }
    *id = (int32_t)x;
    return SQ_OK;
}

sq_status sq_tk_set_token(sq_tokenizer *t, int32_t id, const char *s, size_t len)
{
    char *copy = sq_tk_dup(s, len);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: token of %zu bytes", len);
    free(t->id_to_token[id]);
    t->id_to_token[id] = copy;
    t->token_len[id] = len;
    return SQ_OK;
}
