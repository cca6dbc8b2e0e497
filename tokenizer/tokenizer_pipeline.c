/* tokenizer_pipeline.c: tokenizer.json's normalizer, pre_tokenizer, decoder and
 * post_processor sections -> the step lists in sq_tokenizer. Sequences are
 * flattened; each step is type-checked, regexes compiled (PCRE2, UTF-8 + UCP),
 * and any other component type is SQ_ERR_UNSUPPORTED naming its JSON path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_json.h"

static sq_status load_pattern(const sq_tk_loader *L, json_t *obj, const char *path, pcre2_code **re)
{
    char p[256];
    snprintf(p, sizeof p, "%s.pattern", path);
    json_t *pat = json_object_get(obj, "pattern");
    json_t *str = json_object_get(pat, "String"), *rx = json_object_get(pat, "Regex");
    char where[600];
    snprintf(where, sizeof where, "%s: %s.%s", L->file, p, json_is_string(str) ? "String" : "Regex");
    if (json_is_string(str))
        return sq_tk_compile(where, json_string_value(str), json_string_length(str), true, re);
    if (json_is_string(rx))
        return sq_tk_compile(where, json_string_value(rx), json_string_length(rx), false, re);
    return sq_tkj_bad(L, p, "expected {\"String\": ...} or {\"Regex\": ...}");
}

static sq_status grow(void **arr, size_t n, size_t size)
{
    void *p = realloc(*arr, (n + 1) * size);
    if (!p)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: pipeline of %zu steps", n + 1);
    *arr = p;
    memset((char *)p + n * size, 0, size);
    return SQ_OK;
}

/* A stage loader: the normalizer, pre-tokenizer, decoder or post-processor at obj. */
typedef sq_status (*stage_loader)(const sq_tk_loader *L, json_t *obj, const char *path);

/* How every stage loader starts. A missing or null stage is no stage, and a "Sequence"
 * is loaded element by element (obj[key][i] with load_one, in order): both leave *type
 * NULL, with nothing more to do. Otherwise *type is the stage's "type". */
static sq_status begin_stage(const sq_tk_loader *L, json_t *obj, const char *path, const char *key,
                             stage_loader load_one, const char **type)
{
    *type = NULL;
    if (!obj || json_is_null(obj))
        return SQ_OK;
    const char *stage_type;
    SQ_TRY(sq_tkj_type(L, obj, path, &stage_type));
    if (strcmp(stage_type, "Sequence")) {
        *type = stage_type;
        return SQ_OK;
    }
    char p[256];
    json_t *list = json_object_get(obj, key);
    if (!json_is_array(list)) {
        snprintf(p, sizeof p, "%s.%s", path, key);
        return sq_tkj_bad(L, p, "not an array");
    }
    size_t i;
    json_t *item;
    json_array_foreach(list, i, item)
    {
        snprintf(p, sizeof p, "%s.%s[%zu]", path, key, i);
        SQ_TRY(load_one(L, item, p));
    }
    return SQ_OK;
}

