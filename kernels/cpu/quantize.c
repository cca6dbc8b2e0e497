/* quantize.c (CPU backend): min/max quantization grids, round-to-nearest and
 * dequantization, with the grid arithmetic of quant_math.h (the GPTQ block walk
 * is gptq.c). Every output row is independent, so rows are spread over OpenMP
 * threads. */
#include <math.h>

#include "kernels/cpu/quant_math.h"
#include "kernels/kernels.h"

static sq_status check_bits(int bits, const char *who)
{
    if (bits < 1 || bits > 8)
        return sq_fail(SQ_ERR_ARG, "%s: bits must be in [1, 8], got %d", who, bits);
    return SQ_OK;
}

sq_status kn_quant_grid(float *scale, float *zero, int ldg, int g, const float *W, int rows, int ld, int col0,
                        int ncols, int bits, bool sym)
{
    SQ_TRY(check_bits(bits, "kn_quant_grid"));
    if (ncols <= 0 || col0 < 0 || col0 + ncols > ld || g < 0 || g >= ldg)
        return sq_fail(SQ_ERR_ARG, "kn_quant_grid: columns [%d, %d) of %d or group %d of %d out of range", col0,
                       col0 + ncols, ld, g, ldg);
    float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for
    for (int r = 0; r < rows; r++)
        grid_of_row(W + (size_t)r * ld + col0, ncols, maxq, sym, &scale[(size_t)r * ldg + g],
                    &zero[(size_t)r * ldg + g]);
    return SQ_OK;
}

sq_status kn_quantize_rtn(float *W, uint8_t *codes, const float *scale, const float *zero, int ldg,
                          const int32_t *group_of_column, int rows, int n, int bits)
{
    SQ_TRY(check_bits(bits, "kn_quantize_rtn"));
    for (int c = 0; c < n; c++)
        if (group_of_column[c] < 0 || group_of_column[c] >= ldg)
            return sq_fail(SQ_ERR_ARG, "kn_quantize_rtn: column %d has group %d outside [0, %d)", c,
                           group_of_column[c], ldg);
    float maxq = (float)((1 << bits) - 1);
#pragma omp parallel for
    for (int r = 0; r < rows; r++) {
        float *w = W + (size_t)r * n;
        for (int c = 0; c < n; c++) {
            size_t gi = (size_t)r * ldg + group_of_column[c];
            w[c] = quantize_value(w[c], scale[gi], zero[gi], maxq, &codes[(size_t)r * n + c]);
        }
    }
    return SQ_OK;
}

sq_status kn_dequantize(float *W, const uint8_t *codes, const float *scale, const float *zero, int ldg,
                        const int32_t *group_of_column, int rows, int n)
{
    if (rows < 0 || n < 0 || ldg <= 0)
        return sq_fail(SQ_ERR_ARG, "kn_dequantize: bad shape rows=%d n=%d ldg=%d", rows, n, ldg);
    for (int c = 0; c < n; c++)
        if (group_of_column[c] < 0 || group_of_column[c] >= ldg)
            return sq_fail(SQ_ERR_ARG, "kn_dequantize: column %d has group %d outside [0, %d)", c,
                           group_of_column[c], ldg);
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *row_scale = scale + (size_t)r * ldg, *row_zero = zero + (size_t)r * ldg;
        const uint8_t *q = codes + (size_t)r * n;
        float *w = W + (size_t)r * n;
        for (int c = 0; c < n; c++) {
            int g = group_of_column[c];
            w[c] = row_scale[g] * ((float)q[c] - row_zero[g]);
        }
    }
    return SQ_OK;
}
