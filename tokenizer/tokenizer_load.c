/* tokenizer_load.c: tokenizer.json (and tokenizer_config.json) -> sq_tokenizer:
 * the BPE model (vocab, merges), added tokens and BOS/EOS settings; the
 * pipeline sections are read by tokenizer_pipeline.c.
 *
 * Every field is type-checked and every id bounds-checked; a problem is an
 * error naming the file and the JSON path ("tokenizer.json: model.merges[17]:
 * not a pair"). Components outside the supported set are SQ_ERR_UNSUPPORTED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "tokenizer/tokenizer_json.h"

static sq_status size_vocab(const sq_tk_loader *L, json_t *root)
{
    sq_tokenizer *t = L->t;
    size_t size = 0;
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    if (!json_is_object(vocab))
        return sq_tkj_bad(L, "model.vocab", "missing or not an object");
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v)
    {
        char p[64];
        snprintf(p, sizeof p, "model.vocab[\"%.40s\"]", key);
        int32_t id;
        SQ_TRY(sq_tkj_id(L, v, p, &id));
        if ((size_t)id + 1 > size)
            size = (size_t)id + 1;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added)) {
        if (!json_is_array(added))
            return sq_tkj_bad(L, "added_tokens", "not an array");
        size_t i;
        json_array_foreach(added, i, v)
        {
            char p[64];
            snprintf(p, sizeof p, "added_tokens[%zu].id", i);
            int32_t id;
            if (!json_is_object(v)) {
                snprintf(p, sizeof p, "added_tokens[%zu]", i);
                return sq_tkj_bad(L, p, "not an object");
            }
            SQ_TRY(sq_tkj_id(L, json_object_get(v, "id"), p, &id));
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

static sq_status load_merge_parts(const sq_tk_loader *L, json_t *m, const char *p, const char **a, size_t *alen,
                                  const char **b, size_t *blen)
{
    if (json_is_string(m)) {
        const char *s = json_string_value(m);
        size_t len = json_string_length(m);
        const char *sp = memchr(s, ' ', len);
        if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp - s) - 1))
            return sq_tkj_bad(L, p, "not a pair (expected \"left right\")");
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
    return sq_tkj_bad(L, p, "not a pair");
}

static sq_status load_model(const sq_tk_loader *L, json_t *model)
{
    sq_tokenizer *t = L->t;
    const char *type;
    SQ_TRY(sq_tkj_type(L, model, "model", &type));
    if (strcmp(type, "BPE"))
        return sq_tkj_unsupported(L, "model.type", type);
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(model, "vocab"), key, v)
    {
        int32_t id = (int32_t)json_integer_value(v);
        SQ_TRY(sq_tk_strmap_put(&t->vocab, key, strlen(key), id));
        SQ_TRY(sq_tk_set_token(t, id, key, strlen(key)));
    }
    SQ_TRY(sq_tkj_bool(L, model, "model", "byte_fallback", &t->byte_fallback));
    SQ_TRY(sq_tkj_bool(L, model, "model", "fuse_unk", &t->fuse_unk));
    SQ_TRY(sq_tkj_bool(L, model, "model", "ignore_merges", &t->ignore_merges));
    const char *s;
    size_t len;
    SQ_TRY(sq_tkj_string(L, model, "model", "continuing_subword_prefix", false, &s, &len));
    if (s && len)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: model.continuing_subword_prefix: not supported", L->file);
    SQ_TRY(sq_tkj_string(L, model, "model", "end_of_word_suffix", false, &s, &len));
    if (s && len)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: model.end_of_word_suffix: not supported", L->file);
    t->unk_id = -1;
    SQ_TRY(sq_tkj_string(L, model, "model", "unk_token", false, &s, &len));
    if (s) {
        t->unk_id = sq_tk_strmap_get(&t->vocab, s, len);
        if (t->unk_id < 0)
            return sq_tkj_bad(L, "model.unk_token", "token not in model.vocab");
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
        return sq_tkj_bad(L, "model.merges", "not an array");
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
            const char *miss = ia < 0 ? a : ib < 0 ? b : joined.data;
            size_t miss_len = ia < 0 ? alen : ib < 0 ? blen : joined.len;
            snprintf(msg, sizeof msg, "token \"%.*s\" not in model.vocab", (int)(miss_len < 60 ? miss_len : 60), miss);
            st = sq_tkj_bad(L, p, msg);
            goto done;
        }
        if (i >= (size_t)INT32_MAX) {
            st = sq_tkj_bad(L, "model.merges", "too many merges");
            goto done;
        }
        SQ_TRY_GOTO(st, sq_tk_mergemap_put(&t->merges, ia, ib, (int32_t)i, im), done);
    }
done:
    free(joined.data);
    return st;
}

static sq_status load_added(const sq_tk_loader *L, json_t *added)
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
        SQ_TRY(sq_tkj_string(L, a, p, "content", true, &content, &len));
        if (!len) {
            snprintf(p, sizeof p, "added_tokens[%zu].content", i);
            return sq_tkj_bad(L, p, "empty");
        }
        sq_tk_added *ad = &t->added[t->n_added];
        ad->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        SQ_TRY(sq_tkj_bool(L, a, p, "special", &ad->special));
        ad->normalized = !ad->special;
        SQ_TRY(sq_tkj_bool(L, a, p, "normalized", &ad->normalized));
        SQ_TRY(sq_tkj_bool(L, a, p, "lstrip", &ad->lstrip));
        SQ_TRY(sq_tkj_bool(L, a, p, "rstrip", &ad->rstrip));
        SQ_TRY(sq_tkj_bool(L, a, p, "single_word", &ad->single_word));
        ad->content = sq_tk_dup(content, len);
        if (!ad->content)
            return sq_fail(SQ_ERR_NOMEM, "%s: %s", L->file, p);
        ad->len = len;
        t->n_added++;
        SQ_TRY(sq_tk_set_token(t, ad->id, content, len));
        t->is_special[ad->id] = ad->special;
    }
    return SQ_OK;
}

/* Once the normalizer is known: the text each added token is matched as, and the
 * per-pass, per-first-byte buckets, longest match first (leftmost-longest). */
