/* tokenizer_pretok.c: normalizers and pre-tokenizers, the stages between the
 * raw text of a segment and the words BPE sees. Semantics follow the Hugging
 * Face `tokenizers` library: Prepend/Replace normalizers; Split (regex with
 * Removed, Isolated, MergedWith{Previous,Next} and Contiguous), ByteLevel, Metaspace and
 * Digits pre-tokenizers. Regexes run in PCRE2 with UTF-8 + Unicode properties. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

typedef struct {
    size_t start, end;
    bool match;
} span;

typedef struct {
    span *items;
    size_t n, cap;
} spans;

static sq_status spans_push(spans *v, size_t start, size_t end, bool match)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        span *items = realloc(v->items, cap * sizeof *items);
        if (!items)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: %zu spans", cap);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = (span){start, end, match};
    return SQ_OK;
}

/* Cover s[0..len) with alternating non-match / match spans, as the reference's find_matches does. */
static sq_status find_matches(const pcre2_code *re, const char *s, size_t len, spans *out)
{
    if (!len)
        return spans_push(out, 0, 0, false);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: regex match data");
    sq_status st = SQ_OK;
    size_t prev = 0, offset = 0;
    while (offset <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, offset, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = sq_fail(SQ_ERR_FORMAT, "tokenizer: regex match failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t start = ov[0], end = ov[1];
        if (prev != start)
            SQ_TRY_GOTO(st, spans_push(out, prev, start, false), done);
        SQ_TRY_GOTO(st, spans_push(out, start, end, true), done);
        prev = end;
        if (end > start) {
            offset = end;
        } else {
            if (end >= len)
                break;
            size_t step = sq_tk_utf8_seq_len((const unsigned char *)s + end, len - end);
            offset = end + (step ? step : 1);
        }
    }
    if (st == SQ_OK && prev != len)
        st = spans_push(out, prev, len, false);
done:
    pcre2_match_data_free(md);
    return st;
}

/* Turn match spans into the pieces a split behavior keeps (match flag then means "keep"). */
static sq_status apply_behavior(spans *in, sq_tk_split_behavior behavior, spans *out)
{
    bool prev_match = false;
    switch (behavior) {
    case SQ_SPLIT_REMOVED:
        for (size_t i = 0; i < in->n; i++)
            if (!in->items[i].match)
                SQ_TRY(spans_push(out, in->items[i].start, in->items[i].end, false));
        return SQ_OK;
    case SQ_SPLIT_ISOLATED:
        for (size_t i = 0; i < in->n; i++)
            SQ_TRY(spans_push(out, in->items[i].start, in->items[i].end, false));
        return SQ_OK;
    case SQ_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < in->n; i++) {
            span sp = in->items[i];
            if (sp.match && !prev_match && out->n)
                out->items[out->n - 1].end = sp.end;
            else
                SQ_TRY(spans_push(out, sp.start, sp.end, false));
            prev_match = sp.match;
        }
        return SQ_OK;
    case SQ_SPLIT_MERGED_WITH_NEXT:
        for (size_t k = in->n; k-- > 0;) {
            span sp = in->items[k];
            if (sp.match && !prev_match && out->n)
                out->items[out->n - 1].start = sp.start;
            else
                SQ_TRY(spans_push(out, sp.start, sp.end, false));
            prev_match = sp.match;
        }
        for (size_t i = 0; i < out->n / 2; i++) {
            span tmp = out->items[i];
            out->items[i] = out->items[out->n - 1 - i];
            out->items[out->n - 1 - i] = tmp;
        }
        return SQ_OK;
    case SQ_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < in->n; i++) {
            span sp = in->items[i];
            if (sp.match && prev_match && out->n)
                out->items[out->n - 1].end = sp.end;
            else
                SQ_TRY(spans_push(out, sp.start, sp.end, false));
            prev_match = sp.match;
        }
        return SQ_OK;
    }
    return sq_fail(SQ_ERR_ARG, "tokenizer: unknown split behavior %d", (int)behavior);
}

