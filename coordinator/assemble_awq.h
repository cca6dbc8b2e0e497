/* assemble_awq.h: a quantized linear in the AWQ GEMM format (AutoAWQ's
 * "gemm" version, which transformers and vLLM load as quant_method "awq"),
 * written through coordinator/assemble_dense.h:
 *   qweight  int32 [in, out/8]: word (i, j) holds the 4-bit codes of input i for
 *            outputs 8j .. 8j+7, output 8j + AWQ_ORDER[p] in bits 4p .. 4p+3, where
 *            AWQ_ORDER = {0, 2, 4, 6, 1, 3, 5, 7} (AutoAWQ's interleaved order)
 *   qzeros   int32 [in/G, out/8]: the zero points (0 .. 15), packed the same way
 *            (a symmetric grid's zero is 8)
 *   scales   fp16 [in/G, out]
 * so W[o, i] = scales[g, o] · (q − zero) with g = i / G, our dequantization
 * exactly. The format holds 4 bits, contiguous groups of G dividing in, and out
 * a multiple of 8 (quant/output_format.h refuses the rest before a job starts).
 * config.json: quantization_config {"quant_method": "awq", "bits": 4,
 * "group_size": G, "zero_point": true, "version": "gemm"} and the dtype float16
 * (the kernels run in fp16; loaders cast the other tensors, kept as stored). */
#ifndef SQ_COORDINATOR_ASSEMBLE_AWQ_H
#define SQ_COORDINATOR_ASSEMBLE_AWQ_H

#include <jansson.h>

#include "coordinator/assemble_dense.h"
#include "quant/quant_result.h"

/* The AWQ tensors of `res` (".qweight", ".qzeros", ".scales" after `name`). */
sq_status sq_awq_linear(const sq_quant_result *res, const char *name, sq_linear_tensors *out);

/* config.json entries of an awq output: {"quantization_config": {...}} plus the dtype
 * float16 under the key(s) `config` uses ("torch_dtype", "dtype"). New reference. */
json_t *sq_awq_config_entries(const sq_quant_options *opt, const json_t *config);

#endif
