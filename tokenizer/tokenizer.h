/* tokenizer.h: a Hugging Face `tokenizer.json` BPE encoder/decoder.
 *
 * Covers the families shardq compresses and fine-tunes: Llama-2 / Mistral /
 * TinyLlama (sentencepiece-style BPE with byte_fallback, Prepend+Replace
 * normalizer or Metaspace pre-tokenizer), GPT-2 (ByteLevel) and Llama-3 / Qwen2
 * (Split on a regex + ByteLevel). The pipeline follows the reference library:
 * added (special) tokens are cut out of the raw text first, each remaining
 * segment is normalized, pre-tokenized and BPE-merged, then the post-processor
 * (or tokenizer_config.json's add_bos_token / add_eos_token) adds BOS/EOS.
 * Unsupported components are a clear SQ_ERR_UNSUPPORTED naming the JSON path.
 * Known approximations: NFC/NFKC normalizers are identity (exact for text already
 * in that form, as most is); added tokens' single_word and lstrip/rstrip use
 * ASCII word characters and whitespace. */
#ifndef SQ_TOKENIZER_TOKENIZER_H
#define SQ_TOKENIZER_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct sq_tokenizer sq_tokenizer;

/* Load `path`: a tokenizer.json file, or a directory holding tokenizer.json
 * (and optionally tokenizer_config.json, read for BOS/EOS settings). */
sq_status sq_tokenizer_load(const char *path, sq_tokenizer **out);

/* Load from an in-memory tokenizer.json (and optional tokenizer_config.json text,
 * NULL if none). `name` is used in error messages. */
sq_status sq_tokenizer_load_json(const char *name, const char *json, size_t len, const char *config_json,
                                 sq_tokenizer **out);

void sq_tokenizer_free(sq_tokenizer *tok);

/* Encode `len` bytes of UTF-8 `text` into a new array of ids (caller frees *ids;
 * *ids may be NULL when *n is 0). add_special adds the BOS/EOS the tokenizer
 * is configured to add. Special tokens written in the text are always recognised. */
sq_status sq_tokenizer_encode(const sq_tokenizer *tok, const char *text, size_t len, bool add_special, int32_t **ids,
                              size_t *n);

/* Decode ids into a new NUL-terminated UTF-8 string (caller frees). skip_special
 * drops special added tokens, as the reference's decode() does by default. */
sq_status sq_tokenizer_decode(const sq_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len);

/* BOS/EOS ids, -1 when the tokenizer has none. */
int32_t sq_tokenizer_bos_id(const sq_tokenizer *tok);
int32_t sq_tokenizer_eos_id(const sq_tokenizer *tok);

/* One past the largest id (model vocab and added tokens). */
size_t sq_tokenizer_vocab_size(const sq_tokenizer *tok);

/* The text of token `id` as stored in the vocab, NULL if out of range or unused. */
const char *sq_tokenizer_token(const sq_tokenizer *tok, int32_t id);

#endif