static sq_status split_piece(const sq_tk_piece *p, const pcre2_code *re, sq_tk_split_behavior behavior, bool invert,
                             sq_tk_pieces *out)
{
    spans found = {0}, kept = {0};
    sq_status st;
    SQ_TRY_GOTO(st, find_matches(re, p->s, p->len, &found), done);
    if (invert)
        for (size_t i = 0; i < found.n; i++)
            found.items[i].match = !found.items[i].match;
    SQ_TRY_GOTO(st, apply_behavior(&found, behavior, &kept), done);
    for (size_t i = 0; i < kept.n; i++) {
        span sp = kept.items[i];
        if (sp.end > sp.start)
            SQ_TRY_GOTO(st, sq_tk_pieces_push(out, p->s + sp.start, sp.end - sp.start, p->at_start && sp.start == 0),
                        done);
    }
done:
    free(found.items);
    free(kept.items);
    return st;
}

/* Replace every non-overlapping occurrence of `pat` in buf by `rep`. */
static sq_status replace_literal(sq_tk_buf *buf, const char *pat, size_t pat_len, const char *rep, size_t rep_len)
{
    if (!pat_len || !buf->len)
        return SQ_OK;
    sq_tk_buf out = {0};
    sq_status st = sq_tk_buf_append(&out, "", 0);
    size_t i = 0;
    while (st == SQ_OK && i < buf->len) {
        if (i + pat_len <= buf->len && !memcmp(buf->data + i, pat, pat_len)) {
            st = sq_tk_buf_append(&out, rep, rep_len);
            i += pat_len;
        } else {
            st = sq_tk_buf_append(&out, buf->data + i, 1);
            i++;
        }
    }
    if (st != SQ_OK) {
        free(out.data);
        return st;
    }
    free(buf->data);
    *buf = out;
    return SQ_OK;
}

static sq_status replace_regex(sq_tk_buf *buf, const pcre2_code *re, const char *rep, size_t rep_len)
{
    spans found = {0};
    sq_tk_buf out = {0};
    sq_status st;
    SQ_TRY_GOTO(st, find_matches(re, buf->data ? buf->data : "", buf->len, &found), done);
    SQ_TRY_GOTO(st, sq_tk_buf_append(&out, "", 0), done);
    for (size_t i = 0; i < found.n; i++) {
        span sp = found.items[i];
        if (sp.match)
            SQ_TRY_GOTO(st, sq_tk_buf_append(&out, rep, rep_len), done);
        else
            SQ_TRY_GOTO(st, sq_tk_buf_append(&out, buf->data + sp.start, sp.end - sp.start), done);
    }
    free(buf->data);
    *buf = out;
    out = (sq_tk_buf){0};
done:
    free(found.items);
    free(out.data);
    return st;
}

sq_status sq_tk_normalize(const sq_tokenizer *t, sq_tk_buf *seg)
{
    for (size_t k = 0; k < t->n_norms; k++) {
        const sq_tk_norm *nm = &t->norms[k];
        switch (nm->kind) {
        case SQ_NORM_PREPEND:
            if (seg->len) {
                sq_tk_buf out = {0};
                sq_status st = sq_tk_buf_append(&out, nm->pattern, nm->pattern_len);
                if (st == SQ_OK)
                    st = sq_tk_buf_append(&out, seg->data, seg->len);
                if (st != SQ_OK) {
                    free(out.data);
                    return st;
                }
                free(seg->data);
                *seg = out;
            }
            break;
        case SQ_NORM_REPLACE:
            SQ_TRY(replace_literal(seg, nm->pattern, nm->pattern_len, nm->content, nm->content_len));
            break;
        case SQ_NORM_REPLACE_REGEX:
            SQ_TRY(replace_regex(seg, nm->re, nm->content, nm->content_len));
            break;
        case SQ_NORM_IDENTITY:
            break;
        }
    }
    return SQ_OK;
}

/* Metaspace on one piece: spaces become the replacement char, a replacement is
 * prepended per the scheme, and (split) each replacement starts a new piece. */
