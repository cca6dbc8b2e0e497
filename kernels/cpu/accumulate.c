/* accumulate.c (CPU backend): exact fixed-point accumulation of fp32
 * contributions (Hessian sums, kernels/fixed_sum.h) and zeroing of raw device
 * memory. Every element is independent, so the threads' split does not matter. */
#include <string.h>

#include "kernels/fixed_sum.h"
#include "kernels/kernels.h"

sq_status kn_zero(void *dev, size_t bytes)
{
    memset(dev, 0, bytes);
    return SQ_OK;
}

sq_status kn_fixed_accumulate(int64_t *acc, const float *x, size_t n, int count, size_t stride)
{
    if (count < 1 || (count > 1 && stride < n))
        return sq_fail(SQ_ERR_ARG, "kn_fixed_accumulate: %d arrays %zu apart cannot hold %zu entries each", count,
                       stride, n);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        kn_fixed_add(acc, n, i, x, count, stride);
    return SQ_OK;
}

sq_status kn_fixed_to_f32(float *out, const int64_t *acc, double scale, size_t n)
{
    size_t bad = n;
#pragma omp parallel for schedule(static) reduction(min : bad)
    for (size_t i = 0; i < n; i++)
        if (!kn_fixed_value(acc[i], acc[n + i], acc[2 * n + i], scale, &out[i]) && i < bad)
            bad = i;
    if (bad < n)
        return sq_fail(SQ_ERR_NUMERIC,
                       "sum entry %zu: an addend was not finite or beyond ±2^47 (activations out of range)", bad);
    return SQ_OK;
}

static sq_status check_upper(const char *who, int cols, int count, size_t stride)
{
    size_t n = (size_t)(cols > 0 ? cols : 0) * (size_t)(cols > 0 ? cols : 0);
    if (cols <= 0 || count < 1 || (count > 1 && stride < n))
        return sq_fail(SQ_ERR_ARG, "%s: %d arrays %zu apart cannot hold %d x %d entries each", who, count, stride,
                       cols, cols);
    return SQ_OK;
}

sq_status kn_fixed_accumulate_upper(int64_t *acc, const float *x, int cols, int count, size_t stride)
{
    SQ_TRY(check_upper("kn_fixed_accumulate_upper", cols, count, stride));
    size_t n = (size_t)cols * cols;
#pragma omp parallel for schedule(dynamic, 16)
    for (int r = 0; r < cols; r++)
        for (int c = r; c < cols; c++)
            kn_fixed_add(acc, n, (size_t)r * cols + c, x, count, stride);
    return SQ_OK;
}

sq_status kn_fixed_to_f32_symmetric(float *out, const int64_t *acc, double scale, int cols)
{
    SQ_TRY(check_upper("kn_fixed_to_f32_symmetric", cols, 1, 0));
    size_t n = (size_t)cols * cols, bad = n;
#pragma omp parallel for schedule(dynamic, 16) reduction(min : bad)
    for (int r = 0; r < cols; r++) {
        for (int c = r; c < cols; c++) {
            size_t i = (size_t)r * cols + c;
            if (!kn_fixed_value(acc[i], acc[n + i], acc[2 * n + i], scale, &out[i]) && i < bad)
                bad = i;
            out[(size_t)c * cols + r] = out[i];
        }
    }
    if (bad < n)
        return sq_fail(SQ_ERR_NUMERIC,
                       "sum entry %zu: an addend was not finite or beyond ±2^47 (activations out of range)", bad);
    return SQ_OK;
}
