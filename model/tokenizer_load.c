/* tokenizer_load.c: tokenizer.json (and tokenizer_config.json) -> sq_tokenizer.
 *
 * Every field is type-checked and every id bounds-checked; a problem is an
 * error naming the file and the JSON path ("tokenizer.json: model.merges[17]:
 * not a pair"). Components outside the supported set are SQ_ERR_UNSUPPORTED. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "model/tokenizer_internal.h"

#define MAX_VOCAB (1u << 24)

typedef struct {
    const char *file;
    sq_tokenizer *t;
} loader;

static sq_status bad(const loader *L, const char *path, const char *what)
{
    return sq_fail(SQ_ERR_FORMAT, "%s: %s: %s", L->file, path, what);
}

static sq_status unsupported(const loader *L, const char *path, const char *type)
{
    return sq_fail(SQ_ERR_UNSUPPORTED, "%s: %s: type \"%s\" is not supported", L->file, path, type);
}

static char *dup_bytes(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

/* Optional boolean member: absent or null keeps *out; anything but a bool is an error. */
static sq_status get_bool(const loader *L, json_t *obj, const char *path, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return SQ_OK;
    if (!json_is_boolean(v)) {
        char p[256];
        snprintf(p, sizeof p, "%s.%s", path, key);
        return bad(L, p, "not a boolean");
    }
    *out = json_is_true(v);
    return SQ_OK;
}

/* Required (or optional when !required) string member. */
static sq_status get_string(const loader *L, json_t *obj, const char *path, const char *key, bool required,
                            const char **s, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    char p[256];
    snprintf(p, sizeof p, "%s.%s", path, key);
    if (!v || json_is_null(v)) {
        *s = NULL;
        *len = 0;
        return required ? bad(L, p, "missing") : SQ_OK;
    }
    if (!json_is_string(v))
        return bad(L, p, "not a string");
    *s = json_string_value(v);
    *len = json_string_length(v);
    return SQ_OK;
}

static sq_status get_type(const loader *L, json_t *obj, const char *path, const char **type)
{
    if (!json_is_object(obj))
        return bad(L, path, "not an object");
    size_t len;
    return get_string(L, obj, path, "type", true, type, &len);
}

static sq_status set_token(sq_tokenizer *t, int32_t id, const char *s, size_t len)
{
    char *copy = dup_bytes(s, len);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: token of %zu bytes", len);
    free(t->id_to_token[id]);
    t->id_to_token[id] = copy;
    t->token_len[id] = len;
    return SQ_OK;
}

static sq_status read_id(const loader *L, json_t *v, const char *path, int32_t *id)
{
    if (!json_is_integer(v))
        return bad(L, path, "id is not an integer");
    json_int_t x = json_integer_value(v);
    if (x < 0 || x >= (json_int_t)MAX_VOCAB) {
        char msg[96];
        snprintf(msg, sizeof msg, "id %lld out of range [0, %u)", (long long)x, MAX_VOCAB);
        return bad(L, path, msg);
    }
    *id = (int32_t)x;
    return SQ_OK;
}

static sq_status size_vocab(const loader *L, json_t *root)
{
    sq_tokenizer *t = L->t;
    size_t size = 0;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    if (!json_is_object(vocab))
        return bad(L, "model.vocab", "missing or not an object");
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v)
    {
        char p[64];
        snprintf(p, sizeof p, "model.vocab[\"%.40s\"]", key);
        int32_t id;
        SQ_TRY(read_id(L, v, p, &id));
        if ((size_t)id + 1 > size)
            size = (size_t)id + 1;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added)) {
        if (!json_is_array(added))
            return bad(L, "added_tokens", "not an array");
        size_t i;
        json_array_foreach(added, i, v)
        {
            char p[64];
            snprintf(p, sizeof p, "added_tokens[%zu].id", i);
            int32_t id;
            if (!json_is_object(v)) {
                snprintf(p, sizeof p, "added_tokens[%zu]", i);
                return bad(L, p, "not an object");
            }
            SQ_TRY(read_id(L, json_object_get(v, "id"), p, &id));
            if ((size_t)id + 1 > size)
                size = (size_t)id + 1;
        }
    }
    t->vocab_size = size;
    t->id_to_token = calloc(size ? size : 1, sizeof *t->id_to_token);
    t->token_len = calloc(size ? size : 1, sizeof *t->token_len);
    t->is_special = calloc(size ? size : 1, sizeof *t->is_special);
    if (!t->id_to_token || !t->token_len || !t->is_special)
        return sq_fail(SQ_ERR_NOMEM, "%s: vocab of %zu ids", L->file, size);
    return SQ_OK;
}

