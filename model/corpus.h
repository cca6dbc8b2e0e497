/* corpus.h: a text file turned into the token stream that calibration and
 * perplexity read: the whole file tokenized as one text with the model's own
 * tokenizer (tokenizer.json in the model directory), BOS prepended as the
 * tokenizer's configuration says, as the GPTQ reference evaluation does; or a
 * file of token ids, already tokenized. */
#ifndef SQ_MODEL_CORPUS_H
#define SQ_MODEL_CORPUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

sq_status sq_load_corpus_tokens(const char *model_dir, const char *text_path, int32_t **ids, size_t *count);

/* Either of the two forms a job's data takes: text (as above) or, when
 * `token_ids`, a file of whitespace-separated ids each below vocab_size. */
sq_status sq_load_corpus(const char *model_dir, const char *path, bool token_ids, int vocab_size, int32_t **ids,
                         size_t *count);

#endif
