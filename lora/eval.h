/* eval.h: perplexity of a base with a LoRA adapter applied, by the protocol of
 * model/perplexity.h (non-overlapping windows of seqlen, every token but a
 * window's first scored), through the training forward (lora/trainer.h)
 * without dropout — what `shardq eval --adapter DIR` runs. */
#ifndef SQ_LORA_EVAL_H
#define SQ_LORA_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "lora/adapter.h"
#include "lora/base.h"
#include "model/perplexity.h"

/* token_nll (optional, host) receives windows * (seqlen - 1) values, window by window. */
sq_status sq_lora_perplexity(sq_lora_base *b, sq_lora_adapter *a, const int32_t *ids, size_t n, int seqlen,
                             int max_windows, sq_perplexity_result *r, float *token_nll);

/* The same for the PEFT adapter at adapter_dir (lora/peft_import.h) over the model of ckpt; an
 * adapter trained on an NF4 base gets the base quantized to NF4 as training saw it. */
sq_status sq_lora_eval_adapter(const char *adapter_dir, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                               const int32_t *ids, size_t n, int seqlen, int max_windows, sq_perplexity_result *r,
                               float *token_nll);

#endif