static sq_status load_merge_parts(const loader *L, json_t *m, const char *p, const char **a, size_t *alen,
                                  const char **b, size_t *blen)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t len = json_string_length(m);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1))
            return bad(L, p, "not a pair (expected \"left right\")");
        *a = s;
        *alen = (size_t)(sp - s);
        *b = sp + 1;
        *blen = len - *alen - 1;
        return SQ_OK;
    }
    if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
        json_is_string(json_array_get(m, 1))) {
        *a = json_string_value(json_array_get(m, 0));
        *alen = json_string_length(json_array_get(m, 0));
        *b = json_string_value(json_array_get(m, 1));
        *blen = json_string_length(json_array_get(m, 1));
        return SQ_OK;
    }
    return bad(L, p, "not a pair");
}

static sq_status load_model(const loader *L, json_t *model)
{
    sq_tokenizer *t = L->t;
    const char *type;
    SQ_TRY(get_type(L, model, "model", &type));
    if (strcmp(type, "BPE"))
        return unsupported(L, "model.type", type);
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(model, "vocab"), key, v)
    {
        int32_t id = (int32_t)json_integer_value(v);
        SQ_TRY(sq_tk_strmap_put(&t->vocab, key, strlen(key), id));
        SQ_TRY(set_token(t, id, key, strlen(key)));
    }
    SQ_TRY(get_bool(L, model, "model", "byte_fallback", &t->byte_fallback));
    SQ_TRY(get_bool(L, model, "model", "fuse_unk", &t->fuse_unk));
    SQ_TRY(get_bool(L, model, "model", "ignore_merges", &t->ignore_merges));
    const char *s;
    size_t len;
    SQ_TRY(get_string(L, model, "model", "continuing_subword_prefix", false, &s, &len));
    if (s && len)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: model.continuing_subword_prefix: not supported", L->file);
    SQ_TRY(get_string(L, model, "model", "end_of_word_suffix", false, &s, &len));
    if (s && len)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: model.end_of_word_suffix: not supported", L->file);
    t->unk_id = -1;
    SQ_TRY(get_string(L, model, "model", "unk_token", false, &s, &len));
    if (s) {
        t->unk_id = sq_tk_strmap_get(&t->vocab, s, len);
        if (t->unk_id < 0)
            return bad(L, "model.unk_token", "token not in model.vocab");
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = sq_tk_strmap_get(&t->vocab, name, strlen(name));
    }
    json_t *merges = json_object_get(model, "merges");
    if (!merges || json_is_null(merges))
        return SQ_OK;
    if (!json_is_array(merges))
        return bad(L, "model.merges", "not an array");
    size_t i;
    json_t *m;
    sq_tk_buf joined = {0};
    sq_status st = SQ_OK;
    json_array_foreach(merges, i, m)
    {
        char p[64];
        snprintf(p, sizeof p, "model.merges[%zu]", i);
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        SQ_TRY_GOTO(st, load_merge_parts(L, m, p, &a, &alen, &b, &blen), done);
        joined.len = 0;
        SQ_TRY_GOTO(st, sq_tk_buf_append(&joined, a, alen), done);
        SQ_TRY_GOTO(st, sq_tk_buf_append(&joined, b, blen), done);
        int32_t ia = sq_tk_strmap_get(&t->vocab, a, alen);
        int32_t ib = sq_tk_strmap_get(&t->vocab, b, blen);
        int32_t im = sq_tk_strmap_get(&t->vocab, joined.data, joined.len);
        if (ia < 0 || ib < 0 || im < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "token \"%.60s\" not in model.vocab",
                     ia < 0 ? a : ib < 0 ? b : joined.data);
            st = bad(L, p, msg);
            goto done;
        }
        if (i >= (size_t)INT32_MAX) {
            st = bad(L, "model.merges", "too many merges");
            goto done;
        }
        SQ_TRY_GOTO(st, sq_tk_mergemap_put(&t->merges, ia, ib, (int32_t)i, im), done);
    }
