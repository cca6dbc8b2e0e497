/* gptq_pack.h: the GPTQ checkpoint tensors of one linear (AutoGPTQ's "gptq",
 * v1, layout, read by transformers, vLLM, GPTQModel):
 *
 *   qweight int32 [in·bits/32, out]  column o holds q[0..in) of output o as one
 *                                    little-endian bit stream: value i at bit
 *                                    i·bits (for 3 bits values straddle words)
 *   qzeros  int32 [ngroups, out·bits/32]  row g: (zero[o,g] − 1) mod 2^bits for
 *                                    every o, packed the same way along out
 *   scales  fp16  [ngroups, out]
 *   g_idx   int32 [in]               group of each input column
 *
 * and W[o,i] = scale[g_idx[i], o] · (q[i,o] − (qzero[g_idx[i], o] + 1)).
 * Like AutoGPTQ's kernels we require in and out to be multiples of 32. An
 * asymmetric zero of 0 is stored as 2^bits − 1 and reads back as 2^bits: that
 * is the v1 convention's known limit, kept so every reader agrees with us. */
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

/* SQ_ERR_UNSUPPORTED naming `name` unless bits is 2/3/4/8 and in, out are multiples of 32. */
sq_status sq_gptq_check_shape(const char *name, int out, int in, int bits);

/* Pack a quantizer's result (codes [out, in], scales/zeros [out, ngroups]). */
sq_status sq_gptq_pack(const sq_quant_result *res, const char *name, sq_gptq_packed *packed);
void sq_gptq_packed_free(sq_gptq_packed *packed);

/* W[out, in] (fp32, host) from the packed tensors, with the scales already
 * widened to fp32 (they are stored as fp16, or bf16 by some writers); every
 * g_idx entry is checked against ngroups. `name` names the linear in messages. */
sq_status sq_gptq_dequantize(const char *name, const int32_t *qweight, const int32_t *qzeros, const float *scales,
                             const int32_t *g_idx, int out, int in, int bits, int ngroups, float *W);

#endif
