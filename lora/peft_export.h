/* peft_export.h: a trained adapter written as peft writes one, so that
 * peft.PeftModel.from_pretrained(base, DIR) loads it as it is:
 *
 *   adapter_config.json    {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
 *                           "lora_dropout", "target_modules": [...], "bias": "none",
 *                           "base_model_name_or_path", "fan_in_fan_out": false, "inference_mode": true, ...}
 *   adapter_model.safetensors   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [r, in],
 *                               ...lora_B.weight [out, r] (F32), "mlp." for gate/up/down
 *   manifest.json          shardq-manifest/1, method "qlora", source_model = the base,
 *                          quantization {"base_quant": ...}, metrics = the training metrics */
#ifndef SQ_LORA_PEFT_EXPORT_H
#define SQ_LORA_PEFT_EXPORT_H

#include <jansson.h>

#include "core/status.h"
#include "lora/adapter.h"

sq_status sq_peft_export(const sq_lora_adapter *a, char *const *target_names, int n_targets, const char *base_model,
                         const char *base_quant, json_t *metrics, const char *dir);

#endif