done:
    free(joined.data);
    return st;
}

static int compare_added_length(const void *x, const void *y)
{
    const sq_tk_added *a = x, *b = y;
    return a->len < b->len ? 1 : a->len > b->len ? -1 : 0;
}

static sq_status load_added(const loader *L, json_t *added)
{
    sq_tokenizer *t = L->t;
    if (!added || json_is_null(added))
        return SQ_OK;
    size_t n = json_array_size(added);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added)
        return sq_fail(SQ_ERR_NOMEM, "%s: %zu added tokens", L->file, n);
    size_t i;
    json_t *a;
    json_array_foreach(added, i, a)
    {
        char p[64];
        snprintf(p, sizeof p, "added_tokens[%zu]", i);
        const char *content;
        size_t len;
        SQ_TRY(get_string(L, a, p, "content", true, &content, &len));
        if (!len) {
            snprintf(p, sizeof p, "added_tokens[%zu].content", i);
            return bad(L, p, "empty");
        }
        sq_tk_added *ad = &t->added[t->n_added];
        ad->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        SQ_TRY(get_bool(L, a, p, "special", &ad->special));
        SQ_TRY(get_bool(L, a, p, "lstrip", &ad->lstrip));
        SQ_TRY(get_bool(L, a, p, "rstrip", &ad->rstrip));
        SQ_TRY(get_bool(L, a, p, "single_word", &ad->single_word));
        ad->content = dup_bytes(content, len);
        if (!ad->content)
            return sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, p);
        ad->len = len;
        t->n_added++;
        SQ_TRY(set_token(t, ad->id, content, len));
        t->is_special[ad->id] = ad->special;
    }
    /* longest first, so the first match at a position is the leftmost-longest one */
    qsort(t->added, t->n_added, sizeof *t->added, compare_added_length);
    for (size_t k = 0; k < t->n_added; k++)
        t->added_by_byte_n[(unsigned char)t->added[k].content[0]]++;
    for (int b = 0; b < 256; b++) {
        if (!t->added_by_byte_n[b])
            continue;
        t->added_by_byte[b] = malloc(t->added_by_byte_n[b] * sizeof(size_t));
        if (!t->added_by_byte[b])
            return sq_fail(SQ_ERR_NOMEM, "%s: added token index", L->file);
        t->added_by_byte_n[b] = 0;
    }
    for (size_t k = 0; k < t->n_added; k++) {
        unsigned char b = (unsigned char)t->added[k].content[0];
        t->added_by_byte[b][t->added_by_byte_n[b]++] = k;
    }
    return SQ_OK;
}

/* A pattern object {"String": s} or {"Regex": r} compiled to PCRE2. */
static sq_status load_pattern(const loader *L, json_t *obj, const char *path, pcre2_code **re)
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
    return bad(L, p, "expected {\"String\": ...} or {\"Regex\": ...}");
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

