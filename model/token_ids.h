/* token_ids.h: a file of token ids written as whitespace-separated decimal
 * integers — a tokenizer-independent way to feed text to the model. */
#ifndef SQ_MODEL_TOKEN_IDS_H
#define SQ_MODEL_TOKEN_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Read every id of `path` into a new array (caller frees). Ids must be in
 * [0, vocab_size) when vocab_size > 0; anything else is SQ_ERR_FORMAT naming
 * the file and the 0-based index of the offending token. */
sq_status sq_read_token_ids(const char *path, int vocab_size, int32_t **ids, size_t *count);

#endif
