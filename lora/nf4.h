/* nf4.h: 4-bit NormalFloat quantization of a base weight as bitsandbytes does it
 * for QLoRA (Dettmers et al. 2023; bnb.functional.quantize_4bit with
 * quant_type "nf4", blocksize 64, compress_statistics True):
 *
 *   blocks of 64 consecutive values (row-major [out, in]) share absmax = max |w|;
 *   each value gets the index of the NF4 table entry nearest to w / absmax
 *   (ties to the lower index), two per byte, the first in the high nibble;
 *   double quantization: offset = mean(absmax); (absmax - offset) is quantized
 *   in blocks of 256 to bitsandbytes' signed 8-bit dynamic code (nearest entry,
 *   ties lower) with an fp32 absmax2 per block.
 *
 *   dequantize: absmax_b = code8[qabsmax_b] * absmax2[b / 256] + offset,
 *               w_i = nf4[code_i] * absmax_{i / 64}  (kn_dequantize_nf4).
 * n must be a multiple of 64 (every Llama-family linear of a real model is). */
#ifndef SQ_LORA_NF4_H
#define SQ_LORA_NF4_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SQ_NF4_BLOCK 64
#define SQ_NF4_ABSMAX_BLOCK 256

typedef struct {
    size_t n;
    uint8_t *packed;  /* [n / 2] */
    uint8_t *qabsmax; /* [n / 64] */
    float *absmax2;   /* [ceil(n / 64 / 256)] */
    float offset;
} sq_nf4_tensor;

/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted. */
void sq_nf4_code8(float code[256]);

/* Quantize w[n] on the host; `what` names the tensor in messages. */
sq_status sq_nf4_quantize(const float *w, size_t n, const char *what, sq_nf4_tensor *out);
void sq_nf4_free(sq_nf4_tensor *t);

#endif
