/* nf4.c: NF4 quantization with double-quantized absmax, as bitsandbytes (nf4.h). */
#include "lora/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/nf4_table.h"

static const float nf4_table[16] = KN_NF4_VALUES;

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void sq_nf4_code8(float code[256])
{
    /* for each exponent i of 7: 2^i fractions, the midpoints of linspace(0.1, 1, 2^i + 1),
     * times 10^(i - 6), with both signs; then 0 and 1. */
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int items = (1 << i) + 1;
        double scale = pow(10.0, i - 6);
        for (int j = 0; j + 1 < items; j++) {
            double lo = 0.1 + 0.9 * j / (items - 1), hi = 0.1 + 0.9 * (j + 1) / (items - 1);
            code[n++] = (float)(scale * (lo + hi) / 2);
            code[n++] = (float)(-scale * (lo + hi) / 2);
        }
    }
    code[n++] = 0.0f;
    code[n++] = 1.0f;
    qsort(code, 256, sizeof *code, compare_floats);
}

/* Index of the entry of sorted table[count] nearest to x; ties go to the lower index. */
static int nearest(const float *table, int count, float x)
{
    int best = 0;
    float best_err = fabsf(x - table[0]);
    for (int i = 1; i < count; i++) {
        float err = fabsf(x - table[i]);
        if (err < best_err)
            best = i, best_err = err;
    }
    return best;
}

void sq_nf4_free(sq_nf4_tensor *t)
{
    free(t->packed);
    free(t->qabsmax);
    free(t->absmax2);
    memset(t, 0, sizeof *t);
}

sq_status sq_nf4_quantize(const float *w, size_t n, const char *what, sq_nf4_tensor *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0 || n % SQ_NF4_BLOCK)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: %zu values cannot be NF4-quantized (not a multiple of %d)", what, n,
                       SQ_NF4_BLOCK);
    size_t blocks = n / SQ_NF4_BLOCK, blocks2 = (blocks + SQ_NF4_ABSMAX_BLOCK - 1) / SQ_NF4_ABSMAX_BLOCK;
    float *absmax = malloc(blocks * sizeof *absmax);
    out->n = n;
    out->packed = calloc(n / 2, 1);
    out->qabsmax = malloc(blocks);
    out->absmax2 = malloc(blocks2 * sizeof *out->absmax2);
    if (!absmax || !out->packed || !out->qabsmax || !out->absmax2) {
        free(absmax);
        sq_nf4_free(out);
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate its NF4 form", what);
    }
    /* Blocks are independent (each writes its own bytes), so they are spread over
     * OpenMP threads; the absmax sum is then taken in block order, whatever the thread count. */
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        const float *x = w + b * SQ_NF4_BLOCK;
        float m = 0.0f;
        for (int i = 0; i < SQ_NF4_BLOCK; i++)
            m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
        absmax[b] = m;
        for (int i = 0; i < SQ_NF4_BLOCK; i++) {
            int code = m > 0 ? nearest(nf4_table, 16, x[i] / m) : 7; /* an all-zero block stays zero */
            size_t at = b * SQ_NF4_BLOCK + i;
            out->packed[at / 2] |= (uint8_t)(at % 2 ? code : code << 4);
        }
    }
    /* double quantization of the absmax */
    float code8[256];
    sq_nf4_code8(code8);
    double absmax_sum = 0.0;
    for (size_t b = 0; b < blocks; b++)
        absmax_sum += absmax[b];
    out->offset = (float)(absmax_sum / blocks);
#pragma omp parallel for schedule(static)
    for (size_t b2 = 0; b2 < blocks2; b2++) {
        size_t lo = b2 * SQ_NF4_ABSMAX_BLOCK, hi = lo + SQ_NF4_ABSMAX_BLOCK < blocks ? lo + SQ_NF4_ABSMAX_BLOCK : blocks;
        float m = 0.0f;
        for (size_t b = lo; b < hi; b++)
            m = fabsf(absmax[b] - out->offset) > m ? fabsf(absmax[b] - out->offset) : m;
        out->absmax2[b2] = m;
        for (size_t b = lo; b < hi; b++)
            out->qabsmax[b] = (uint8_t)(m > 0 ? nearest(code8, 256, (absmax[b] - out->offset) / m) : nearest(code8, 256, 0));
    }
    free(absmax);
    return SQ_OK;
}