static sq_status load_normalizer(const loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    if (!obj || json_is_null(obj))
        return SQ_OK;
    const char *type;
    SQ_TRY(get_type(L, obj, path, &type));
    char p[256];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(obj, "normalizers");
        if (!json_is_array(list)) {
            snprintf(p, sizeof p, "%s.normalizers", path);
            return bad(L, p, "not an array");
        }
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n)
        {
            snprintf(p, sizeof p, "%s.normalizers[%zu]", path, i);
            SQ_TRY(load_normalizer(L, n, p));
        }
        return SQ_OK;
    }
    SQ_TRY(grow((void **)&t->norms, t->n_norms, sizeof *t->norms));
    sq_tk_norm *nm = &t->norms[t->n_norms++];
    const char *s;
    size_t len;
    if (!strcmp(type, "Prepend")) {
        nm->kind = SQ_NORM_PREPEND;
        SQ_TRY(get_string(L, obj, path, "prepend", true, &s, &len));
        nm->pattern = dup_bytes(s, len);
        nm->pattern_len = len;
        return nm->pattern ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    if (!strcmp(type, "Replace")) {
        SQ_TRY(get_string(L, obj, path, "content", true, &s, &len));
        nm->content = dup_bytes(s, len);
        nm->content_len = len;
        if (!nm->content)
            return sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
        json_t *str = json_object_get(json_object_get(obj, "pattern"), "String");
        if (json_is_string(str)) {
            nm->kind = SQ_NORM_REPLACE;
            nm->pattern_len = json_string_length(str);
            nm->pattern = dup_bytes(json_string_value(str), nm->pattern_len);
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
    return unsupported(L, p, type);
}

static sq_status load_prepend_scheme(const loader *L, json_t *obj, const char *path, sq_tk_prepend_scheme *out)
{
    const char *s;
    size_t len;
    SQ_TRY(get_string(L, obj, path, "prepend_scheme", false, &s, &len));
    if (!s) {
        bool add = true;
        SQ_TRY(get_bool(L, obj, path, "add_prefix_space", &add));
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
        return bad(L, p, "expected first, always or never");
    }
    return SQ_OK;
}

static sq_status load_replacement(const loader *L, json_t *obj, const char *path, char out[5])
{
    const char *s;
    size_t len;
    SQ_TRY(get_string(L, obj, path, "replacement", true, &s, &len));
    if (len == 0 || len > 4 || sq_tk_utf8_seq_len((const unsigned char *)s, len) != len) {
        char p[256];
        snprintf(p, sizeof p, "%s.replacement", path);
        return bad(L, p, "not a single character");
    }
    memcpy(out, s, len);
    out[len] = 0;
    return SQ_OK;
}

static const char GPT2_PATTERN[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static sq_status load_pre_tokenizer(const loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    if (!obj || json_is_null(obj))
        return SQ_OK;
    const char *type;
    SQ_TRY(get_type(L, obj, path, &type));
    char p[256];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(obj, "pretokenizers");
        if (!json_is_array(list)) {
            snprintf(p, sizeof p, "%s.pretokenizers", path);
            return bad(L, p, "not an array");
        }
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n)
        {
            snprintf(p, sizeof p, "%s.pretokenizers[%zu]", path, i);
            SQ_TRY(load_pre_tokenizer(L, n, p));
        }
        return SQ_OK;
    }
    SQ_TRY(grow((void **)&t->pres, t->n_pres, sizeof *t->pres));
    sq_tk_pre *pre = &t->pres[t->n_pres++];
    if (!strcmp(type, "ByteLevel")) {
        pre->kind = SQ_PRE_BYTELEVEL;
        bool use_regex = true;
        pre->add_prefix_space = true;
        SQ_TRY(get_bool(L, obj, path, "add_prefix_space", &pre->add_prefix_space));
        SQ_TRY(get_bool(L, obj, path, "use_regex", &use_regex));
        if (use_regex)
            SQ_TRY(sq_tk_compile("ByteLevel", GPT2_PATTERN, sizeof GPT2_PATTERN - 1, false, &pre->re));
        return SQ_OK;
    }
    if (!strcmp(type, "Split")) {
        pre->kind = SQ_PRE_SPLIT;
        SQ_TRY(load_pattern(L, obj, path, &pre->re));
        SQ_TRY(get_bool(L, obj, path, "invert", &pre->invert));
        const char *b;
        size_t len;
        SQ_TRY(get_string(L, obj, path, "behavior", true, &b, &len));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        for (int k = 0; k < 5; k++)
            if (!strcmp(b, names[k])) {
                pre->behavior = (sq_tk_split_behavior)k;
                return SQ_OK;
            }
        snprintf(p, sizeof p, "%s.behavior", path);
        return bad(L, p, "unknown split behavior");
    }
    if (!strcmp(type, "Metaspace")) {
        pre->kind = SQ_PRE_METASPACE;
        pre->split = true;
        SQ_TRY(load_replacement(L, obj, path, pre->replacement));
        SQ_TRY(load_prepend_scheme(L, obj, path, &pre->prepend));
        return get_bool(L, obj, path, "split", &pre->split);
    }
    if (!strcmp(type, "Digits")) {
        pre->kind = SQ_PRE_DIGITS;
        bool individual = false;
        SQ_TRY(get_bool(L, obj, path, "individual_digits", &individual));
        pre->behavior = individual ? SQ_SPLIT_ISOLATED : SQ_SPLIT_CONTIGUOUS;
        return sq_tk_compile("Digits", "\\p{N}", 5, false, &pre->re);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return unsupported(L, p, type);
}

static sq_status load_decoder(const loader *L, json_t *obj, const char *path)
{
    sq_tokenizer *t = L->t;
    if (!obj || json_is_null(obj))
        return SQ_OK;
    t->has_decoder = true;
    const char *type;
    SQ_TRY(get_type(L, obj, path, &type));
    char p[256];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(obj, "decoders");
        if (!json_is_array(list)) {
            snprintf(p, sizeof p, "%s.decoders", path);
            return bad(L, p, "not an array");
        }
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n)
        {
            snprintf(p, sizeof p, "%s.decoders[%zu]", path, i);
            SQ_TRY(load_decoder(L, n, p));
        }
        return SQ_OK;
    }
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
        SQ_TRY(get_string(L, obj, path, "content", true, &s, &len));
        d->content = dup_bytes(s, len);
        d->content_len = len;
        d->pattern_len = json_string_length(str);
        d->pattern = dup_bytes(json_string_value(str), d->pattern_len);
        return d->content && d->pattern ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    if (!strcmp(type, "Strip")) {
        d->kind = SQ_DEC_STRIP;
        SQ_TRY(get_string(L, obj, path, "content", true, &s, &len));
        json_t *start = json_object_get(obj, "start"), *stop = json_object_get(obj, "stop");
        if (!json_is_integer(start) || !json_is_integer(stop) || json_integer_value(start) < 0 ||
            json_integer_value(stop) < 0 || json_integer_value(start) > 1024 || json_integer_value(stop) > 1024) {
            snprintf(p, sizeof p, "%s.start/stop", path);
            return bad(L, p, "not small non-negative integers");
        }
        d->start = (int)json_integer_value(start);
        d->stop = (int)json_integer_value(stop);
        d->content = dup_bytes(s, len);
        d->content_len = len;
        return d->content ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, path);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return unsupported(L, p, type);
}

