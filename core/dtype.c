/* dtype.c: element sizes, safetensors dtype names, and bf16/fp16 <-> fp32
 * conversions with round-to-nearest-even (NaN stays NaN, overflow goes to Inf). */
#include "core/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[SQ_DTYPE_COUNT] = {
    [SQ_DTYPE_F32] = {"F32", 4}, [SQ_DTYPE_F16] = {"F16", 2}, [SQ_DTYPE_BF16] = {"BF16", 2},
    [SQ_DTYPE_F64] = {"F64", 8}, [SQ_DTYPE_I8] = {"I8", 1},   [SQ_DTYPE_U8] = {"U8", 1},
    [SQ_DTYPE_I16] = {"I16", 2}, [SQ_DTYPE_I32] = {"I32", 4}, [SQ_DTYPE_I64] = {"I64", 8},
    [SQ_DTYPE_BOOL] = {"BOOL", 1},
};

size_t sq_dtype_size(sq_dtype dtype) { return dtype < SQ_DTYPE_COUNT ? dtype_table[dtype].size : 0; }

bool sq_dtype_is_float(sq_dtype dtype)
{
    return dtype == SQ_DTYPE_F32 || dtype == SQ_DTYPE_F16 || dtype == SQ_DTYPE_BF16 || dtype == SQ_DTYPE_F64;
}

const char *sq_dtype_name(sq_dtype dtype) { return dtype < SQ_DTYPE_COUNT ? dtype_table[dtype].name : "?"; }

sq_status sq_dtype_from_name(const char *name, sq_dtype *out)
{
    for (int i = 0; i < SQ_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_table[i].name) == 0) {
            *out = (sq_dtype)i;
            return SQ_OK;
        }
    }
    return sq_fail(SQ_ERR_FORMAT, "unknown dtype \"%s\"", name);
}

sq_status sq_dtype_from_torch_name(const char *name, sq_dtype *out)
{
    if (!strcmp(name, "bfloat16"))
        *out = SQ_DTYPE_BF16;
    else if (!strcmp(name, "float16") || !strcmp(name, "half"))
        *out = SQ_DTYPE_F16;
    else if (!strcmp(name, "float32") || !strcmp(name, "float"))
        *out = SQ_DTYPE_F32;
    else
        return sq_fail(SQ_ERR_FORMAT, "unknown torch_dtype \"%s\"", name);
    return SQ_OK;
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float sq_bf16_to_f32(uint16_t bits) { return bits_float((uint32_t)bits << 16); }

uint16_t sq_f32_to_bf16(float value)
{
    uint32_t u = float_bits(value);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and NaN */
        return (uint16_t)((u >> 16) | 0x40);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float sq_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    if (exponent == 0x1f) /* Inf or NaN */
        return bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24 */
        float magnitude = ldexpf((float)mantissa, -24);
        return sign ? -magnitude : magnitude;
    }
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t sq_f32_to_f16(float value)
{
    uint32_t u = float_bits(value);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) /* NaN */
        return sign | 0x7e00u;
    if (abs >= 0x477ff000u) /* rounds to >= 65520: Inf */
        return sign | 0x7c00u;
    if (abs < 0x38800000u) { /* below the smallest normal half (2^-14): subnormal or zero */
        /* value * 2^24 rounded to nearest even is the subnormal mantissa. */
        float scaled = bits_float(abs) * 16777216.0f;
        return sign | (uint16_t)nearbyintf(scaled);
    }
    uint32_t rounding = 0xfffu + ((abs >> 13) & 1u);
    abs += rounding;
    return sign | (uint16_t)((abs - 0x38000000u) >> 13);
}

sq_status sq_convert_to_f32(float *dst, const void *src, sq_dtype src_dtype, size_t n)
{
    switch (src_dtype) {
    case SQ_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return SQ_OK;
    case SQ_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = sq_f16_to_f32(s[i]);
        return SQ_OK;
    }
    case SQ_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = sq_bf16_to_f32(s[i]);
        return SQ_OK;
    }
    case SQ_DTYPE_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)s[i];
        return SQ_OK;
    }
    default:
        return sq_fail(SQ_ERR_UNSUPPORTED, "cannot convert %s to F32", sq_dtype_name(src_dtype));
    }
}

sq_status sq_convert_from_f32(void *dst, sq_dtype dst_dtype, const float *src, size_t n)
{
    switch (dst_dtype) {
    case SQ_DTYPE_F32:
        memcpy(dst, src, n * 4);
        return SQ_OK;
    case SQ_DTYPE_F16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = sq_f32_to_f16(src[i]);
        return SQ_OK;
    }
    case SQ_DTYPE_BF16: {
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = sq_f32_to_bf16(src[i]);
        return SQ_OK;
    }
    case SQ_DTYPE_F64: {
        double *d = dst;
        for (size_t i = 0; i < n; i++)
            d[i] = src[i];
        return SQ_OK;
    }
    default:
        return sq_fail(SQ_ERR_UNSUPPORTED, "cannot convert F32 to %s", sq_dtype_name(dst_dtype));
    }
}
