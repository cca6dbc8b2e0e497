/* forward.c: embedding -> decoder layers (one resident at a time) -> final
 * norm -> LM head -> per-token NLL (see forward.h). */
#include "model/forward.h"

#include <string.h>

#include "kernels/kernels.h"
#include "model/device_tensor.h"

/* Upper bound on the floats of one chunk of logits (128 MiB). */
#define LOGITS_CHUNK_FLOATS ((size_t)32 << 20)
/* Default bound on a layer's scratch buffers (floats, 4 GiB) when no micro-batch is given: a
 * 7B layer takes 8 sequences of 2048 at a time, and each linear's weight is converted for the
 * GPU's tensor cores once per micro-batch (kn_linear_per_block). */
#define SCRATCH_FLOATS ((size_t)1 << 30)

/* Sequences per layer call: the caller's choice, else as many as fit SCRATCH_FLOATS (at least one). */
static int micro_batch_size(const sq_model_config *cfg, int requested, int n_seqs, int seq)
{
    if (requested > 0)
        return requested < n_seqs ? requested : n_seqs;
    size_t q_width = (size_t)cfg->num_heads * cfg->head_dim, kv_width = (size_t)cfg->num_kv_heads * cfg->head_dim;
    size_t per_row = 2 * (size_t)cfg->hidden_size + 2 * q_width + 2 * kv_width + 2 * (size_t)cfg->intermediate_size;
    size_t fit = SCRATCH_FLOATS / (per_row * seq);
    return fit < 1 ? 1 : fit > (size_t)n_seqs ? n_seqs : (int)fit;
}

sq_status sq_model_open(sq_model *m, const sq_model_config *cfg, const sq_checkpoint *ckpt)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->ckpt = ckpt;
    size_t table = (size_t)cfg->vocab_size * cfg->hidden_size;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&m->embed, table * sizeof(float)), fail);
    SQ_TRY_GOTO(st, sq_upload_checkpoint_tensor(m->embed, ckpt, "model.embed_tokens.weight", 2, cfg->vocab_size,
                                                cfg->hidden_size), fail);
    SQ_TRY_GOTO(st, kn_alloc((void **)&m->final_norm, (size_t)cfg->hidden_size * sizeof(float)), fail);
    SQ_TRY_GOTO(st, sq_upload_checkpoint_tensor(m->final_norm, ckpt, "model.norm.weight", 1, cfg->hidden_size, 0),
                fail);
    if (cfg->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else {
        SQ_TRY_GOTO(st, kn_alloc((void **)&m->lm_head, table * sizeof(float)), fail);
        SQ_TRY_GOTO(st, sq_upload_checkpoint_tensor(m->lm_head, ckpt, "lm_head.weight", 2, cfg->vocab_size,
                                                    cfg->hidden_size), fail);
    }
    SQ_TRY_GOTO(st, sq_layer_weights_alloc(&m->layer, cfg), fail);
    return SQ_OK;
fail:
    sq_model_close(m);
    return st;
}

void sq_model_close(sq_model *m)
{
    if (m->lm_head != m->embed)
        kn_free(m->lm_head);
    kn_free(m->embed);
    kn_free(m->final_norm);
    sq_layer_weights_free(&m->layer);
    memset(m, 0, sizeof *m);
}

/* Final norm, LM head and cross-entropy for the first seq-1 rows of each sequence,
 * in chunks of at most `chunk_rows` rows so the logits stay bounded. */
static sq_status head_nll_chunks(const sq_model *m, const float *x, const int32_t *ids_dev, int n_seqs, int seq,
                                 float *nll_dev, float *normed, float *logits, int chunk_rows)
{
    const sq_model_config *cfg = &m->cfg;
    const int hidden = cfg->hidden_size, vocab = cfg->vocab_size;
    for (int s = 0; s < n_seqs; s++) {
        for (int t0 = 0; t0 < seq - 1; t0 += chunk_rows) {
            int rows = seq - 1 - t0 < chunk_rows ? seq - 1 - t0 : chunk_rows;
            size_t row0 = (size_t)s * seq + t0;
            SQ_TRY(kn_rmsnorm(normed, x + row0 * hidden, m->final_norm, rows, hidden, cfg->rms_norm_eps));
            SQ_TRY(kn_linear(logits, normed, m->lm_head, NULL, rows, hidden, vocab));
            SQ_TRY(kn_cross_entropy(nll_dev + (size_t)s * (seq - 1) + t0, logits, ids_dev + row0 + 1, rows, vocab));
        }
    }
    return SQ_OK;
}