static sq_status push_ids(const loader *L, sq_tk_ids *dst, json_t *ids, const char *path)
{
    if (!json_is_array(ids))
        return bad(L, path, "ids is not an array");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
    {
        char p[300];
        snprintf(p, sizeof p, "%s.ids[%zu]", path, i);
        int32_t id;
        SQ_TRY(read_id(L, v, p, &id));
        if ((size_t)id >= L->t->vocab_size)
            return bad(L, p, "id not in the vocab");
        SQ_TRY(sq_tk_ids_push(dst, id));
    }
    return SQ_OK;
}

static sq_status load_template(const loader *L, json_t *obj, const char *path)
{
    char p[256];
    json_t *single = json_object_get(obj, "single");
    json_t *specials = json_object_get(obj, "special_tokens");
    snprintf(p, sizeof p, "%s.single", path);
    if (!json_is_array(single))
        return bad(L, p, "not an array");
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
        SQ_TRY(get_string(L, sp, p, "id", true, &name, &len));
        json_t *entry = json_object_get(specials, name);
        if (!entry) {
            char msg[160];
            snprintf(msg, sizeof msg, "special token \"%.60s\" missing from special_tokens", name);
            return bad(L, p, msg);
        }
        snprintf(p, sizeof p, "%s.special_tokens[\"%.60s\"]", path, name);
        SQ_TRY(push_ids(L, after ? &L->t->suffix : &L->t->prefix, json_object_get(entry, "ids"), p));
    }
    return SQ_OK;
}

