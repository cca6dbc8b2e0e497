/* tokenizer.c: encode and decode with a loaded tokenizer.json.
 *
 * Encode: added tokens with normalized=false are found in the raw text first
 * (leftmost-longest, with their lstrip/rstrip/single_word options); the text
 * between them is normalized and searched for the normalized=true added tokens;
 * what remains is pre-tokenized and BPE-merged; BOS/EOS come from the
 * post-processor. Decode: ids -> token strings -> the decoder chain
 * (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip), as the reference. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool is_word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static sq_status encode_words(const sq_tokenizer *t, const char *s, size_t len, bool at_start, sq_tk_ids *out)
{
    if (!len)
        return SQ_OK;
    sq_tk_pieces pieces = {0};
    sq_status st;
    SQ_TRY_GOTO(st, sq_tk_pretokenize(t, s, len, at_start, &pieces), done);
    for (size_t i = 0; i < pieces.n; i++)
        SQ_TRY_GOTO(st, sq_tk_bpe(t, pieces.items[i].s, pieces.items[i].len, out), done);
done:
    sq_tk_pieces_free(&pieces);
    return st;
}

/* The added token of pass `set` starting at text[i], or NULL. */
static const sq_tk_added *added_at(const sq_tokenizer *t, int set, const char *text, size_t len, size_t i)
{
    unsigned char b = (unsigned char)text[i];
    for (size_t k = 0; k < t->added_by_byte_n[set][b]; k++) {
        const sq_tk_added *a = &t->added[t->added_by_byte[set][b][k]];
        if (a->match_len > len - i || memcmp(text + i, a->match, a->match_len))
            continue;
        if (a->single_word && ((i > 0 && is_word_byte((unsigned char)text[i - 1])) ||
                               (i + a->match_len < len && is_word_byte((unsigned char)text[i + a->match_len]))))
            continue;
        return a;
    }
    return NULL;
}

static sq_status encode_pass(const sq_tokenizer *t, int set, const char *text, size_t len, bool at_start,
                             sq_tk_ids *out);

/* Text between added tokens: after the raw pass it is normalized and searched
 * again for normalized added tokens; after that pass it becomes words. */
static sq_status encode_gap(const sq_tokenizer *t, int set, const char *s, size_t len, bool at_start, sq_tk_ids *out)
{
    if (!len)
        return SQ_OK;
    if (set == SQ_ADDED_NORMALIZED)
        return encode_words(t, s, len, at_start, out);
    sq_tk_buf seg = {0};
    sq_status st = sq_tk_buf_append(&seg, s, len);
    if (st == SQ_OK)
        st = sq_tk_normalize(t, &seg);
    if (st == SQ_OK)
        st = encode_pass(t, SQ_ADDED_NORMALIZED, seg.data, seg.len, at_start, out);
    free(seg.data);
    return st;
}

static sq_status encode_pass(const sq_tokenizer *t, int set, const char *text, size_t len, bool at_start,
                             sq_tk_ids *out)
{
    size_t gap_start = 0, i = 0;
    while (i < len) {
        const sq_tk_added *a = added_at(t, set, text, len, i);
        if (!a) {
            i++;
            continue;
        }
        size_t gap_end = i;
        if (a->lstrip)
            while (gap_end > gap_start && is_space((unsigned char)text[gap_end - 1]))
                gap_end--;
        SQ_TRY(encode_gap(t, set, text + gap_start, gap_end - gap_start, at_start && gap_start == 0, out));
        SQ_TRY(sq_tk_ids_push(out, a->id));
        i += a->match_len;
        if (a->rstrip)
            while (i < len && is_space((unsigned char)text[i]))
                i++;
        gap_start = i;
    }
    return encode_gap(t, set, text + gap_start, len - gap_start, at_start && gap_start == 0, out);
}

sq_status sq_tokenizer_encode(const sq_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                              size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!tok || (!text && len))
        return sq_fail(SQ_ERR_ARG, "sq_tokenizer_encode: null argument");
    size_t bad = sq_tk_utf8_invalid_at(text, len);
    if (bad < len)
        return sq_fail(SQ_ERR_ARG, "tokenizer: input is not valid UTF-8 at byte %zu", bad);
    sq_tk_ids out = {0};
    sq_status st = SQ_OK;
    if (add_special)
        for (size_t i = 0; i < tok->prefix.len; i++)
            SQ_TRY_GOTO(st, sq_tk_ids_push(&out, tok->prefix.data[i]), fail);
    SQ_TRY_GOTO(st, encode_pass(tok, SQ_ADDED_RAW, text ? text : "", len, true, &out), fail);
    if (add_special)
        for (size_t k = 0; k < tok->suffix.len; k++)
            SQ_TRY_GOTO(st, sq_tk_ids_push(&out, tok->suffix.data[k]), fail);
    *ids = out.data;
    *n = out.len;
    return SQ_OK;
fail:
    free(out.data);
    return st;
}

/* ---- decoding ---- */

