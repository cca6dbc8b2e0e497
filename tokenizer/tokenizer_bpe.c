/* tokenizer_bpe.c: the BPE merge loop for one pre-token.
 *
 * The word starts as one symbol per character (or, with byte_fallback, one
 * <0xNN> symbol per byte of a character missing from the vocab; otherwise the
 * unk token, fused when fuse_unk). Then the adjacent pair with the lowest merge
 * rank is merged, leftmost first on ties, until no pair has a rank. As in the
 * reference, candidate pairs sit in a min-heap keyed by (rank, position) over a
 * linked list of symbols, so a word of n symbols costs O(n log n): Llama-2
 * style tokenizers have no pre-tokenizer and feed whole documents as one word. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

typedef struct {
    int32_t rank;
    int32_t merged;
    size_t pos; /* index of the pair's left symbol */
} candidate;

typedef struct {
    candidate *items;
    size_t n, cap;
} heap;

static bool before(const candidate *a, const candidate *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static sq_status heap_push(heap *h, candidate c)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        candidate *items = realloc(h->items, cap * sizeof *items);
        if (!items)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: BPE heap of %zu pairs", cap);
        h->items = items;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&c, &h->items[(i - 1) / 2])) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = c;
    return SQ_OK;
}

static candidate heap_pop(heap *h)
{
    candidate top = h->items[0], last = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && before(&h->items[child + 1], &h->items[child]))
            child++;
        if (!before(&h->items[child], &last))
            break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->n)
        h->items[i] = last;
    return top;
}

#define NONE ((size_t)-1)

/* Queue the pair starting at symbol `left` if the merges know it. */
static sq_status queue_pair(const sq_tokenizer *t, heap *h, const int32_t *sym, const size_t *next, size_t left)
{
    if (left == NONE || next[left] == NONE)
        return SQ_OK;
    const sq_tk_slot *m = sq_tk_mergemap_get(&t->merges, sym[left], sym[next[left]]);
    return m ? heap_push(h, (candidate){m->value[0], m->value[1], left}) : SQ_OK;
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
    size_t *prev = NULL, *next = NULL;
    heap h = {0};
    sq_status st;
    SQ_TRY_GOTO(st, initial_symbols(t, s, len, &sym), done);
    size_t n = sym.len;
    if (n == 0)
        goto done;
    prev = malloc(n * sizeof *prev);
    next = malloc(n * sizeof *next);
    if (!prev || !next) {
        st = sq_fail(SQ_ERR_NOMEM, "tokenizer: BPE word of %zu symbols", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        prev[i] = i ? i - 1 : NONE;
        next[i] = i + 1 < n ? i + 1 : NONE;
    }
    for (size_t i = 0; i + 1 < n; i++)
        SQ_TRY_GOTO(st, queue_pair(t, &h, sym.data, next, i), done);
    while (h.n) {
        candidate c = heap_pop(&h);
        size_t right = next[c.pos];
        if (sym.data[c.pos] < 0 || right == NONE)
            continue;
        const sq_tk_slot *m = sq_tk_mergemap_get(&t->merges, sym.data[c.pos], sym.data[right]);
        if (!m || m->value[1] != c.merged)
            continue; /* stale: a neighbour changed since this pair was queued */
        sym.data[c.pos] = c.merged;
        sym.data[right] = -1;
        next[c.pos] = next[right];
        if (next[right] != NONE)
            prev[next[right]] = c.pos;
        SQ_TRY_GOTO(st, queue_pair(t, &h, sym.data, next, prev[c.pos]), done);
        SQ_TRY_GOTO(st, queue_pair(t, &h, sym.data, next, c.pos), done);
    }
    for (size_t i = 0; i != NONE; i = next[i])
        SQ_TRY_GOTO(st, sq_tk_ids_push(out, sym.data[i]), done);
done:
    free(sym.data);
    free(prev);
    free(next);
    free(h.items);
    return st;
}
