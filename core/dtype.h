/* dtype.h: the element types found in checkpoints and their conversions to and from fp32.
 *
 * Weights are stored as bf16/fp16/fp32; all host math runs in fp32. Conversions
 * round to nearest even and keep NaN/Inf, as PyTorch does. */
#ifndef SQ_DTYPE_H
#define SQ_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum {
    SQ_DTYPE_F32,
    SQ_DTYPE_F16,
    SQ_DTYPE_BF16,
    SQ_DTYPE_F64,
    SQ_DTYPE_I8,
    SQ_DTYPE_U8,
    SQ_DTYPE_I16,
    SQ_DTYPE_I32,
    SQ_DTYPE_I64,
    SQ_DTYPE_BOOL,
    SQ_DTYPE_COUNT
} sq_dtype;

/* Bytes per element. */
size_t sq_dtype_size(sq_dtype dtype);

/* F32, F16, BF16 or F64. */
bool sq_dtype_is_float(sq_dtype dtype);

/* The safetensors spelling: "F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL". */
const char *sq_dtype_name(sq_dtype dtype);

/* Parse a safetensors dtype name; SQ_ERR_FORMAT for an unknown one (message names it). */
sq_status sq_dtype_from_name(const char *name, sq_dtype *out);

/* Parse a torch_dtype string from config.json ("bfloat16", "float16", "float32"). */
sq_status sq_dtype_from_torch_name(const char *name, sq_dtype *out);

float sq_bf16_to_f32(uint16_t bits);
uint16_t sq_f32_to_bf16(float value);
float sq_f16_to_f32(uint16_t bits);
uint16_t sq_f32_to_f16(float value);

/* Convert n elements of a float type (F32/F16/BF16/F64) to fp32 and back.
 * SQ_ERR_UNSUPPORTED for integer types. */
sq_status sq_convert_to_f32(float *dst, const void *src, sq_dtype src_dtype, size_t n);
sq_status sq_convert_from_f32(void *dst, sq_dtype dst_dtype, const float *src, size_t n);

#endif
