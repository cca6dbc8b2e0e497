/* output_format.h: the checkpoint formats a quantizing step can write (the job
 * spec's "output": {"format": ...}) and the one rule on which linears each can
 * hold, checked before a job starts:
 *  - "gptq" (default): GPTQ v1 (quant/gptq_checkpoint.h); qweight and qzeros
 *    pack along in and out, so both must be multiples of 32;
 *  - "dense": dequantized weights in the source dtype, the quantization
 *    recorded in config.json (coordinator/assemble.h); any shape;
 *  - "compressed-tensors": vLLM's and llm-compressor's "pack-quantized"
 *    (coordinator/assemble_compressed.h); any shape, 4 or 8 bits (with mixed
 *    precision: every candidate width), and groups
 *    that are contiguous runs of inputs (act-order only with static_groups:
 *    compressed-tensors 0.20 removed actorder "group", the g_idx form). */
#ifndef SQ_QUANT_OUTPUT_FORMAT_H
#define SQ_QUANT_OUTPUT_FORMAT_H

#include "core/status.h"
#include "quant/quant_result.h"

typedef enum { SQ_OUTPUT_GPTQ, SQ_OUTPUT_DENSE, SQ_OUTPUT_COMPRESSED_TENSORS, SQ_OUTPUT_FORMAT_COUNT } sq_output_format;

/* "gptq", "dense", "compressed-tensors"; NULL-terminated, in enum order. */
extern const char *const sq_output_format_names[];

/* SQ_ERR_SPEC unless `format` can hold linear `linear` [out, in] quantized with `opt`;
 * the message starts with `where` (the step's JSON path), names the linear and the
 * format that can hold it. */
sq_status sq_output_format_check(sq_output_format format, const sq_quant_options *opt, const char *where,
                                 const char *linear, int out, int in);

#endif