static sq_status metaspace_piece(const sq_tk_pre *pre, const sq_tk_piece *p, sq_tk_pieces *out)
{
    size_t rlen = strlen(pre->replacement);
    sq_tk_buf buf = {0};
    sq_status st;
    SQ_TRY_GOTO(st, sq_tk_buf_append(&buf, p->s, p->len), done);
    SQ_TRY_GOTO(st, replace_literal(&buf, " ", 1, pre->replacement, rlen), done);
    bool starts = buf.len >= rlen && !memcmp(buf.data, pre->replacement, rlen);
    bool prepend = !starts && (pre->prepend == SQ_PREPEND_ALWAYS || (pre->prepend == SQ_PREPEND_FIRST && p->at_start));
    if (prepend) {
        sq_tk_buf with = {0};
        SQ_TRY_GOTO(st, sq_tk_buf_append(&with, pre->replacement, rlen), done);
        st = sq_tk_buf_append(&with, buf.data, buf.len);
        free(buf.data);
        buf = with;
        if (st != SQ_OK)
            goto done;
    }
    if (!pre->split) {
        if (buf.len)
            st = sq_tk_pieces_push(out, buf.data, buf.len, p->at_start);
        goto done;
    }
    size_t start = 0;
    for (size_t i = 1; i <= buf.len; i++) {
        bool cut = i == buf.len || (i + rlen <= buf.len && !memcmp(buf.data + i, pre->replacement, rlen));
        if (cut && i > start) {
            SQ_TRY_GOTO(st, sq_tk_pieces_push(out, buf.data + start, i - start, p->at_start && start == 0), done);
            start = i;
        }
    }
done:
    free(buf.data);
    return st;
}

static sq_status bytelevel_piece(const sq_tk_pre *pre, const sq_tk_piece *p, sq_tk_pieces *out)
{
    const sq_tk_bytemap *map = sq_tk_bytelevel_map();
    sq_tk_buf text = {0}, mapped = {0};
    sq_tk_pieces split = {0};
    sq_status st;
    if (pre->add_prefix_space && (p->len == 0 || p->s[0] != ' '))
        SQ_TRY_GOTO(st, sq_tk_buf_append(&text, " ", 1), done);
    SQ_TRY_GOTO(st, sq_tk_buf_append(&text, p->s, p->len), done);
    sq_tk_piece whole = {text.data, text.len, p->at_start};
    if (pre->re)
        SQ_TRY_GOTO(st, split_piece(&whole, pre->re, SQ_SPLIT_ISOLATED, false, &split), done);
    else if (text.len)
        SQ_TRY_GOTO(st, sq_tk_pieces_push(&split, text.data, text.len, p->at_start), done);
    for (size_t i = 0; i < split.n; i++) {
        mapped.len = 0;
        for (size_t j = 0; j < split.items[i].len; j++) {
            unsigned char b = (unsigned char)split.items[i].s[j];
            SQ_TRY_GOTO(st, sq_tk_buf_append(&mapped, map->enc[b], map->enc_len[b]), done);
        }
        SQ_TRY_GOTO(st, sq_tk_pieces_push(out, mapped.data, mapped.len, split.items[i].at_start), done);
    }
done:
    free(text.data);
    free(mapped.data);
    sq_tk_pieces_free(&split);
    return st;
}

sq_status sq_tk_pretokenize(const sq_tokenizer *t, const char *s, size_t len, bool at_start, sq_tk_pieces *out)
{
    sq_tk_pieces cur = {0}, next = {0};
    sq_status st;
    SQ_TRY_GOTO(st, sq_tk_pieces_push(&cur, s, len, at_start), done);
    for (size_t k = 0; k < t->n_pres; k++) {
        const sq_tk_pre *pre = &t->pres[k];
        for (size_t i = 0; i < cur.n; i++) {
            const sq_tk_piece *p = &cur.items[i];
            switch (pre->kind) {
            case SQ_PRE_SPLIT:
            case SQ_PRE_DIGITS:
                SQ_TRY_GOTO(st, split_piece(p, pre->re, pre->behavior, pre->invert, &next), done);
                break;
            case SQ_PRE_METASPACE:
                SQ_TRY_GOTO(st, metaspace_piece(pre, p, &next), done);
                break;
            case SQ_PRE_BYTELEVEL:
                SQ_TRY_GOTO(st, bytelevel_piece(pre, p, &next), done);
                break;
            }
        }
        sq_tk_pieces_free(&cur);
        cur = next;
        next = (sq_tk_pieces){0};
    }
    for (size_t i = 0; i < cur.n; i++)
        if (cur.items[i].len)
            SQ_TRY_GOTO(st, sq_tk_pieces_push(out, cur.items[i].s, cur.items[i].len, cur.items[i].at_start), done);
done:
    sq_tk_pieces_free(&cur);
    sq_tk_pieces_free(&next);
    return st;
}
