/* gptq_reader.h: reading a GPTQ checkpoint's packed linears. The tensors of one
 * linear (AutoGPTQ's "gptq", v1, layout, read by transformers, vLLM, GPTQModel):
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
 * is the v1 convention's known limit, kept so every reader agrees with us.
 *
 * Reading (so the model, `shardq eval` and QLoRA can use GPTQ output): a
 * checkpoint opened with sq_checkpoint_open is GPTQ-quantized when it holds
 * `*.qweight` tensors; sq_gptq_read_linear_f32 dequantizes one linear to fp32
 * W[out, in]. Bits and shapes come from the tensors themselves (qweight rows =
 * in·bits/32). The writer is quant/gptq_pack.h and quant/gptq_checkpoint.h. */
#ifndef SQ_MODEL_GPTQ_READER_H
#define SQ_MODEL_GPTQ_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "model/checkpoint.h"

/* SQ_ERR_UNSUPPORTED naming `name` unless bits is 2/3/4/8 and in, out are multiples of 32. */
sq_status sq_gptq_check_shape(const char *name, int out, int in, int bits);

/* W[out, in] (fp32, host) from the packed tensors, with the scales already
 * widened to fp32 (they are stored as fp16, or bf16 by some writers); every
 * g_idx entry is checked against ngroups. `name` names the linear in messages. */
sq_status sq_gptq_dequantize(const char *name, const int32_t *qweight, const int32_t *qzeros, const float *scales,
                             const int32_t *g_idx, int out, int in, int bits, int ngroups, float *W);

/* True when the checkpoint holds GPTQ-packed linears (any tensor named *.qweight). */
bool sq_checkpoint_is_gptq(const sq_checkpoint *ckpt);

/* True when `linear` (e.g. "model.layers.0.mlp.up_proj") is stored packed. */
bool sq_gptq_has_linear(const sq_checkpoint *ckpt, const char *linear);

/* Shape and bits of a packed linear, validated across its four tensors. */
sq_status sq_gptq_linear_shape(const sq_checkpoint *ckpt, const char *linear, int *out_features, int *in_features,
                               int *bits);

/* Dequantize a packed linear into W (host, `count` = out*in floats, else SQ_ERR_MISMATCH). */
sq_status sq_gptq_read_linear_f32(const sq_checkpoint *ckpt, const char *linear, float *W, size_t count);

/* A packed linear unpacked for a base kept resident on the device (lora/base.c):
 * codes[o*in + i] one byte per code; per output row its groups' scale[o*ngroups + g]
 * (widened to fp32) and zero[o*ngroups + g] = stored qzero + 1; g_idx[in] checked
 * against ngroups. kn_dequantize(W, codes, scale, zero, ngroups, g_idx, out, in)
 * then gives sq_gptq_read_linear_f32's W bit for bit (the same s * (q - z) in fp32). */
typedef struct {
    int out, in, bits, ngroups;
    uint8_t *codes;
    float *scale, *zero;
    int32_t *g_idx;
} sq_gptq_codes;

sq_status sq_gptq_read_linear_codes(const sq_checkpoint *ckpt, const char *linear, sq_gptq_codes *c);
void sq_gptq_codes_free(sq_gptq_codes *c);

#endif
