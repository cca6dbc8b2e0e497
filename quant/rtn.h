/* rtn.h: round-to-nearest quantization of one linear, the baseline GPTQ is
 * measured against. Same options and outputs as GPTQ: one min/max grid per
 * (output row, group of group_size consecutive input columns), g_idx[j] =
 * j/group_size; no Hessian, no error feedback. */
#ifndef SQ_QUANT_RTN_H
#define SQ_QUANT_RTN_H

#include "core/status.h"
#include "quant/quant_result.h"

/* W (device, [rows, cols]) is replaced by its dequantized values; `res` is
 * allocated here (loss 0); free it with sq_quant_result_free. */
sq_status sq_rtn_quantize(float *W, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res);

#endif
