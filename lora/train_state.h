/* train_state.h: a training checkpoint file — the adapter, the AdamW moments
 * and the step count — as one safetensors file:
 *   "params", "adam_m", "adam_v": F32 [n_params] in the adapter's layout,
 *   metadata {"train_step": "N", "n_params": "P", "r": "R"}.
 * Reading checks every shape against the adapter it is loaded into. */
#ifndef SQ_LORA_TRAIN_STATE_H
#define SQ_LORA_TRAIN_STATE_H

#include "core/status.h"
#include "lora/adapter.h"
#include "lora/optimizer.h"

sq_status sq_lora_state_write(const char *path, const sq_lora_adapter *a, const sq_lora_optimizer *o);
sq_status sq_lora_state_read(const char *path, sq_lora_adapter *a, sq_lora_optimizer *o);

#endif