static sq_status index_added(const sq_tk_loader *L)
{
    sq_tokenizer *t = L->t;
    for (size_t k = 0; k < t->n_added; k++) {
        sq_tk_added *ad = &t->added[k];
        sq_tk_buf m = {0};
        SQ_TRY(sq_tk_buf_append(&m, ad->content, ad->len));
        if (ad->normalized) {
            sq_status st = sq_tk_normalize(t, &m);
            if (st != SQ_OK) {
                free(m.data);
                return st;
            }
        }
        ad->match = m.data;
        ad->match_len = m.len;
        /* the reference's id -> token (and so decode) gives the normalized form */
        if (ad->normalized && m.len)
            SQ_TRY(sq_tk_set_token(t, ad->id, m.data, m.len));
        if (m.len)
            t->added_by_byte_n[ad->normalized][(unsigned char)m.data[0]]++;
    }
    for (int set = 0; set < 2; set++)
        for (int b = 0; b < 256; b++) {
            if (!t->added_by_byte_n[set][b])
                continue;
            t->added_by_byte[set][b] = malloc(t->added_by_byte_n[set][b] * sizeof(size_t));
            if (!t->added_by_byte[set][b])
                return sq_fail(SQ_ERR_NOMEM, "%s: added token index", L->file);
            t->added_by_byte_n[set][b] = 0;
        }
    for (size_t k = 0; k < t->n_added; k++) {
        const sq_tk_added *ad = &t->added[k];
        if (!ad->match_len)
            continue;
        unsigned char b = (unsigned char)ad->match[0];
        size_t *bucket = t->added_by_byte[ad->normalized][b];
        size_t j = t->added_by_byte_n[ad->normalized][b]++;
        while (j > 0 && t->added[bucket[j - 1]].match_len < ad->match_len) {
            bucket[j] = bucket[j - 1];
            j--;
        }
        bucket[j] = k;
    }
    return SQ_OK;
}

/* A pattern object {"String": s} or {"Regex": r} compiled to PCRE2. */