sq_status sq_tk_load_normalizer(const sq_tk_loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    const char *type;
    SQ_TRY(begin_stage(L, obj, path, "normalizers", sq_tk_load_normalizer, &type));
    if (!type)
        return SQ_OK;
    char p[256];
    SQ_TRY(grow((void **)&t->norms, t->n_norms, sizeof *t->norms));
    sq_tk_norm *nm = &t->norms[t->n_norms++];
    const char *s;
    size_t len;
    if (!strcmp(type, "Prepend")) {
        nm->kind = SQ_NORM_PREPEND;
        SQ_TRY(sq_tkj_string(L, obj, path, "prepend", true, &s, &len));
        nm->pattern = sq_tk_dup(s, len);
        nm->pattern_len = len;
        return nm->pattern ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    if (!strcmp(type, "Replace")) {
        SQ_TRY(sq_tkj_string(L, obj, path, "content", true, &s, &len));
        nm->content = sq_tk_dup(s, len);
        nm->content_len = len;
        if (!nm->content)
            return sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
        json_t *str = json_object_get(json_object_get(obj, "pattern"), "String");
        if (json_is_string(str)) {
            nm->kind = SQ_NORM_REPLACE;
            nm->pattern_len = json_string_length(str);
            nm->pattern = sq_tk_dup(json_string_value(str), nm->pattern_len);
            return nm->pattern ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
        }
        nm->kind = SQ_NORM_REPLACE_REGEX;
        return load_pattern(L, obj, path, &nm->re);
    }
    /* Unicode normal forms are taken as identity: exact for text already in that form. */
    if (!strcmp(type, "NFC") || !strcmp(type, "NFKC")) {
        nm->kind = SQ_NORM_IDENTITY;
        return SQ_OK;
    }
    snprintf(p, sizeof p, "%s.type", path);
    return sq_tkj_unsupported(L, p, type);
}

static sq_status load_prepend_scheme(const sq_tk_loader *L, json_t *obj, const char *path,
                                     sq_tk_prepend_scheme *out)
{
    const char *s;
    size_t len;
    SQ_TRY(sq_tkj_string(L, obj, path, "prepend_scheme", false, &s, &len));
    if (!s) {
        bool add = true;
        SQ_TRY(sq_tkj_bool(L, obj, path, "add_prefix_space", &add));
        *out = add ? SQ_PREPEND_ALWAYS : SQ_PREPEND_NEVER;
        return SQ_OK;
    }
    if (!strcmp(s, "first"))
        *out = SQ_PREPEND_FIRST;
    else if (!strcmp(s, "always"))
        *out = SQ_PREPEND_ALWAYS;
    else if (!strcmp(s, "never"))
        *out = SQ_PREPEND_NEVER;
    else {
        char p[256];
        snprintf(p, sizeof p, "%s.prepend_scheme", path);
        return sq_tkj_bad(L, p, "expected first, always or never");
    }
    return SQ_OK;
}

static sq_status load_replacement(const sq_tk_loader *L, json_t *obj, const char *path, char out[5])
{
    const char *s;
    size_t len;
    SQ_TRY(sq_tkj_string(L, obj, path, "replacement", true, &s, &len));
    if (len == 0 || len > 4 || sq_tk_utf8_seq_len((const unsigned char *)s, len) != len) {
        char p[256];
        snprintf(p, sizeof p, "%s.replacement", path);
        return sq_tkj_bad(L, p, "not a single character");
    }
    memcpy(out, s, len);
    out[len] = 0;
    return SQ_OK;
}

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

sq_status sq_tk_load_pre_tokenizer(const sq_tk_loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    const char *type;
    SQ_TRY(begin_stage(L, obj, path, "pretokenizers", sq_tk_load_pre_tokenizer, &type));
    if (!type)
        return SQ_OK;
    char p[256];
    SQ_TRY(grow((void **)&t->pres, t->n_pres, sizeof *t->pres));
    sq_tk_pre *pre = &t->pres[t->n_pres++];
    if (!strcmp(type, "ByteLevel")) {
        pre->kind = SQ_PRE_BYTELEVEL;
        bool use_regex = true;
        pre->add_prefix_space = true;
        SQ_TRY(sq_tkj_bool(L, obj, path, "add_prefix_space", &pre->add_prefix_space));
        SQ_TRY(sq_tkj_bool(L, obj, path, "use_regex", &use_regex));
        if (use_regex)
            SQ_TRY(sq_tk_compile("ByteLevel", GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, &pre->re));
        return SQ_OK;
    }
    if (!strcmp(type, "Split")) {
        pre->kind = SQ_PRE_SPLIT;
        SQ_TRY(load_pattern(L, obj, path, &pre->re));
        SQ_TRY(sq_tkj_bool(L, obj, path, "invert", &pre->invert));
        const char *b;
        size_t len;
        SQ_TRY(sq_tkj_string(L, obj, path, "behavior", true, &b, &len));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        for (int k = 0; k < 5; k++)
            if (!strcmp(b, names[k])) {
                pre->behavior = (sq_tk_split_behavior)k;
                return SQ_OK;
            }
        snprintf(p, sizeof p, "%s.behavior", path);
        return sq_tkj_bad(L, p, "unknown split behavior");
    }
    if (!strcmp(type, "Metaspace")) {
        pre->kind = SQ_PRE_METASPACE;
        pre->split = true;
        SQ_TRY(load_replacement(L, obj, path, pre->replacement));
        SQ_TRY(load_prepend_scheme(L, obj, path, &pre->prepend));
        return sq_tkj_bool(L, obj, path, "split", &pre->split);
    }
    if (!strcmp(type, "Digits")) {
        pre->kind = SQ_PRE_DIGITS;
        bool individual = false;
        SQ_TRY(sq_tkj_bool(L, obj, path, "individual_digits", &individual));
        pre->behavior = individual ? SQ_SPLIT_ISOLATED : SQ_SPLIT_CONTIGUOUS;
        return sq_tk_compile("Digits", "\\p{N}", 5, false, &pre->re);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return sq_tkj_unsupported(L, p, type);
}

sq_status sq_tk_load_decoder(const sq_tk_loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    if (obj && !json_is_null(obj))
        t->has_decoder = true; /* an empty Sequence included */
    const char *type;
    SQ_TRY(begin_stage(L, obj, path, "decoders", sq_tk_load_decoder, &type));
    if (!type)
        return SQ_OK;
    char p[256];
    SQ_TRY(grow((void **)&t->decs, t->n_decs, sizeof *t->decs));
    sq_tk_dec *d = &t->decs[t->n_decs++];
    const char *s;
    size_t len;
    if (!strcmp(type, "ByteLevel")) {
        d->kind = SQ_DEC_BYTELEVEL;
        return SQ_OK;
    }
    if (!strcmp(type, "ByteFallback")) {
        d->kind = SQ_DEC_BYTEFALLBACK;
        return SQ_OK;
    }
    if (!strcmp(type, "Fuse")) {
        d->kind = SQ_DEC_FUSE;
        return SQ_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        d->kind = SQ_DEC_METASPACE;
        SQ_TRY(load_replacement(L, obj, path, d->replacement));
        sq_tk_prepend_scheme scheme;
        SQ_TRY(load_prepend_scheme(L, obj, path, &scheme));
        d->strip_first = scheme != SQ_PREPEND_NEVER;
        return SQ_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->kind = SQ_DEC_REPLACE;
        json_t *str = json_object_get(json_object_get(obj, "pattern"), "String");
        if (!json_is_string(str)) {
            snprintf(p, sizeof p, "%s.pattern", path);
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: %s: only {\"String\": ...} patterns are supported", L->file, p);
        }
        SQ_TRY(sq_tkj_string(L, obj, path, "content", true, &s, &len));
        d->content = sq_tk_dup(s, len);
        d->content_len = len;
        d->pattern_len = json_string_length(str);
        d->pattern = sq_tk_dup(json_string_value(str), d->pattern_len);
        return d->content && d->pattern ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    if (!strcmp(type, "Strip")) {
        d->kind = SQ_DEC_STRIP;
        SQ_TRY(sq_tkj_string(L, obj, path, "content", true, &s, &len));
        json_t *start = json_object_get(obj, "start"), *stop = json_object_get(obj, "stop");
        if (!json_is_integer(start) || !json_is_integer(stop) || json_integer_value(start) < 0 ||
            json_integer_value(stop) < 0 || json_integer_value(start) > 1024 || json_integer_value(stop) > 1024) {
            snprintf(p, sizeof p, "%s.start/stop", path);
            return sq_tkj_bad(L, p, "not small non-negative integers");
        }
        d->start = (int)json_integer_value(start);
        d->stop = (int)json_integer_value(stop);
        d->content = sq_tk_dup(s, len);
        d->content_len = len;
        return d->content ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return sq_tkj_unsupported(L, p, type);
}

static sq_status push_ids(const sq_tk_loader *L, sq_tk_ids *dst, json_t *ids, const char *path)
{
    if (!json_is_array(ids))
        return sq_tkj_bad(L, path, "ids is not an array");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        char p[300];
        snprintf(p, sizeof p, "%s.ids[%zu]", path, i);
        int32_t id;
        SQ_TRY(sq_tkj_id(L, v, p, &id));
        if ((size_t)id >= L->t->vocab_size)
            return sq_tkj_bad(L, p, "id not in the vocab");
        SQ_TRY(sq_tk_ids_push(dst, id));
    }
    return SQ_OK;
}

static sq_status load_template(const sq_tk_loader *L, json_t *obj, const char *path)
{
    char p[256];
    json_t *single = json_object_get(obj, "single");
    json_t *specials = json_object_get(obj, "special_tokens");
    snprintf(p, sizeof p, "%s.single", path);
    if (!json_is_array(single))
        return sq_tkj_bad(L, p, "not an array");
    bool after = false;
    size_t i;
    json_t *item;
    json_array_foreach(single, i, item)
    {
        snprintf(p, sizeof p, "%s.single[%zu]", path, i);
        if (json_object_get(item, "Sequence")) {
            after = true;
            continue;
        }
        json_t *sp = json_object_get(item, "SpecialToken");
        const char *name;
        size_t len;
        SQ_TRY(sq_tkj_string(L, sp, p, "id", true, &name, &len));
        json_t *entry = json_object_get(specials, name);
        if (!entry) {
            char msg[160];
            snprintf(msg, sizeof msg, "special token \"%.60s\" missing from special_tokens", name);
            return sq_tkj_bad(L, p, msg);
        }
        snprintf(p, sizeof p, "%s.special_tokens[\"%.60s\"]", path, name);
        SQ_TRY(push_ids(L, after ? &L->t->suffix : &L->t->prefix, json_object_get(entry, "ids"), p));
    }
    return SQ_OK;
}

sq_status sq_tk_load_post_processor(const sq_tk_loader *L, json_t *obj, const char *path)
{
    const char *type;
    SQ_TRY(begin_stage(L, obj, path, "processors", sq_tk_load_post_processor, &type));
    if (!type)
        return SQ_OK;
    char p[256];
    if (!strcmp(type, "ByteLevel"))
        return SQ_OK; /* only adjusts offsets */
    if (!strcmp(type, "TemplateProcessing"))
        return load_template(L, obj, path);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(obj, "cls"), *sep = json_object_get(obj, "sep");
        int32_t cid, sid;
        snprintf(p, sizeof p, "%s.cls[1]", path);
        SQ_TRY(sq_tkj_id(L, json_array_get(cls, 1), p, &cid));
        snprintf(p, sizeof p, "%s.sep[1]", path);
        SQ_TRY(sq_tkj_id(L, json_array_get(sep, 1), p, &sid));
        if ((size_t)cid >= L->t->vocab_size || (size_t)sid >= L->t->vocab_size)
            return sq_tkj_bad(L, path, "cls/sep id not in the vocab");
        SQ_TRY(sq_tk_ids_push(&L->t->prefix, cid));
        return sq_tk_ids_push(&L->t->suffix, sid);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return sq_tkj_unsupported(L, p, type);
}

/* tokenizer_config.json: bos_token/eos_token as a string or {"content": ...}. */