static sq_status load_post_processor(const loader *L, json_t *obj, const char *path)
{
    if (!obj || json_is_null(obj))
        return SQ_OK;
    const char *type;
    SQ_TRY(get_type(L, obj, path, &type));
    char p[256];
    if (!strcmp(type, "Sequence")) {
        json_t *list = json_object_get(obj, "processors");
        if (!json_is_array(list)) {
            snprintf(p, sizeof p, "%s.processors", path);
            return bad(L, p, "not an array");
        }
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n)
        {
            snprintf(p, sizeof p, "%s.processors[%zu]", path, i);
            SQ_TRY(load_post_processor(L, n, p));
        }
        return SQ_OK;
    }
    if (!strcmp(type, "ByteLevel"))
        return SQ_OK; /* only adjusts offsets */
    if (!strcmp(type, "TemplateProcessing"))
        return load_template(L, obj, path);
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(obj, "cls"), *sep = json_object_get(obj, "sep");
        int32_t cid, sid;
        snprintf(p, sizeof p, "%s.cls[1]", path);
        SQ_TRY(read_id(L, json_array_get(cls, 1), p, &cid));
        snprintf(p, sizeof p, "%s.sep[1]", path);
        SQ_TRY(read_id(L, json_array_get(sep, 1), p, &sid));
        if ((size_t)cid >= L->t->vocab_size || (size_t)sid >= L->t->vocab_size)
            return bad(L, path, "cls/sep id not in the vocab");
        SQ_TRY(sq_tk_ids_push(&L->t->prefix, cid));
        return sq_tk_ids_push(&L->t->suffix, sid);
    }
    snprintf(p, sizeof p, "%s.type", path);
    return unsupported(L, p, type);
}

/* tokenizer_config.json: bos_token/eos_token as a string or {"content": ...}. */
static sq_status config_token(const loader *L, json_t *cfg, const char *key, int32_t *id)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!v || json_is_null(v))
        return SQ_OK;
    if (!json_is_string(v))
        return bad(L, key, "not a string");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    for (size_t i = 0; i < L->t->n_added; i++)
        if (L->t->added[i].len == len && !memcmp(L->t->added[i].content, s, len)) {
            *id = L->t->added[i].id;
            return SQ_OK;
        }
    int32_t found = sq_tk_strmap_get(&L->t->vocab, s, len);
    if (found < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "token \"%.60s\" is not in the vocab", s);
        return bad(L, key, msg);
    }
    *id = found;
    return SQ_OK;
}

static sq_status load_config(const loader *L, const char *text)
{
    sq_tokenizer *t = L->t;
    json_error_t jerr;
    json_t *cfg = json_loads(text, 0, &jerr);
    if (!cfg)
        return sq_fail(SQ_ERR_FORMAT, "%s: line %d: %s", L->file, jerr.line, jerr.text);
    sq_status st;
    if (!json_is_object(cfg)) {
        st = bad(L, "(root)", "not an object");
        goto done;
    }
    SQ_TRY_GOTO(st, config_token(L, cfg, "bos_token", &t->bos_id), done);
    SQ_TRY_GOTO(st, config_token(L, cfg, "eos_token", &t->eos_id), done);
    bool has_bos = json_object_get(cfg, "add_bos_token") != NULL;
    bool has_eos = json_object_get(cfg, "add_eos_token") != NULL;
    bool add_bos = false, add_eos = false;
    SQ_TRY_GOTO(st, get_bool(L, cfg, "(root)", "add_bos_token", &add_bos), done);
    SQ_TRY_GOTO(st, get_bool(L, cfg, "(root)", "add_eos_token", &add_eos), done);
    if (has_bos) {
        t->prefix.len = 0;
        if (add_bos && t->bos_id < 0) {
            st = bad(L, "add_bos_token", "true but no bos_token is known");
            goto done;
        }
        if (add_bos)
            SQ_TRY_GOTO(st, sq_tk_ids_push(&t->prefix, t->bos_id), done);
    }
    if (has_eos) {
        t->suffix.len = 0;
        if (add_eos && t->eos_id < 0) {
            st = bad(L, "add_eos_token", "true but no eos_token is known");
            goto done;
        }
        if (add_eos)
            SQ_TRY_GOTO(st, sq_tk_ids_push(&t->suffix, t->eos_id), done);
    }
done:
    json_decref(cfg);
    return st;
}

