/* corpus.h: a text file turned into the token stream that calibration and
 * perplexity read: the whole file tokenized as one text with the model's own
 * tokenizer (tokenizer.json in the model directory), BOS prepended as the
 * tokenizer's configuration says, as the GPTQ reference evaluation does. */
#ifndef SQ_MODEL_CORPUS_H
#define SQ_MODEL_CORPUS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

sq_status sq_load_corpus_tokens(const char *model_dir, const char *text_path, int32_t **ids, size_t *count);

#endif