static sq_status config_token(const sq_tk_loader *L, json_t *cfg, const char *key, int32_t *id)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    if (!v || json_is_null(v))
        return SQ_OK;
    if (!json_is_string(v))
        return sq_tkj_bad(L, key, "not a string");
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
        return sq_tkj_bad(L, key, msg);
    }
    *id = found;
    return SQ_OK;
}

static sq_status load_config(const sq_tk_loader *L, const char *text)
{
    sq_tokenizer *t = L->t;
    json_error_t jerr;
    /* integers as reals: transformers writes "model_max_length": 1000000000000000019884624838656
     * (its VERY_LARGE_INTEGER), beyond int64; no integer field is read here */
    json_t *cfg = json_loads(text, JSON_DECODE_INT_AS_REAL, &jerr);
    if (!cfg)
        return sq_fail(SQ_ERR_FORMAT, "%s: line %d: %s", L->file, jerr.line, jerr.text);
    sq_status st;
    if (!json_is_object(cfg)) {
        st = sq_tkj_bad(L, "(root)", "not an object");
        goto done;
    }
    SQ_TRY_GOTO(st, config_token(L, cfg, "bos_token", &t->bos_id), done);
    SQ_TRY_GOTO(st, config_token(L, cfg, "eos_token", &t->eos_id), done);
    bool has_bos = json_object_get(cfg, "add_bos_token") != NULL;
    bool has_eos = json_object_get(cfg, "add_eos_token") != NULL;
    bool add_bos = false, add_eos = false;
    SQ_TRY_GOTO(st, sq_tkj_bool(L, cfg, "(root)", "add_bos_token", &add_bos), done);
    SQ_TRY_GOTO(st, sq_tkj_bool(L, cfg, "(root)", "add_eos_token", &add_eos), done);
    if (has_bos) {
        t->prefix.len = 0;
        if (add_bos && t->bos_id < 0) {
            st = sq_tkj_bad(L, "add_bos_token", "true but no bos_token is known");
            goto done;
        }
        if (add_bos)
            SQ_TRY_GOTO(st, sq_tk_ids_push(&t->prefix, t->bos_id), done);
    }
    if (has_eos) {
        t->suffix.len = 0;
        if (add_eos && t->eos_id < 0) {
            st = sq_tkj_bad(L, "add_eos_token", "true but no eos_token is known");
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
    t->name = sq_tk_dup(name, strlen(name));
    sq_tk_loader L = {name, t};
    json_error_t jerr;
    json_t *root = json_loadb(json, len, 0, &jerr);
    sq_status st;
    if (!root) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: line %d column %d: %s", name, jerr.line, jerr.column, jerr.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        st = sq_tkj_bad(&L, "(root)", "not an object");
        goto fail;
    }
    SQ_TRY_GOTO(st, size_vocab(&L, root), fail);
    SQ_TRY_GOTO(st, load_model(&L, json_object_get(root, "model")), fail);
    SQ_TRY_GOTO(st, load_added(&L, json_object_get(root, "added_tokens")), fail);
    SQ_TRY_GOTO(st, sq_tk_load_normalizer(&L, json_object_get(root, "normalizer"), "normalizer"), fail);
    SQ_TRY_GOTO(st, index_added(&L), fail);
    SQ_TRY_GOTO(st, sq_tk_load_pre_tokenizer(&L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"), fail);
    SQ_TRY_GOTO(st, sq_tk_load_decoder(&L, json_object_get(root, "decoder"), "decoder"), fail);
    SQ_TRY_GOTO(st, sq_tk_load_post_processor(&L, json_object_get(root, "post_processor"), "post_processor"), fail);
    static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", NULL};
    static const char *const eos_names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", NULL};
    t->bos_id = t->prefix.len ? t->prefix.data[0] : find_named(t, bos_names);
    t->eos_id = t->suffix.len ? t->suffix.data[t->suffix.len - 1] : find_named(t, eos_names);
    if (config_json) {
        sq_tk_loader C = {"tokenizer_config.json", t};
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
        json_path = sq_tk_dup(path, strlen(path));
        char *dir = slash ? sq_tk_dup(path, dir_len) : sq_tk_dup(".", 1);
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