static int32_t find_named(const sq_tokenizer *t, const char *const *names)
{
    for (; *names; names++)
        for (size_t i = 0; i < t->n_added; i++)
            if (!strcmp(t->added[i].content, *names))
                return t->added[i].id;
    return -1;
}

sq_status sq_tokenizer_load_json(const char *name, const char *json, size_t len, const char *config_json,
                                 sq_tokenizer **out)
{
    *out = NULL;
    sq_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return sq_fail(SQ_ERR_NOMEM, "%s: tokenizer", name);
    t->bos_id = t->eos_id = t->unk_id = -1;
    t->name = dup_bytes(name, strlen(name));
    loader L = {name, t};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    sq_status st;
    if (!root) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: line %d column %d: %s", name, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        st = bad(&L, "(root)", "not an object");
        goto fail;
    }
    SQ_TRY_GOTO(st, size_vocab(&L, root), fail);
    SQ_TRY_GOTO(st, load_model(&L, json_object_get(root, "model")), fail);
    SQ_TRY_GOTO(st, load_added(&L, json_object_get(root, "added_tokens")), fail);
    SQ_TRY_GOTO(st, load_normalizer(&L, json_object_get(root, "normalizer"), "normalizer"), fail);
    SQ_TRY_GOTO(st, load_pre_tokenizer(&L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"), fail);
    SQ_TRY_GOTO(st, load_decoder(&L, json_object_get(root, "decoder"), "decoder"), fail);
    SQ_TRY_GOTO(st, load_post_processor(&L, json_object_get(root, "post_processor"), "post_processor"), fail);
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
    t->bos_id = t->prefix.len ? t->prefix.data[0] : find_named(t, bos_names);
    t->eos_id = t->suffix.len ? t->suffix.data[t->suffix.len - 1] : find_named(t, eos_names);
    if (config_json) {
        loader C = {"tokenizer_config.json", t};
        SQ_TRY_GOTO(st, load_config(&C, config_json), fail);
    }
    json_decref(root);
    *out = t;
    return SQ_OK;
fail:
    json_decref(root);
    sq_tokenizer_free(t);
    return st;
}

sq_status sq_tokenizer_load(const char *path, sq_tokenizer **out)
{
    *out = NULL;
    char *json_path = NULL, *config_path = NULL, *json = NULL, *config = NULL;
    size_t len, clen;
    sq_status st;
    uint64_t size;
    char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) : 0;
    struct stat sb;
    bool is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (is_dir) {
        json_path = sq_path_join(path, "tokenizer.json");
        config_path = sq_path_join(path, "tokenizer_config.json");
    } else {
        json_path = dup_bytes(path, strlen(path));
        char *dir = slash ? dup_bytes(path, dir_len) : dup_bytes(".", 1);
        config_path = dir ? sq_path_join(dir, "tokenizer_config.json") : NULL;
        free(dir);
    }
    if (!json_path || !config_path) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: path", path);
        goto done;
    }
    SQ_TRY_GOTO(st, sq_read_file(json_path, &json, &len), done);
    if (sq_file_size(config_path, &size) == SQ_OK)
        SQ_TRY_GOTO(st, sq_read_file(config_path, &config, &clen), done);
    sq_clear_error();
    st = sq_tokenizer_load_json(json_path, json, len, config, out);
done:
    free(json_path);
    free(config_path);
    free(json);
    free(config);
    return st;
}
