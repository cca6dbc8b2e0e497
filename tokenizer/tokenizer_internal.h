/* tokenizer_internal.h: the loaded form of a tokenizer.json, shared by the
 * tokenizer_*.c files (tokenizer_load/_pipeline/_json: reading the JSON;
 * tokenizer_pretok: normalizers and pre-tokenizers; tokenizer_bpe: merges;
 * tokenizer_util: maps, buffers, UTF-8; tokenizer.c: encode/decode).
 * Not part of the public interface: use tokenizer/tokenizer.h. */
#ifndef SQ_TOKENIZER_TOKENIZER_INTERNAL_H
#define SQ_TOKENIZER_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/tokenizer.h"

/* ---- byte string -> two int32 values (open addressing, keys owned) ----
 * The one hash map of the tokenizer. The vocab maps a token to its id
 * (value[0]); the merges map the pair (left id, right id), as 8 bytes, to
 * (rank, merged id). */
typedef struct {
    char *key; /* NULL = empty slot */
    size_t len;
    int32_t value[2];
} sq_tk_slot;

typedef struct {
    sq_tk_slot *slots;
    size_t cap; /* power of two, 0 when empty */
    size_t count;
} sq_tk_map;

/* Insert or replace; `what` names the map in messages. */
sq_status sq_tk_map_put(sq_tk_map *m, const void *key, size_t len, int32_t v0, int32_t v1, const char *what);
const sq_tk_slot *sq_tk_map_find(const sq_tk_map *m, const void *key, size_t len); /* NULL if absent */
void sq_tk_map_free(sq_tk_map *m);

/* The vocab: token -> id. */
sq_status sq_tk_strmap_put(sq_tk_map *m, const char *key, size_t len, int32_t id);
int32_t sq_tk_strmap_get(const sq_tk_map *m, const char *key, size_t len); /* -1 if absent */

/* The merges: (left id, right id) -> value[0] rank, value[1] merged id. */
sq_status sq_tk_mergemap_put(sq_tk_map *m, int32_t left, int32_t right, int32_t rank, int32_t merged);
const sq_tk_slot *sq_tk_mergemap_get(const sq_tk_map *m, int32_t left, int32_t right);

/* ---- growable byte buffer and id vector ---- */
typedef struct {
    char *data;
    size_t len, cap;
} sq_tk_buf;

sq_status sq_tk_buf_append(sq_tk_buf *b, const char *s, size_t len);

typedef struct {
    int32_t *data;
    size_t len, cap;
} sq_tk_ids;

sq_status sq_tk_ids_push(sq_tk_ids *v, int32_t id);

/* ---- UTF-8 ---- */
/* Length of the UTF-8 sequence starting at s[0] (1..4) when well-formed within `avail`, else 0. */
size_t sq_tk_utf8_seq_len(const unsigned char *s, size_t avail);
/* Byte offset of the first malformed sequence, or len when the text is valid. */
size_t sq_tk_utf8_invalid_at(const char *s, size_t len);
/* Encode code point `cp` into out (up to 4 bytes); returns the byte count. */
size_t sq_tk_utf8_put(uint32_t cp, char *out);

/* GPT-2 byte <-> printable-char map used by ByteLevel. */
typedef struct {
    char enc[256][3]; /* UTF-8 of the char that stands for each byte */
    uint8_t enc_len[256];
    int16_t dec[324]; /* code point -> byte, -1 when not a byte char */
} sq_tk_bytemap;

const sq_tk_bytemap *sq_tk_bytelevel_map(void);

/* ---- pipeline components ---- */
typedef enum { SQ_NORM_PREPEND, SQ_NORM_REPLACE, SQ_NORM_REPLACE_REGEX, SQ_NORM_IDENTITY } sq_tk_norm_kind;

typedef struct {
    sq_tk_norm_kind kind;
    char *pattern; /* PREPEND: text to prepend; REPLACE: literal to find */
    size_t pattern_len;
    char *content; /* REPLACE*: replacement */
    size_t content_len;
    pcre2_code *re;
} sq_tk_norm;

typedef enum {
    SQ_SPLIT_REMOVED,
    SQ_SPLIT_ISOLATED,
    SQ_SPLIT_MERGED_WITH_PREVIOUS,
    SQ_SPLIT_MERGED_WITH_NEXT,
    SQ_SPLIT_CONTIGUOUS
} sq_tk_split_behavior;