typedef struct {
    sq_tk_buf *items;
    size_t n, cap;
} strlist;

static sq_status strlist_push(strlist *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        sq_tk_buf *items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: %zu decoded tokens", cap);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n] = (sq_tk_buf){0};
    SQ_TRY(sq_tk_buf_append(&l->items[l->n], s, len));
    l->n++;
    return SQ_OK;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].data);
    free(l->items);
    *l = (strlist){0};
}

static const char REPLACEMENT_CHAR[] = "\xEF\xBF\xBD";

/* Bytes of the maximal prefix of a well-formed sequence at s (>= 1), for lossy decoding. */
static size_t invalid_prefix_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else
        return 1;
    size_t k = 1;
    for (; k <= need && k < avail; k++) {
        if (s[k] < lo || s[k] > hi)
            break;
        lo = 0x80, hi = 0xBF;
    }
    return k;
}

/* Append bytes as UTF-8, each malformed stretch becoming one U+FFFD (from_utf8_lossy). */
static sq_status append_lossy(sq_tk_buf *out, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = sq_tk_utf8_seq_len((const unsigned char *)s + i, len - i);
        if (n) {
            SQ_TRY(sq_tk_buf_append(out, s + i, n));
            i += n;
        } else {
            SQ_TRY(sq_tk_buf_append(out, REPLACEMENT_CHAR, 3));
            i += invalid_prefix_len((const unsigned char *)s + i, len - i);
        }
    }
    return SQ_OK;
}

static int byte_token(const sq_tk_buf *tok)
{
    if (tok->len != 6 || memcmp(tok->data, "<0x", 3) || tok->data[5] != '>')
        return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = tok->data[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static sq_status flush_bytes(strlist *out, sq_tk_buf *bytes, size_t count)
{
    if (!count)
        return SQ_OK;
    if (sq_tk_utf8_invalid_at(bytes->data, bytes->len) == bytes->len)
        SQ_TRY(strlist_push(out, bytes->data, bytes->len));
    else
        for (size_t k = 0; k < count; k++)
            SQ_TRY(strlist_push(out, REPLACEMENT_CHAR, 3));
    bytes->len = 0;
    return SQ_OK;
}

static sq_status decode_step(const sq_tk_dec *d, strlist *in, strlist *out)
{
    const sq_tk_bytemap *map = sq_tk_bytelevel_map();
    sq_tk_buf acc = {0};
    sq_status st = SQ_OK;
    size_t pending = 0;
    switch (d->kind) {
    case SQ_DEC_FUSE:
        SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, "", 0), done);
        for (size_t i = 0; i < in->n; i++)
            SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, in->items[i].data, in->items[i].len), done);
        st = strlist_push(out, acc.data, acc.len);
        break;
    case SQ_DEC_BYTELEVEL: {
        sq_tk_buf raw = {0};
        SQ_TRY_GOTO(st, sq_tk_buf_append(&raw, "", 0), done);
        for (size_t i = 0; i < in->n && st == SQ_OK; i++) {
            const sq_tk_buf *tk = &in->items[i];
            size_t start = raw.len, j = 0;
            bool all_mapped = true;
            while (j < tk->len && st == SQ_OK) {
                const unsigned char *p = (const unsigned char *)tk->data + j;
                size_t n = sq_tk_utf8_seq_len(p, tk->len - j);
                uint32_t cp = n == 1 ? p[0] : n == 2 ? (uint32_t)((p[0] & 0x1F) << 6 | (p[1] & 0x3F)) : 0xFFFFFFFF;
                if (cp >= 324 || map->dec[cp] < 0) {
                    all_mapped = false;
                    break;
                }
                char byte = (char)map->dec[cp];
                st = sq_tk_buf_append(&raw, &byte, 1);
                j += n;
            }
            if (st == SQ_OK && !all_mapped) {
                raw.len = start;
                st = sq_tk_buf_append(&raw, tk->data, tk->len);
            }
        }
        if (st == SQ_OK)
            st = sq_tk_buf_append(&acc, "", 0);
        if (st == SQ_OK)
            st = append_lossy(&acc, raw.data, raw.len);
        free(raw.data);
        if (st == SQ_OK)
            st = strlist_push(out, acc.data, acc.len);
        break;
    }
    case SQ_DEC_BYTEFALLBACK:
        SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, "", 0), done);
        for (size_t i = 0; i < in->n; i++) {
            int b = byte_token(&in->items[i]);
            if (b >= 0) {
                char byte = (char)b;
                SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, &byte, 1), done);
                pending++;
                continue;
            }
            SQ_TRY_GOTO(st, flush_bytes(out, &acc, pending), done);
            pending = 0;
            SQ_TRY_GOTO(st, strlist_push(out, in->items[i].data, in->items[i].len), done);
        }
        st = flush_bytes(out, &acc, pending);
        break;
    case SQ_DEC_REPLACE:
    case SQ_DEC_METASPACE:
    case SQ_DEC_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->items[i].data;
            size_t len = in->items[i].len, j = 0;
            acc.len = 0;
            SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, "", 0), done);
            if (d->kind == SQ_DEC_STRIP) {
                size_t cl = d->content_len;
                for (int k = 0; k < d->start && cl && j + cl <= len && !memcmp(s + j, d->content, cl); k++)
                    j += cl;
                for (int k = 0; k < d->stop && cl && len >= j + cl && !memcmp(s + len - cl, d->content, cl); k++)
                    len -= cl;
                SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, s + j, len - j), done);
            } else {
                const char *pat = d->kind == SQ_DEC_REPLACE ? d->pattern : d->replacement;
                size_t pl = d->kind == SQ_DEC_REPLACE ? d->pattern_len : strlen(d->replacement);
                bool drop = d->kind == SQ_DEC_METASPACE && i == 0 && d->strip_first;
                const char *rep = d->kind == SQ_DEC_REPLACE ? d->content : " ";
                size_t rl = d->kind == SQ_DEC_REPLACE ? d->content_len : 1;
                while (j < len) {
                    if (pl && j + pl <= len && !memcmp(s + j, pat, pl)) {
                        if (!drop)
                            SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, rep, rl), done);
                        j += pl;
                    } else {
                        SQ_TRY_GOTO(st, sq_tk_buf_append(&acc, s + j, 1), done);
                        j++;
                    }
                }
            }
            SQ_TRY_GOTO(st, strlist_push(out, acc.data, acc.len), done);
        }
        break;
    }
