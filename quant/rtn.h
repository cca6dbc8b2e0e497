/* rtn.h: round-to-nearest quantization of one linear, the baseline GPTQ is
 * measured against. Same options and outputs as GPTQ: one min/max grid per
 * (output row, group of group_size consecutive input columns), g_idx[j] =
 * j/group_size; no Hessian, no error feedback. */
#ifndef SQ_QUANT_RTN_H
#define SQ_QUANT_RTN_H

#include <stdint.h>

#include "core/status.h"
#include "quant/quant_result.h"

/* W (device, [rows, cols]) is replaced by its dequantized values; `res` is
 * allocated here (loss 0); free it with sq_quant_result_free. */
sq_status sq_rtn_quantize(float *W, int rows, int cols, const sq_quant_options *opt, sq_quant_result *res);

/* The device buffers of an RTN pass over a [rows, cols] weight: the grids
 * (scale, zero [rows, ngroups]), the group of each column and the codes. */
typedef struct {
    int rows, cols, ngroups, group_size; /* group_size: the width of a full group */
    float *scale, *zero;
    int32_t *groups;
    uint8_t *codes;
} sq_rtn_scratch;

sq_status sq_rtn_scratch_alloc(sq_rtn_scratch *s, int rows, int cols, const sq_quant_options *opt);
void sq_rtn_scratch_free(sq_rtn_scratch *s);

/* W (device, [s->rows, s->cols]) := its RTN-dequantized values, grids and codes left in s;
 * nothing goes to the host (the inner step of a search, e.g. AWQ's). */
sq_status sq_rtn_fake_quantize(float *W, const sq_quant_options *opt, sq_rtn_scratch *s);

#endif