typedef enum { SQ_PRE_BYTELEVEL, SQ_PRE_SPLIT, SQ_PRE_METASPACE, SQ_PRE_DIGITS } sq_tk_pre_kind;

typedef enum { SQ_PREPEND_ALWAYS, SQ_PREPEND_FIRST, SQ_PREPEND_NEVER } sq_tk_prepend_scheme;

typedef struct {
    sq_tk_pre_kind kind;
    pcre2_code *re; /* SPLIT, DIGITS, BYTELEVEL with use_regex */
    sq_tk_split_behavior behavior;
    bool invert;
    bool add_prefix_space;     /* BYTELEVEL */
    char replacement[5];       /* METASPACE, UTF-8 of the replacement char */
    sq_tk_prepend_scheme prepend; /* METASPACE */
    bool split;                /* METASPACE */
} sq_tk_pre;

typedef enum {
    SQ_DEC_BYTELEVEL,
    SQ_DEC_METASPACE,
    SQ_DEC_REPLACE,
    SQ_DEC_BYTEFALLBACK,
    SQ_DEC_FUSE,
    SQ_DEC_STRIP
} sq_tk_dec_kind;

typedef struct {
    sq_tk_dec_kind kind;
    char *pattern, *content; /* REPLACE; STRIP: content is the char to strip */
    size_t pattern_len, content_len;
    char replacement[5];     /* METASPACE */
    bool strip_first;        /* METASPACE: prepend_scheme != never */
    int start, stop;         /* STRIP */
} sq_tk_dec;

typedef struct {
    char *content;
    size_t len;
    char *match; /* what is searched for: content, normalized when `normalized` */
    size_t match_len;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} sq_tk_added;

/* Added tokens are matched in two passes, as the reference does: tokens with
 * normalized=false in the raw text, then tokens with normalized=true in each
 * normalized segment. */
enum { SQ_ADDED_RAW = 0, SQ_ADDED_NORMALIZED = 1 };

struct sq_tokenizer {
    char *name; /* file name for messages */
    /* model */
    sq_tk_map vocab;      /* model vocab: token -> id */
    sq_tk_map merges;     /* (left id, right id) -> (rank, merged id) */
    char **id_to_token;   /* [vocab_size], NULL for unused ids */
    size_t *token_len;
    size_t vocab_size;
    int32_t unk_id;       /* -1 when none */
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256]; /* <0xNN> ids, -1 when absent */
    /* added tokens, bucketed per pass by first byte of `match`, longest first */
    sq_tk_added *added;
    size_t n_added;
    size_t *added_by_byte[2][256];
    size_t added_by_byte_n[2][256];
    bool *is_special; /* [vocab_size] */
    /* pipeline */
    sq_tk_norm *norms;
    size_t n_norms;
    sq_tk_pre *pres;
    size_t n_pres;
    sq_tk_dec *decs;
    size_t n_decs;
    bool has_decoder;
    /* post-processing for a single sequence */
    sq_tk_ids prefix, suffix;
    int32_t bos_id, eos_id;
};

/* A piece of text moving through the pipeline (owned bytes). at_start marks
 * the piece that begins at offset 0 of the original input (Metaspace "first"). */
typedef struct {
    char *s;
    size_t len;
    bool at_start;
} sq_tk_piece;

typedef struct {
    sq_tk_piece *items;
    size_t n, cap;
} sq_tk_pieces;

sq_status sq_tk_pieces_push(sq_tk_pieces *p, const char *s, size_t len, bool at_start);
void sq_tk_pieces_free(sq_tk_pieces *p);

/* Apply the normalizers to a segment (replaces *buf). */
sq_status sq_tk_normalize(const sq_tokenizer *t, sq_tk_buf *seg);
/* Run the pre-tokenizers over one normalized segment; appends to out. */
sq_status sq_tk_pretokenize(const sq_tokenizer *t, const char *s, size_t len, bool at_start, sq_tk_pieces *out);
/* BPE-encode one pre-token, appending ids. */
sq_status sq_tk_bpe(const sq_tokenizer *t, const char *s, size_t len, sq_tk_ids *out);
/* Compile a pattern in UTF-8 + UCP mode (literal when `literal`). `where` names it for errors. */
sq_status sq_tk_compile(const char *where, const char *pattern, size_t len, bool literal, pcre2_code **out);

#endif