done:
    free(acc.data);
    return st;
}

sq_status sq_tokenizer_decode(const sq_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len)
{
    *text = NULL;
    *len = 0;
    if (!tok || (!ids && n))
        return sq_fail(SQ_ERR_ARG, "sq_tokenizer_decode: null argument");
    strlist cur = {0}, next = {0};
    sq_tk_buf out = {0};
    sq_status st;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || (size_t)id >= tok->vocab_size || !tok->id_to_token[id]) {
            st = sq_fail(SQ_ERR_ARG, "%s: decode: id %d at position %zu is not in the vocab (size %zu)", tok->name,
                         (int)id, i, tok->vocab_size);
            goto done;
        }
        if (skip_special && tok->is_special[id])
            continue;
        SQ_TRY_GOTO(st, strlist_push(&cur, tok->id_to_token[id], tok->token_len[id]), done);
    }
    for (size_t k = 0; k < tok->n_decs; k++) {
        SQ_TRY_GOTO(st, decode_step(&tok->decs[k], &cur, &next), done);
        strlist_free(&cur);
        cur = next;
        next = (strlist){0};
    }
    SQ_TRY_GOTO(st, sq_tk_buf_append(&out, "", 0), done);
    for (size_t i = 0; i < cur.n; i++) {
        if (i && !tok->has_decoder)
            SQ_TRY_GOTO(st, sq_tk_buf_append(&out, " ", 1), done);
        SQ_TRY_GOTO(st, sq_tk_buf_append(&out, cur.items[i].data, cur.items[i].len), done);
    }
    *text = out.data;
    *len = out.len;
    out.data = NULL;
done:
    free(out.data);
    strlist_free(&cur);
    strlist_free(&next);
    return st;
}

int32_t sq_tokenizer_bos_id(const sq_tokenizer *tok) { return tok ? tok->bos_id : -1; }

int32_t sq_tokenizer_eos_id(const sq_tokenizer *tok) { return tok ? tok->eos_id : -1; }

size_t sq_tokenizer_vocab_size(const sq_tokenizer *tok) { return tok ? tok->vocab_size : 0; }

const char *sq_tokenizer_token(const sq_tokenizer *tok, int32_t id)
{
    if (!tok || id < 0 || (size_t)id >= tok->vocab_size)
        return NULL;
    return tok->id_to_token[id];
}

void sq_tokenizer_free(sq_tokenizer *t)
{
    if (!t)
        return;
    sq_tk_map_free(&t->vocab);
    sq_tk_map_free(&t->merges);
    for (size_t i = 0; i < t->vocab_size; i++)
        free(t->id_to_token ? t->id_to_token[i] : NULL);
    free(t->id_to_token);
    free(t->token_len);
    free(t->is_special);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    for (int set = 0; set < 2; set++)
        for (int b = 0; b < 256; b++)
            free(t->added_by_byte[set][b]);
    for (size_t i = 0; i < t->n_norms; i++) {
        free(t->norms[i].pattern);
        free(t->norms[i].content);
        pcre2_code_free(t->norms[i].re);
    }
    free(t->norms);
    for (size_t i = 0; i < t->n_pres; i++)
        pcre2_code_free(t->pres[i].re);
    free(t->pres);
    for (size_t i = 0; i < t->n_decs; i++) {
        free(t->decs[i].pattern);
        free(t->decs[i].content);
    }
    free(t->decs);
    free(t->prefix.data);
    free(t->suffix.data);
    free(t->name);
    free(t);
}
