/* gptq_checkpoint.h: write a GPTQ checkpoint directory, and read its linears back.
 *
 * Writing (final assembly after a gptq step):
 *   - every quantized linear `L` (e.g. "model.layers.0.self_attn.q_proj")
 *     replaces its `L.weight` by `L.qweight`, `L.qzeros`, `L.scales`, `L.g_idx`
 *     (quant/gptq_pack.h); its bias, if any, stays as `L.bias`;
 *   - every other float tensor is converted to fp16 (integer tensors are copied);
 *   - tensors go to `model.safetensors`, or to shards
 *     `model-0000K-of-0000N.safetensors` with `model.safetensors.index.json`
 *     when they exceed max_shard_bytes;
 *   - `config.json` is the source's plus "torch_dtype": "float16" and
 *     "quantization_config": {"quant_method": "gptq", "bits", "group_size",
 *     "desc_act", "sym", "damp_percent", "static_groups", "true_sequential",
 *     "checkpoint_format": "gptq"}; the same object also goes to
 *     `quantize_config.json` (what AutoGPTQ and GPTQModel read);
 *     (plus the request's extra_config entries, e.g. a sparsity_config);
 *   - tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 *     tokenizer.model and generation_config.json are copied when present;
 *   - `manifest.json` (store/manifest.h) is written last, covering every other
 *     file written and the request's extra_files (see model/checkpoint_files.h).
 * Every file is written atomically. Reading it back: model/gptq_reader.h. */
#ifndef SQ_QUANT_GPTQ_CHECKPOINT_H
#define SQ_QUANT_GPTQ_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"
#include "model/checkpoint.h"
#include "quant/gptq_pack.h"

/* Supplies the packed tensors of one quantized linear when the writer needs
 * them (so results can be loaded lazily from per-layer artifacts). The writer
 * frees `packed` with sq_gptq_packed_free. */
typedef sq_status (*sq_gptq_linear_source)(void *ctx, const char *linear, sq_gptq_packed *packed);

typedef struct {
    const sq_checkpoint *source;      /* the unquantized model (config, tokenizer read from its dir) */
    const char *const *linears;       /* names of the quantized linears, without ".weight" */
    int n_linears;
    sq_gptq_linear_source get_linear;
    void *ctx;
    const sq_quant_options *options;  /* recorded in quantization_config */
    const int *linear_bits;           /* per linear (mixed precision), or NULL: options->bits for all; the
                                         widths other than options->bits go into quantization_config's
                                         "dynamic" (sq_gptq_dynamic) */
    uint64_t max_shard_bytes;         /* 0: 512 MiB (shards are hashed in parallel for the manifest) */
    json_t *extra_config;             /* merged into config.json, or NULL */
    const char *const *extra_files;   /* files the caller already wrote into out_dir, for the manifest */
    int n_extra_files;
    const char *method;               /* the manifest's method ("rtn", "gptq", ...); NULL: "gptq" */
} sq_gptq_checkpoint_request;

/* The "quantization_config" object above, for `opt` (new reference). */
json_t *sq_gptq_quantization_config(const sq_quant_options *opt);

/* GPTQModel's per-module overrides (as vLLM reads them: the first key whose regex, after its
 * "+:" prefix, re.match-es a module's name applies): {"+:^model\\.layers\\.0\\.mlp\\.down_proj$":
 * {"bits": 8}, ...} for each of the n linears whose width differs from opt->bits (new reference). */
json_t *sq_gptq_dynamic(const sq_quant_options *opt, const char *const *linears, const int *bits, int n);

/* Write the checkpoint into `out_dir` (created if needed). */
sq_status sq_gptq_checkpoint_write(const sq_gptq_checkpoint_request *req, const char *out_dir);

#endif
