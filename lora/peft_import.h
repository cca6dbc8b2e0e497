/* peft_import.h: a PEFT LoRA adapter directory (what lora/peft_export.h
 * writes, or peft's save_pretrained) read back for evaluation:
 * adapter_config.json (peft_type LORA, r, lora_alpha, target_modules as a
 * list, bias "none"), adapter_model.safetensors with every
 * base_model.model.model.layers.N.<module>.lora_A/B.weight of the right shape
 * (F32, F16 or BF16), and manifest.json's quantization.base_quant when there is
 * one (the base the adapter was trained on: "nf4" means the base is quantized
 * to NF4 at load, as training saw it). Every mismatch names the file and key. */
#ifndef SQ_LORA_PEFT_IMPORT_H
#define SQ_LORA_PEFT_IMPORT_H

#include "core/status.h"
#include "lora/adapter.h"
#include "model/config.h"

/* *base_quant (caller frees): "nf4", "gptq" or "none" (no manifest or no base_quant). */
sq_status sq_peft_import(const char *dir, const sq_model_config *cfg, sq_lora_adapter *a, char **base_quant);

#endif
