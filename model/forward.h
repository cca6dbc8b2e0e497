/* forward.h: a whole Llama-family model run layer by layer, ending in
 * per-token negative log-likelihoods.
 *
 * Only one decoder layer's weights are resident on the device at a time (plus
 * the embedding table, the final norm and the LM head), so a model larger
 * than device memory still runs: each call streams all layers once over the
 * batch of sequences it is given. Logits are never materialised for all
 * tokens at once: the LM head runs on chunks of rows. */
#ifndef SQ_MODEL_FORWARD_H
#define SQ_MODEL_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/layer.h"

typedef struct {
    sq_model_config cfg;
    const sq_checkpoint *ckpt;
    float *embed;      /* device [vocab, hidden]: model.embed_tokens.weight */
    float *final_norm; /* device [hidden]: model.norm.weight */
    float *lm_head;    /* device [vocab, hidden]: lm_head.weight, or `embed` when tied */
    sq_layer_weights layer; /* the one resident layer */
} sq_model;

/* Load the embedding, final norm and LM head and allocate one layer's buffers.
 * The checkpoint must outlive the model. */
sq_status sq_model_open(sq_model *m, const sq_model_config *cfg, const sq_checkpoint *ckpt);
/* Safe on a zeroed or failed-to-open model. */
void sq_model_close(sq_model *m);

typedef struct {
    int micro_batch;   /* sequences pushed through a layer at once (0: as many as fit 4 GiB of scratch) */
    int kv_cache_bits; /* 0: exact attention; else simulated quantized KV cache (see sq_layer_options) */
    int act_bits;      /* 0: exact; else per-token fake-quantized linear inputs (see sq_layer_options) */
    const struct sq_kv_cache *kv_cache; /* NULL, or another KV cache treatment (model/kv_cache.h) */
    int logits_chunk_rows; /* rows per LM-head call (0: as many as fit 128 MiB of logits) */
    /* Called after each layer has taken every sequence (layers_done of num_layers), or NULL. */
    void (*on_layer)(void *ctx, int layers_done, int num_layers);
    void *on_layer_ctx;
} sq_forward_options;

/* The pieces, for callers that drive the layers themselves (calibration, pipelines). */

/* x (device) [n_tokens, hidden] := embedding rows of ids (host); an id outside the vocabulary is SQ_ERR_ARG. */
sq_status sq_model_embed(const sq_model *m, const int32_t *ids, size_t n_tokens, float *x);

/* From the last layer's output x (device) [n_seqs*seq, hidden] and the ids (host) of
 * those sequences: nll (host) as sq_model_sequence_nll describes it. The LM head
 * runs on `chunk_rows` rows at a time (0: as many as fit 128 MiB of logits). */
sq_status sq_model_head_nll(const sq_model *m, const float *x, const int32_t *ids, int n_seqs, int seq, float *nll,
                            int chunk_rows);

/* ids (host) holds n_seqs sequences of seq tokens. On return nll (host) holds
 * n_seqs * (seq - 1) values: nll[s*(seq-1) + t] = -log p(ids[s*seq+t+1] | ids[s*seq .. s*seq+t]). */
sq_status sq_model_sequence_nll(sq_model *m, const int32_t *ids, int n_seqs, int seq, float *nll,
                                const sq_forward_options *opt);

#endif