sq_status sq_model_head_nll(const sq_model *m, const float *x, const int32_t *ids, int n_seqs, int seq, float *nll,
                            int chunk_rows)
{
    if (n_seqs <= 0 || seq < 2)
        return sq_fail(SQ_ERR_ARG, "model head: need at least one sequence of 2 tokens (got %d x %d)", n_seqs, seq);
    const int hidden = m->cfg.hidden_size, vocab = m->cfg.vocab_size;
    const size_t n_tokens = (size_t)n_seqs * seq, n_nll = (size_t)n_seqs * (seq - 1);
    if (chunk_rows <= 0) {
        size_t fit = LOGITS_CHUNK_FLOATS / (size_t)vocab;
        chunk_rows = fit < 1 ? 1 : fit > (size_t)(seq - 1) ? seq - 1 : (int)fit;
    }
    int32_t *ids_dev = NULL;
    float *nll_dev = NULL, *normed = NULL, *logits = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&ids_dev, n_tokens * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&nll_dev, n_nll * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&normed, (size_t)chunk_rows * hidden * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&logits, (size_t)chunk_rows * vocab * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_upload(ids_dev, ids, n_tokens * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, head_nll_chunks(m, x, ids_dev, n_seqs, seq, nll_dev, normed, logits, chunk_rows), done);
    SQ_TRY_GOTO(st, kn_download(nll, nll_dev, n_nll * sizeof(float)), done);
done:
    kn_free(ids_dev);
    kn_free(nll_dev);
    kn_free(normed);
    kn_free(logits);
    return st;
}

sq_status sq_model_embed(const sq_model *m, const int32_t *ids, size_t n_tokens, float *x)
{
    if (n_tokens > INT32_MAX)
        return sq_fail(SQ_ERR_ARG, "model embed: %zu tokens is too many for one call", n_tokens);
    int32_t *ids_dev = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&ids_dev, n_tokens * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, kn_upload(ids_dev, ids, n_tokens * sizeof(int32_t)), done);
    st = kn_embedding(x, m->embed, ids_dev, (int)n_tokens, m->cfg.hidden_size, m->cfg.vocab_size);
done:
    kn_free(ids_dev);
    return st;
}

/* Load layer l (from `next` where it holds it), start uploading layer l + 1 into `next`, and push
 * every sequence through layer l, `micro` sequences at a time. */
static sq_status run_layer(sq_model *m, int l, float *x, int n_seqs, int seq, int micro, sq_layer_scratch *scratch,
                           const sq_layer_options *layer_opt, sq_layer_prefetch *next)
{
    SQ_TRY(sq_layer_weights_load_next(&m->layer, &m->cfg, m->ckpt, l, next));
    for (int s0 = 0; s0 < n_seqs; s0 += micro) {
        int b = n_seqs - s0 < micro ? n_seqs - s0 : micro;
        SQ_TRY(sq_layer_forward(&m->layer, &m->cfg, x + (size_t)s0 * seq * m->cfg.hidden_size, b, seq, scratch,
                                layer_opt));
    }
    return SQ_OK;
}

sq_status sq_model_sequence_nll(sq_model *m, const int32_t *ids, int n_seqs, int seq, float *nll,
                                const sq_forward_options *opt)
{
    const sq_model_config *cfg = &m->cfg;
    if (n_seqs <= 0 || seq < 2)
        return sq_fail(SQ_ERR_ARG, "model forward: need at least one sequence of 2 tokens (got %d x %d)", n_seqs, seq);
    const size_t n_tokens = (size_t)n_seqs * seq;
    int micro = micro_batch_size(cfg, opt ? opt->micro_batch : 0, n_seqs, seq);
    if ((long)micro * seq > INT32_MAX)
        return sq_fail(SQ_ERR_ARG, "model forward: micro-batch of %d x %d tokens is too large", micro, seq);
    sq_layer_options layer_opt = {.kv_cache_bits = opt ? opt->kv_cache_bits : 0,
                                  .act_bits = opt ? opt->act_bits : 0,
                                  .kv_cache = opt ? opt->kv_cache : NULL};

    float *x = NULL;
    sq_layer_scratch scratch = {0};
    sq_layer_prefetch next = {.layer = -1}; /* the next layer's tensors, uploaded while one computes */
    sq_status st;
    SQ_TRY_GOTO(st, sq_layer_prefetch_init(&next, m->ckpt, cfg->num_layers), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&x, n_tokens * cfg->hidden_size * sizeof(float)), done);
    SQ_TRY_GOTO(st, sq_layer_scratch_alloc(&scratch, cfg, micro * seq), done);
    SQ_TRY_GOTO(st, sq_model_embed(m, ids, n_tokens, x), done);
    for (int l = 0; l < cfg->num_layers; l++) {
        st = run_layer(m, l, x, n_seqs, seq, micro, &scratch, &layer_opt, &next);
        if (st != SQ_OK) {
            sq_fail_context(st, "layer %d", l);
            goto done;
        }
        if (opt && opt->on_layer)
            opt->on_layer(opt->on_layer_ctx, l + 1, cfg->num_layers);
    }
    st = sq_model_head_nll(m, x, ids, n_seqs, seq, nll, opt ? opt->logits_chunk_rows : 0);
done:
    sq_layer_prefetch_free(&next);
    sq_layer_scratch_free(&scratch);
    kn_free(x);
    return st;
}
