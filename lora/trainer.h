/* trainer.h: forward and backward of the whole model with LoRA adapters over
 * one micro-batch, the frozen base brought in layer by layer (lora/base.h).
 *
 *   x = embed(ids)                                 [rows, H]
 *   for l in layers: x = layer_l(x)                (lora/train_layer.h)
 *   h = rmsnorm(x, final_norm); z = h lm_headᵀ    logits, never whole: vocabulary chunks
 *   loss = Σ_r w_r nll_r, nll_r = lse(z_r) - z_r[target_r]   (rows without a target: none)
 *   backward in reverse; d/dA, d/dB ADDED to adapter->grads.
 *
 * Memory: with recompute, the input of every layer is kept ([layers, rows, H])
 * and one tape is refilled by rerunning each layer's forward before its
 * backward; without, one tape per layer is kept from the forward. Both give
 * the same numbers (the dropout masks are keyed, not drawn). */
#ifndef SQ_LORA_TRAINER_H
#define SQ_LORA_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "lora/adapter.h"
#include "lora/base.h"
#include "lora/train_layer.h"

/* Where a micro-batch's time goes (seconds, summed over calls; the device is
 * synchronized at each phase boundary, a few times per layer). */
typedef enum {
    SQ_TRAIN_PHASE_DEQUANT,   /* bringing base layers in (NF4/GPTQ dequantization) */
    SQ_TRAIN_PHASE_FORWARD,   /* the layers' forward */
    SQ_TRAIN_PHASE_RECOMPUTE, /* the forward rerun before each layer's backward */
    SQ_TRAIN_PHASE_BACKWARD,  /* the layers' backward */
    SQ_TRAIN_PHASE_HEAD,      /* embedding, final norm, chunked LM head and loss, forward and backward */
    SQ_TRAIN_PHASE_COUNT
} sq_train_phase;

typedef struct {
    sq_lora_base *base;       /* borrowed */
    sq_lora_adapter *adapter; /* borrowed */
    bool recompute;
    int max_rows, vocab_chunk;
    sq_lora_tape *tapes; /* 1 with recompute, else num_layers */
    int n_tapes;
    sq_lora_work work;
    float *layer_inputs; /* recompute: [num_layers, max_rows, H] */
    float *x, *dx, *h, *dh, *logits, *ce_state, *nll, *lse, *row_weight; /* device */
    int32_t *ids, *targets;                                             /* device */
    double phase_seconds[SQ_TRAIN_PHASE_COUNT];
} sq_lora_trainer;

/* "dequant 1.2s, forward 3.4s, ..." into out. */
void sq_lora_trainer_phases(const sq_lora_trainer *t, char *out, size_t size);

/* max_rows = largest batch * seq; vocab_chunk = logits columns per LM-head call (0: up to 8 Mi floats). */
sq_status sq_lora_trainer_init(sq_lora_trainer *t, sq_lora_base *base, sq_lora_adapter *adapter, bool recompute,
                               int max_rows, int vocab_chunk);
void sq_lora_trainer_free(sq_lora_trainer *t);

/* One micro-batch of `batch` sequences of `seq` tokens. ids, targets (-1: no loss at that
 * row) and row_weight are host arrays of batch*seq. *loss = Σ_r w_r nll_r (summed in row
 * order in double). With `backward`, adapter->grads += d loss / d params. `seed` keys the
 * dropout masks (0 dropout: unused); without backward no dropout is applied (eval). */
sq_status sq_lora_trainer_run(sq_lora_trainer *t, const int32_t *ids, const int32_t *targets, const float *row_weight,
                              int batch, int seq, bool backward, uint64_t seed, double *loss, float *nll_out);

#endif
