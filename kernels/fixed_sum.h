/* fixed_sum.h: exact, order-free sums of fp32 values (Hessian accumulation).
 *
 * A floating-point sum depends on the order of its additions, and the order
 * of a Hessian's sum depends on how the samples were split over ranks (MPI
 * and NCCL all-reduces add in an order of their own). Here every addend is
 * first rounded onto a fixed grid of 2^-KN_FIXED_FRACTION_BITS and kept as an
 * integer in three carry-free 32-bit lanes of int64 (sign and magnitude: every
 * lane has the addend's sign). Integer addition is exact and associative, so
 * the lanes hold the same integers whatever the order of the additions or of
 * the all-reduce, and the float formed from them at the end is the same on
 * any rank count. The rounding to the grid is the only loss: 2^-48 absolute,
 * far below fp32's resolution of any entry that matters to a solve.
 *
 * Limits: one addend must lie within ±2^47 (a larger or non-finite value sets
 * the entry's low lane to KN_FIXED_POISON, and reading the entry fails), and a
 * sum has at most KN_FIXED_MAX_ADDENDS addends (every lane of a valid sum stays
 * below KN_FIXED_LANE_LIMIT; poisoned lanes stay above it even when the
 * all-reduce adds the poison of thousands of ranks).
 *
 * Shared by both backends (kernels/cpu/accumulate.c, kernels/cuda/accumulate.cu)
 * so that they compute the same integers. */
#ifndef SQ_KERNELS_FIXED_SUM_H
#define SQ_KERNELS_FIXED_SUM_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KN_FIXED_FN static inline __host__ __device__
#else
#define KN_FIXED_FN static inline
#endif

#define KN_FIXED_FRACTION_BITS 48
#define KN_FIXED_LANES 3
#define KN_FIXED_MAX_ADDENDS (1 << 18)
#define KN_FIXED_LANE_LIMIT ((int64_t)1 << 50)
#define KN_FIXED_POISON ((int64_t)1 << 51)

/* The lanes of x (top: bits 64 and up of round(x · 2^48); mid: bits 32..63; low:
 * bits 0..31, all with x's sign). False when x is not finite or beyond ±2^47. */
KN_FIXED_FN bool kn_fixed_split(float x, int64_t *top, int64_t *mid, int64_t *low)
{
    double f = nearbyint(ldexp((double)x, KN_FIXED_FRACTION_BITS)); /* exact scaling, one rounding */
    if (!(fabs(f) < 0x1p95))
        return false;
    /* truncation keeps a subset of f's (at most 24) significant bits: every step is exact */
    double t = trunc(ldexp(f, -64));
    double rest = f - ldexp(t, 64);
    double m = trunc(ldexp(rest, -32));
    *top = (int64_t)t;
    *mid = (int64_t)m;
    *low = (int64_t)(rest - ldexp(m, 32));
    return true;
}

/* Add x[c * stride + i] for c = 0 .. count-1 to entry i of the lane-major accumulator
 * acc of n entries (or poison the entry if any addend is invalid). The addends' lanes are
 * summed first (at most 2^32 each, so any count up to 2^20 cannot overflow), then added to
 * acc once: the same integers as count separate additions, with one pass over acc. */
KN_FIXED_FN void kn_fixed_add(int64_t *acc, size_t n, size_t i, const float *x, int count, size_t stride)
{
    int64_t top = 0, mid = 0, low = 0;
    for (int c = 0; c < count; c++) {
        int64_t t, m, l;
        if (!kn_fixed_split(x[(size_t)c * stride + i], &t, &m, &l)) {
            acc[2 * n + i] = KN_FIXED_POISON;
            return;
        }
        top += t, mid += m, low += l;
    }
    acc[i] += top;
    acc[n + i] += mid;
    acc[2 * n + i] += low;
}

/* lanes -> a = q · 2^32 + r with r in [0, 2^32) (floor division). */
KN_FIXED_FN int64_t kn_fixed_carry(int64_t *a)
{
    int64_t r = *a % ((int64_t)1 << 32);
    if (r < 0)
        r += (int64_t)1 << 32;
    int64_t q = (*a - r) / ((int64_t)1 << 32);
    *a = r;
    return q;
}

/* The value of summed lanes times `scale`, as a float; false for an invalid entry. */
KN_FIXED_FN bool kn_fixed_value(int64_t top, int64_t mid, int64_t low, double scale, float *out)
{
    if (low >= KN_FIXED_LANE_LIMIT || low <= -KN_FIXED_LANE_LIMIT || mid >= KN_FIXED_LANE_LIMIT ||
        mid <= -KN_FIXED_LANE_LIMIT || top >= KN_FIXED_LANE_LIMIT || top <= -KN_FIXED_LANE_LIMIT)
        return false;
    mid += kn_fixed_carry(&low);
    top += kn_fixed_carry(&mid);
    double value = ldexp((double)top, 64) + (ldexp((double)mid, 32) + (double)low);
    *out = (float)(scale * ldexp(value, -KN_FIXED_FRACTION_BITS));
    return true;
}

#endif
