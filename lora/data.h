/* data.h: the training sequences of a qlora step and the order they are seen in.
 *
 * Plain text is tokenized whole (BOS first, model/corpus.h) and packed into
 * non-overlapping windows of seqlen tokens; every position but the last of a
 * window predicts the next token. Epoch e visits the windows in the order of
 * a Fisher-Yates shuffle drawn from splitmix64(seed + e), so the k-th
 * sequence of the run is a pure function of (seed, k): the data position of a
 * resumed job is its step count.
 *
 * JSONL has one object per line with a prompt and a completion field: a
 * sequence is BOS + prompt + completion + EOS, cut to seqlen and padded with
 * EOS; the loss is on the completion's tokens (and its EOS) only. A line that
 * is not such an object is refused with its line number.
 *
 * mask[t] = 1 when token t of a sequence is a loss target (predicted from t-1). */
#ifndef SQ_LORA_DATA_H
#define SQ_LORA_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
    int seqlen;
    int n_windows;
    int32_t *tokens; /* [n_windows, seqlen] */
    uint8_t *mask;   /* [n_windows, seqlen] */
    uint64_t seed;
    int epoch;       /* the epoch whose order `order` holds, -1 none */
    int *order;      /* [n_windows] */
} sq_lora_data;

/* Windows from a token stream; refuses (SQ_ERR_ARG, naming `origin`) fewer than one window. */
sq_status sq_lora_data_from_tokens(sq_lora_data *d, const int32_t *ids, size_t n, int seqlen, uint64_t seed,
                                   const char *origin);
/* Examples of a JSONL file, tokenized with the tokenizer of model_dir. */
sq_status sq_lora_data_from_jsonl(sq_lora_data *d, const char *model_dir, const char *path, const char *prompt_field,
                                  const char *completion_field, int seqlen, uint64_t seed);
/* Both arrays given (as received by a rank that did not read the file); takes ownership. */
void sq_lora_data_adopt(sq_lora_data *d, int32_t *tokens, uint8_t *mask, int n_windows, int seqlen, uint64_t seed);
void sq_lora_data_free(sq_lora_data *d);

/* The k-th sequence of the run (0-based over all epochs): its tokens and loss mask. */
sq_status sq_lora_data_sequence(sq_lora_data *d, long long k, const int32_t **tokens, const uint8_t **mask);

#endif
