/* trainer.c: the whole-model LoRA forward/backward (trainer.h). */
#include "lora/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kernels/kernels.h"

#define LOGITS_FLOATS ((size_t)8 << 20)

static sq_status alloc_f(float **p, size_t n) { return kn_alloc((void **)p, n * sizeof(float)); }

/* Close the phase that began at *clock (device work included) and start the next one. */
static sq_status phase_end(sq_lora_trainer *t, sq_train_phase phase, double *clock)
{
    SQ_TRY(kn_synchronize());
    double now = sq_now_seconds();
    t->phase_seconds[phase] += now - *clock;
    *clock = now;
    return SQ_OK;
}

void sq_lora_trainer_phases(const sq_lora_trainer *t, char *out, size_t size)
{
    static const char *names[SQ_TRAIN_PHASE_COUNT] = {"dequant", "forward", "recompute", "backward", "head"};
    size_t used = 0;
    out[0] = '\0';
    for (int p = 0; p < SQ_TRAIN_PHASE_COUNT && used < size; p++)
        used += (size_t)snprintf(out + used, size - used, "%s%s %.2fs", p ? ", " : "", names[p], t->phase_seconds[p]);
}

sq_status sq_lora_trainer_init(sq_lora_trainer *t, sq_lora_base *base, sq_lora_adapter *adapter, bool recompute,
                               int max_rows, int vocab_chunk)
{
    memset(t, 0, sizeof *t);
    const sq_model_config *cfg = &base->model.cfg;
    const size_t H = (size_t)cfg->hidden_size, rows = (size_t)max_rows;
    t->base = base;
    t->adapter = adapter;
    t->recompute = recompute;
    t->max_rows = max_rows;
    if (vocab_chunk <= 0) {
        size_t fit = LOGITS_FLOATS / rows;
        vocab_chunk = fit < 1 ? 1 : fit > (size_t)cfg->vocab_size ? cfg->vocab_size : (int)fit;
    }
    t->vocab_chunk = vocab_chunk < cfg->vocab_size ? vocab_chunk : cfg->vocab_size;
    t->n_tapes = recompute ? 1 : cfg->num_layers;
    t->tapes = calloc((size_t)t->n_tapes, sizeof *t->tapes);
    sq_status st = t->tapes ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "lora trainer: cannot allocate tapes");
    for (int i = 0; st == SQ_OK && i < t->n_tapes; i++)
        st = sq_lora_tape_alloc(&t->tapes[i], cfg, adapter, max_rows);
    if (st == SQ_OK)
        st = sq_lora_work_alloc(&t->work, cfg, adapter, max_rows);
    if (st == SQ_OK && recompute)
        st = alloc_f(&t->layer_inputs, (size_t)cfg->num_layers * rows * H);
    float **hidden[] = {&t->x, &t->dx, &t->h, &t->dh};
    for (size_t i = 0; st == SQ_OK && i < sizeof hidden / sizeof *hidden; i++)
        st = alloc_f(hidden[i], rows * H);
    if (st == SQ_OK)
        st = alloc_f(&t->logits, rows * (size_t)t->vocab_chunk);
    if (st == SQ_OK)
        st = alloc_f(&t->ce_state, 3 * rows);
    float **per_row[] = {&t->nll, &t->lse, &t->row_weight};
    for (size_t i = 0; st == SQ_OK && i < sizeof per_row / sizeof *per_row; i++)
        st = alloc_f(per_row[i], rows);
    if (st == SQ_OK)
        st = kn_alloc((void **)&t->ids, rows * sizeof(int32_t));
    if (st == SQ_OK)
        st = kn_alloc((void **)&t->targets, rows * sizeof(int32_t));
    if (st != SQ_OK)
        sq_lora_trainer_free(t);
    return st;
}

