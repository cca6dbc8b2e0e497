/* kv_cache_grid.h: the rounding of a KV cache with static scales, shared by both
 * backends (kernels/cpu/kv_cache_quant.c, kernels/cuda/kv_cache_quant.cu) so that
 * they give the same bits.
 *   int8: q = clamp(rint(x / s), -128, 127), x := q * s   (symmetric; rint rounds half to even)
 *   fp8:  y = x / s, x := e4m3(y) * s, where e4m3 rounds to the nearest value of the fp8
 *         e4m3fn grid (ties to even) and saturates at ±448, as vLLM's scaled conversion
 *         of the cache does (clamp to the finite range, then convert).
 * The e4m3fn grid: normal values m·2^e with e in [-6, 8] and 3 mantissa bits (spacing
 * 2^(e-3)), subnormals k·2^-9 below 2^-6, largest finite 448 (= 1.75·2^8). */
#ifndef SQ_KERNELS_KV_CACHE_GRID_H
#define SQ_KERNELS_KV_CACHE_GRID_H

#include <math.h>

#ifdef __CUDACC__
#define KN_KV_FN static inline __host__ __device__
#else
#define KN_KV_FN static inline
#endif

/* The grid of a KV cache with static scales (kn_kv_quantize_static). */
typedef enum { KN_KV_INT8, KN_KV_FP8 } kn_kv_format;

#define KN_E4M3_MAX 448.0f
#define KN_INT8_MAX 127.0f

/* y rounded onto the e4m3fn grid, saturating; NaN stays NaN. */
KN_KV_FN float kn_e4m3_round(float y)
{
    float a = fabsf(y);
    if (a != a)
        return y;
    if (a >= KN_E4M3_MAX)
        return copysignf(KN_E4M3_MAX, y);
    int e;
    frexpf(a, &e); /* a = m·2^e, m in [0.5, 1): a lies in [2^(e-1), 2^e) */
    int exponent = e - 1 < -6 ? -6 : e - 1;
    float step = ldexpf(1.0f, exponent - 3); /* a power of two: a / step and the product are exact */
    return copysignf(rintf(a / step) * step, y);
}

/* One value through the static grid of scale s. */
KN_KV_FN float kn_kv_static_round(float x, float s, int fp8)
{
    float y = x / s;
    if (fp8)
        return kn_e4m3_round(y) * s;
    float q = rintf(y);
    q = q < -128.0f ? -128.0f : (q > KN_INT8_MAX ? KN_INT8_MAX : q);
    return q * s;
}

#endif
