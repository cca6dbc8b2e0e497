/* tokenizer_util.c: the small data structures behind the tokenizer: a string ->
 * values hash map (the vocab, and the BPE merges keyed by id pairs), growable
 * buffers, UTF-8 checks and GPT-2's byte <-> printable-char table. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static sq_status map_grow(sq_tk_map *m, const char *what)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    sq_tk_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: %s map of %zu slots", what, cap);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key)
            continue;
        size_t j = hash_bytes(m->slots[i].key, m->slots[i].len) & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return SQ_OK;
}

/* The slot holding `key`, or the empty slot where it would go (m->cap > 0). */
static size_t map_probe(const sq_tk_map *m, const void *key, size_t len)
{
    size_t j = hash_bytes(key, len) & (m->cap - 1);
    while (m->slots[j].key && !(m->slots[j].len == len && !memcmp(m->slots[j].key, key, len)))
        j = (j + 1) & (m->cap - 1);
    return j;
}

sq_status sq_tk_map_put(sq_tk_map *m, const void *key, size_t len, int32_t v0, int32_t v1, const char *what)
{
    if ((m->count + 1) * 2 > m->cap)
        SQ_TRY(map_grow(m, what));
    sq_tk_slot *slot = &m->slots[map_probe(m, key, len)];
    if (!slot->key) {
        char *copy = malloc(len + 1);
        if (!copy)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: %s key of %zu bytes", what, len);
        memcpy(copy, key, len);
        copy[len] = 0;
        *slot = (sq_tk_slot){.key = copy, .len = len};
        m->count++;
    }
    slot->value[0] = v0;
    slot->value[1] = v1;
    return SQ_OK;
}

const sq_tk_slot *sq_tk_map_find(const sq_tk_map *m, const void *key, size_t len)
{
    if (!m->cap)
        return NULL;
    const sq_tk_slot *slot = &m->slots[map_probe(m, key, len)];
    return slot->key ? slot : NULL;
}

void sq_tk_map_free(sq_tk_map *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    *m = (sq_tk_map){0};
}

sq_status sq_tk_strmap_put(sq_tk_map *m, const char *key, size_t len, int32_t id)
{
    return sq_tk_map_put(m, key, len, id, 0, "vocab");
}

int32_t sq_tk_strmap_get(const sq_tk_map *m, const char *key, size_t len)
{
    const sq_tk_slot *slot = sq_tk_map_find(m, key, len);
    return slot ? slot->value[0] : -1;
}

sq_status sq_tk_mergemap_put(sq_tk_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged)
{
    int32_t pair[2] = {left, right};
    return sq_tk_map_put(m, pair, sizeof pair, rank, merged, "merge");
}

const sq_tk_slot *sq_tk_mergemap_get(const sq_tk_map *m, int32_t left, int32_t right)
{
    int32_t pair[2] = {left, right};
    return sq_tk_map_find(m, pair, sizeof pair);
}

sq_status sq_tk_buf_append(sq_tk_buf *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: buffer of %zu bytes", cap);
        b->data = data;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = 0;
    return SQ_OK;
}

sq_status sq_tk_ids_push(sq_tk_ids *v, int32_t id)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        int32_t *data = realloc(v->data, cap * sizeof *data);
        if (!data)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: %zu ids", cap);
        v->data = data;
        v->cap = cap;
    }
    v->data[v->len++] = id;
    return SQ_OK;
}

sq_status sq_tk_pieces_push(sq_tk_pieces *p, const char *s, size_t len, bool at_start)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        sq_tk_piece *items = realloc(p->items, cap * sizeof *items);
        if (!items)
            return sq_fail(SQ_ERR_NOMEM, "tokenizer: %zu pieces", cap);
        p->items = items;
        p->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "tokenizer: piece of %zu bytes", len);
    if (len)
        memcpy(copy, s, len);
    copy[len] = 0;
    p->items[p->n++] = (sq_tk_piece){copy, len, at_start};
    return SQ_OK;
}

void sq_tk_pieces_free(sq_tk_pieces *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->items[i].s);
    free(p->items);
    *p = (sq_tk_pieces){0};
}

size_t sq_tk_utf8_seq_len(const unsigned char *s, size_t avail)
{
    if (!avail)
        return 0;
    unsigned c = s[0];
    size_t n;
    uint32_t min;
    if (c < 0x80)
        return 1;
    else if ((c & 0xE0) == 0xC0)
        n = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, min = 0x10000;
    else
        return 0;
    if (n > avail)
        return 0;
    uint32_t cp = c & (0x7F >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

size_t sq_tk_utf8_invalid_at(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = sq_tk_utf8_seq_len((const unsigned char *)s + i, len - i);
        if (!n)
            return i;
        i += n;
    }
    return len;
}

size_t sq_tk_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's table: printable bytes stand for themselves, the other 68 bytes map,
 * in order, to code points 256, 257, ... so every byte is a visible char. */
static sq_tk_bytemap byte_map;
static pthread_once_t byte_map_once = PTHREAD_ONCE_INIT;

static void build_byte_map(void)
{
    uint32_t next = 256;
    for (int i = 0; i < 324; i++)
        byte_map.dec[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
        uint32_t cp = printable ? (uint32_t)b : next++;
        byte_map.enc_len[b] = (uint8_t)sq_tk_utf8_put(cp, byte_map.enc[b]);
        byte_map.dec[cp] = (int16_t)b;
    }
}

const sq_tk_bytemap *sq_tk_bytelevel_map(void)
{
    pthread_once(&byte_map_once, build_byte_map);
    return &byte_map;
}

sq_status sq_tk_compile(const char *where, const char *pattern, size_t len, bool literal, pcre2_code **out)
{
    int err = 0;
    PCRE2_SIZE off = 0;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    *out = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return sq_fail(SQ_ERR_FORMAT, "%s: regex does not compile at offset %zu: %s", where, (size_t)off,
                       (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
    return SQ_OK;
}