void sq_lora_trainer_free(sq_lora_trainer *t)
{
    for (int i = 0; t->tapes && i < t->n_tapes; i++)
        sq_lora_tape_free(&t->tapes[i]);
    free(t->tapes);
    sq_lora_work_free(&t->work);
    float *bufs[] = {t->layer_inputs, t->x, t->dx, t->h, t->dh, t->logits, t->ce_state, t->nll, t->lse,
                     t->row_weight};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        kn_free(bufs[i]);
    kn_free(t->ids);
    kn_free(t->targets);
    memset(t, 0, sizeof *t);
}

/* Logits of vocabulary columns [v0, v0+n) for the normed rows h. */
static sq_status chunk_logits(sq_lora_trainer *t, int rows, int v0, int n)
{
    const sq_model *m = &t->base->model;
    const int H = m->cfg.hidden_size;
    return kn_linear(t->logits, t->h, m->lm_head + (size_t)v0 * H, NULL, rows, H, n);
}

/* h = rmsnorm(x); nll per row over vocabulary chunks (online logsumexp). */
static sq_status head_forward(sq_lora_trainer *t, int rows)
{
    const sq_model *m = &t->base->model;
    const int H = m->cfg.hidden_size, vocab = m->cfg.vocab_size;
    SQ_TRY(kn_rmsnorm(t->h, t->x, m->final_norm, rows, H, m->cfg.rms_norm_eps));
    SQ_TRY(kn_ce_begin(t->ce_state, rows));
    for (int v0 = 0; v0 < vocab; v0 += t->vocab_chunk) {
        int n = vocab - v0 < t->vocab_chunk ? vocab - v0 : t->vocab_chunk;
        SQ_TRY(chunk_logits(t, rows, v0, n));
        SQ_TRY(kn_ce_chunk_forward(t->ce_state, t->logits, t->targets, rows, v0, n));
    }
    return kn_ce_finish(t->nll, t->lse, t->ce_state, t->targets, rows);
}

/* loss = Σ w_r nll_r: dz per chunk (logits recomputed), dh = Σ_chunks dz · lm_head chunk,
 * then through the final norm into dx. */
static sq_status head_backward(sq_lora_trainer *t, int rows)
{
    const sq_model *m = &t->base->model;
    const int H = m->cfg.hidden_size, vocab = m->cfg.vocab_size;
    SQ_TRY(kn_zero(t->dh, (size_t)rows * H * sizeof(float)));
    for (int v0 = 0; v0 < vocab; v0 += t->vocab_chunk) {
        int n = vocab - v0 < t->vocab_chunk ? vocab - v0 : t->vocab_chunk;
        SQ_TRY(chunk_logits(t, rows, v0, n));
        SQ_TRY(kn_ce_chunk_backward(t->logits, t->lse, t->targets, t->row_weight, rows, v0, n));
        /* z = h lm_head_chunkᵀ: dh += dz lm_head_chunk */
        SQ_TRY(kn_linear_backward(t->dh, NULL, t->logits, t->h, m->lm_head + (size_t)v0 * H, rows, H, n, true));
    }
    SQ_TRY(kn_zero(t->dx, (size_t)rows * H * sizeof(float)));
    return kn_rmsnorm_backward(t->dx, t->dh, t->x, m->final_norm, rows, H, m->cfg.rms_norm_eps);
}

static uint64_t layer_seed(uint64_t seed, int layer) { return seed * 0x9e3779b97f4a7c15ull + (uint64_t)layer * 0x100000001b3ull; }

static sq_status layers_forward(sq_lora_trainer *t, int batch, int seq, uint64_t seed)
{
    sq_lora_base *b = t->base;
    const sq_model_config *cfg = &b->model.cfg;
    const size_t n_hidden = (size_t)batch * seq * cfg->hidden_size;
    double clock = sq_now_seconds();
    for (int l = 0; l < cfg->num_layers; l++) {
        SQ_TRY(sq_lora_base_load_layer(b, l));
        SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_DEQUANT, &clock));
        sq_lora_tape *tape = &t->tapes[t->recompute ? 0 : l];
        if (t->recompute)
            SQ_TRY(kn_copy(t->layer_inputs + (size_t)l * t->max_rows * cfg->hidden_size, t->x,
                           n_hidden * sizeof(float)));
        SQ_TRY(sq_lora_layer_forward(&b->model.layer, t->adapter, cfg, l, t->x, t->x, batch, seq, tape, &t->work,
                                     layer_seed(seed, l)));
        SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_FORWARD, &clock));
    }
    return SQ_OK;
}

