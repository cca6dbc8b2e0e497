/* gptq_pack.h: a quantizer's result packed as the GPTQ checkpoint tensors of
 * one linear, in the layout model/gptq_reader.h describes and reads back. */
#ifndef SQ_QUANT_GPTQ_PACK_H
#define SQ_QUANT_GPTQ_PACK_H

#include <stdint.h>

#include "core/status.h"
#include "quant/quant_result.h"

typedef struct {
    int in, out, bits, ngroups;
    int32_t *qweight;  /* [in*bits/32, out] */
    int32_t *qzeros;   /* [ngroups, out*bits/32] */
    uint16_t *scales;  /* fp16 bits, [ngroups, out] */
    int32_t *g_idx;    /* [in] */
} sq_gptq_packed;

/* Pack a quantizer's result (codes [out, in], scales/zeros [out, ngroups]). */
sq_status sq_gptq_pack(const sq_quant_result *res, const char *name, sq_gptq_packed *packed);
void sq_gptq_packed_free(sq_gptq_packed *packed);

#endif
