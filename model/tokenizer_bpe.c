/* tokenizer_bpe.c: the BPE merge loop for one pre-token.
 *
 * The word starts as one symbol per character (or, with byte_fallback, one
 * <0xNN> symbol per byte of a character missing from the vocab; otherwise the
 * unk token, fused when fuse_unk). Then the adjacent pair with the lowest merge
 * rank is merged, leftmost first on ties, until no pair has a rank. This is the
 * reference's order; a linear scan over cached pair ranks keeps it simple. */
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer_internal.h"

static int32_t pair_rank(const sq_tokenizer *t, const int32_t *sym, size_t i, int32_t *merged)
{
    const sq_tk_merge_slot *m = sq_tk_mergemap_get(&t->merges, sym[i], sym[i + 1]);
    if (!m)
        return INT32_MAX;
    *merged = m->merged;
    return m->rank;
}

static sq_status initial_symbols(const sq_tokenizer *t, const char *s, size_t len, sq_tk_ids *sym)
{
    bool last_was_unk = false;
    size_t i = 0;
    while (i < len) {
        size_t n = sq_tk_utf8_seq_len((const unsigned char *)s + i, len - i);
        if (!n)
            n = 1; /* malformed byte: looked up (and fallen back) alone */
        int32_t id = sq_tk_strmap_get(&t->vocab, s + i, n);
        if (id >= 0) {
            SQ_TRY(sq_tk_ids_push(sym, id));
            last_was_unk = false;
        } else {
            bool all_bytes = t->byte_fallback;
            for (size_t j = 0; all_bytes && j < n; j++)
                all_bytes = t->byte_ids[(unsigned char)s[i + j]] >= 0;
            if (all_bytes) {
                for (size_t j = 0; j < n; j++)
                    SQ_TRY(sq_tk_ids_push(sym, t->byte_ids[(unsigned char)s[i + j]]));
                last_was_unk = false;
            } else if (t->unk_id >= 0) {
                if (!(t->fuse_unk && last_was_unk))
                    SQ_TRY(sq_tk_ids_push(sym, t->unk_id));
                last_was_unk = true;
            }
        }
        i += n;
    }
    return SQ_OK;
}

sq_status sq_tk_bpe(const sq_tokenizer *t, const char *s, size_t len, sq_tk_ids *out)
{
    if (t->ignore_merges) {
        int32_t whole = sq_tk_strmap_get(&t->vocab, s, len);
        if (whole >= 0)
            return sq_tk_ids_push(out, whole);
    }
    sq_tk_ids sym = {0};
    int32_t *rank = NULL, *merged = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, initial_symbols(t, s, len, &sym), done);
    size_t n = sym.len;
    if (n > 1) {
        rank = malloc((n - 1) * sizeof *rank);
        merged = malloc((n - 1) * sizeof *merged);
        if (!rank || !merged) {
            st = sq_fail(SQ_ERR_NOMEM, "tokenizer: BPE word of %zu symbols", n);
            goto done;
        }
        for (size_t i = 0; i + 1 < n; i++)
            rank[i] = pair_rank(t, sym.data, i, &merged[i]);
    }
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best])
                best = i;
        if (rank[best] == INT32_MAX)
            break;
        sym.data[best] = merged[best];
        memmove(sym.data + best + 1, sym.data + best + 2, (n - best - 2) * sizeof *sym.data);
        if (best + 2 < n) {
            memmove(rank + best + 1, rank + best + 2, (n - best - 3) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (n - best - 3) * sizeof *merged);
        }
        n--;
        if (best > 0)
            rank[best - 1] = pair_rank(t, sym.data, best - 1, &merged[best - 1]);
        if (best + 1 < n)
            rank[best] = pair_rank(t, sym.data, best, &merged[best]);
    }
    for (size_t i = 0; i < n; i++)
        SQ_TRY_GOTO(st, sq_tk_ids_push(out, sym.data[i]), done);
done:
    free(sym.data);
    free(rank);
    free(merged);
    return st;
}