static sq_status layers_backward(sq_lora_trainer *t, int batch, int seq, uint64_t seed)
{
    sq_lora_base *b = t->base;
    const sq_model_config *cfg = &b->model.cfg;
    double clock = sq_now_seconds();
    for (int l = cfg->num_layers - 1; l >= 0; l--) {
        SQ_TRY(sq_lora_base_load_layer(b, l));
        SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_DEQUANT, &clock));
        sq_lora_tape *tape = &t->tapes[t->recompute ? 0 : l];
        /* refill the tape from the layer's saved input (its output is not needed); the last
         * layer's tape is still the one its forward filled */
        if (t->recompute && l < cfg->num_layers - 1) {
            SQ_TRY(sq_lora_layer_forward(&b->model.layer, t->adapter, cfg, l,
                                         t->layer_inputs + (size_t)l * t->max_rows * cfg->hidden_size, NULL, batch,
                                         seq, tape, &t->work, layer_seed(seed, l)));
            SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_RECOMPUTE, &clock));
        }
        SQ_TRY(sq_lora_layer_backward(&b->model.layer, t->adapter, cfg, l, t->dx, batch, seq, tape, &t->work,
                                      layer_seed(seed, l)));
        SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_BACKWARD, &clock));
    }
    return SQ_OK;
}

sq_status sq_lora_trainer_run(sq_lora_trainer *t, const int32_t *ids, const int32_t *targets, const float *row_weight,
                              int batch, int seq, bool backward, uint64_t seed, double *loss, float *nll_out)
{
    const sq_model_config *cfg = &t->base->model.cfg;
    const int rows = batch * seq;
    if (batch <= 0 || seq <= 0 || rows > t->max_rows)
        return sq_fail(SQ_ERR_ARG, "lora trainer: batch %d x seq %d exceeds its %d rows", batch, seq, t->max_rows);
    for (int r = 0; r < rows; r++)
        if (targets[r] >= cfg->vocab_size)
            return sq_fail(SQ_ERR_ARG, "lora trainer: target %d at row %d is outside the vocabulary", targets[r], r);
    t->work.dropout = backward ? t->adapter->dropout : 0.0f; /* evaluation: no dropout */
    double clock = sq_now_seconds();
    SQ_TRY(kn_upload(t->ids, ids, (size_t)rows * sizeof(int32_t)));
    SQ_TRY(kn_upload(t->targets, targets, (size_t)rows * sizeof(int32_t)));
    SQ_TRY(kn_upload(t->row_weight, row_weight, (size_t)rows * sizeof(float)));
    SQ_TRY(kn_embedding(t->x, t->base->model.embed, t->ids, rows, cfg->hidden_size, cfg->vocab_size));
    SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_HEAD, &clock));
    SQ_TRY(layers_forward(t, batch, seq, seed));
    clock = sq_now_seconds();
    SQ_TRY(head_forward(t, rows));
    float *nll = nll_out ? nll_out : malloc(sizeof(float) * rows);
    if (!nll)
        return sq_fail(SQ_ERR_NOMEM, "lora trainer: cannot hold %d losses", rows);
    sq_status st = kn_download(nll, t->nll, sizeof(float) * rows);
    double sum = 0.0;
    for (int r = 0; r < rows; r++)
        sum += targets[r] < 0 ? 0.0 : (double)row_weight[r] * nll[r];
    *loss = sum;
    if (nll != nll_out)
        free(nll);
    SQ_TRY(st);
    if (!backward)
        return phase_end(t, SQ_TRAIN_PHASE_HEAD, &clock);
    SQ_TRY(head_backward(t, rows));
    SQ_TRY(phase_end(t, SQ_TRAIN_PHASE_HEAD, &clock));
    return layers_backward(t, batch, seq, seed);
}
