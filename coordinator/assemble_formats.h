/* assemble_formats.h: the tensors a quantized linear becomes in the two output
 * formats written through coordinator/assemble_dense.h, and their config.json
 * records (quant/output_format.h names the formats).
 *
 * "dense": "<linear>.weight" in the source dtype, W[o,i] = fp16(scale) ·
 * (q − zero) in fp32 (the same values the GPTQ checkpoint dequantizes to and
 * the job computes with), rounded once to the dtype; config.json gains
 * "dequantized_from": the GPTQ quantization_config the weights came from
 * (quant_method "gptq", bits, group_size, sym, desc_act, ...), under a key no
 * loader acts on, so the checkpoint loads as the plain model it is.
 *
 * "compressed-tensors" (format "pack-quantized", as compressed-tensors 0.20's
 * PackedQuantizationCompressor writes and decompresses it; vLLM loads it):
 *   weight_packed      int32 [out, ceil(in·bits/32)]: row o is one little-endian
 *                      bit stream of the codes q (value i at bit i·bits), i.e.
 *                      the signed value q − 2^(bits−1) offset by 2^(bits−1)
 *   weight_scale       [out, ngroups] (fp16-rounded scales; F32 for an F32
 *                      source, else F16)
 *   weight_zero_point  asymmetric only: int32 [ceil(out·bits/32), ngroups],
 *                      column g one bit stream over o of the zero points
 *                      (signed zero + 2^(bits−1) = our zero)
 *   weight_shape       int64 [2] = {out, in}
 * so W = scale · (q_signed − zero_signed) = scale · (q − zero) exactly as ours.
 * Symmetric grids have zero 2^(bits−1) (signed 0), which the format assumes.
 * config.json gains quantization_config {"quant_method": "compressed-tensors",
 * "format": "pack-quantized", "quantization_status": "compressed",
 * "config_groups": {"group_0": {"targets": ["Linear"], "weights": {num_bits,
 * type "int", symmetric, strategy "group" | "channel", group_size, actorder
 * "weight" | null, ...}}}, "ignore": ["lm_head"], "sparsity_config": {"format":
 * "dense", "global_sparsity", "sparsity_structure": "2:4" | "unstructured",
 * "targets": ["Linear"], "ignore": ["lm_head"]} for a pruned model}.
 *
 * "compressed-tensors" of a smoothquant step (format "int-quantized", W8A8 as
 * llm-compressor writes it and compressed-tensors 0.20's IntQuantizationCompressor
 * decompresses it; vLLM runs it with int8 GEMMs):
 *   weight        int8 [out, in]: the signed code q − 128 (our symmetric zero is 128)
 *   weight_scale  [out, 1] (fp16-rounded; F32 for an F32 source, else F16)
 * so W = scale · weight = scale · (q − zero) exactly as ours; the rescaled norms replace
 * the source's input_layernorm and post_attention_layernorm; quantization_config
 * {"format": "int-quantized", "config_groups": {"group_0": {"weights": {num_bits 8,
 * type "int", symmetric, strategy "channel", dynamic false}, "input_activations":
 * {num_bits 8, type "int", symmetric, strategy "token", dynamic true}}}, ...}. */
#ifndef SQ_COORDINATOR_ASSEMBLE_FORMATS_H
#define SQ_COORDINATOR_ASSEMBLE_FORMATS_H

#include <jansson.h>

#include "coordinator/assemble_dense.h"
#include "quant/quant_result.h"

/* "<linear>.weight" of `res` dequantized into `dtype` (F32, F16, BF16 or F64). */
sq_status sq_dequantized_linear(const sq_quant_result *res, const char *name, sq_dtype dtype, sq_linear_tensors *out);

/* The compressed-tensors tensors of `res`; scales in F32 when source_dtype is F32, else F16. */
sq_status sq_compressed_linear(const sq_quant_result *res, const char *name, sq_dtype source_dtype,
                               sq_linear_tensors *out);

/* The int-quantized tensors of `res` (8-bit symmetric, one group per row). */
sq_status sq_int_quantized_linear(const sq_quant_result *res, const char *name, sq_dtype source_dtype,
                                  sq_linear_tensors *out);

/* config.json's "quantization_config" of a smoothquant output: int-quantized, `opt`'s weights per
 * channel and act_bits-bit dynamic per-token activations. New reference. */
json_t *sq_int_quantized_config(const sq_quant_options *opt, int act_bits);

/* config.json's "quantization_config" for a compressed-tensors output of `opt`;
 * `sparsity` is shardq's sparsity_config of a pruned model, or NULL. New reference. */
json_t *sq_compressed_quantization_config(const sq_quant_options *opt, const json_t *sparsity);

/* Mixed precision: replace `config`'s (from sq_compressed_quantization_config) config_groups
 * by one group per width, "group_<bits>", whose targets are the names of the n linears at that
 * width (compressed-tensors matches a target equal to a module's name), weights as before with
 * that num_bits. */
sq_status sq_compressed_groups_by_width(json_t *config, const char *const *linears, const int *bits, int n);

#endif
