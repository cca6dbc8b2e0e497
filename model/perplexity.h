/* perplexity.h: perplexity of a model over a token stream, as the GPTQ paper
 * measures it on WikiText-2 and C4: the stream is cut into
 * nsamples = ntokens / seqlen non-overlapping windows (the tail is dropped),
 * each window is scored at positions 1..seqlen-1 (every token but the first,
 * given the tokens before it in the same window), and
 * ppl = exp(mean NLL over all scored tokens). */
#ifndef SQ_MODEL_PERPLEXITY_H
#define SQ_MODEL_PERPLEXITY_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/forward.h"

typedef struct {
    int seqlen;           /* window length (>= 2) */
    int max_windows;      /* 0: all windows */
    int windows_per_pass; /* windows streamed through the layers together (0: a memory-bounded default) */
    int micro_batch;      /* windows per layer call inside a pass (0: as many as fit 4 GiB of scratch) */
    int kv_cache_bits;    /* 0: exact; else simulated quantized KV cache */
    int act_bits;         /* 0: exact; else every decoder linear's input fake-quantized per token (W8A8's A8) */
    const struct sq_kv_cache *kv_cache; /* NULL, or static scales / KIVI (model/kv_cache.h) */
    int logits_chunk_rows; /* rows per LM-head call (0: as many as fit 128 MiB of logits) */
    /* Progress: after each layer of a pass, a line once this many seconds have passed since the
     * last line (0: after every layer), so that long windows are never silent for long; and a
     * line after each pass. */
    double progress_seconds;
} sq_perplexity_options;

/* The progress interval shardq uses unless told otherwise. */
#define SQ_PROGRESS_SECONDS 5.0

typedef struct {
    int windows;     /* windows scored */
    long tokens;     /* tokens scored: windows * (seqlen - 1) */
    long data_tokens; /* tokens in the whole stream */
    double nll;      /* mean NLL per scored token (nats) */
    double ppl;      /* exp(nll) */
} sq_perplexity_result;

sq_status sq_perplexity(sq_model *m, const int32_t *ids, size_t n_ids, const sq_perplexity_options *opt,
                        sq_perplexity_result *result);

#endif
