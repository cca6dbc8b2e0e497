/* gptq_pack.c: bit-stream packing of codes and zeros into int32 words (the GPTQ v1
 * layout of model/gptq_reader.h, which reads them back). */
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "model/gptq_reader.h"
#include "quant/gptq_pack.h"

/* Value k of a stream of `bits`-bit values whose words are `stride` apart. */
static void put_bits(uint32_t *words, size_t stride, size_t k, int bits, uint32_t value)
{
    size_t pos = k * (size_t)bits, word = pos / 32;
    int shift = (int)(pos % 32);
    words[word * stride] |= value << shift;
    if (shift + bits > 32)
        words[(word + 1) * stride] |= value >> (32 - shift);
}

sq_status sq_gptq_pack(const sq_quant_result *res, const char *name, sq_gptq_packed *p)
{
    memset(p, 0, sizeof *p);
    SQ_TRY(sq_gptq_check_shape(name, res->rows, res->cols, res->bits));
    int in = res->cols, out = res->rows, bits = res->bits, ng = res->ngroups;
    uint32_t maxq = (1u << bits) - 1;
    size_t qw_rows = (size_t)in * bits / 32, qz_cols = (size_t)out * bits / 32;
    *p = (sq_gptq_packed){.in = in, .out = out, .bits = bits, .ngroups = ng};
    p->qweight = calloc(qw_rows * out, sizeof(int32_t));
    p->qzeros = calloc((size_t)ng * qz_cols, sizeof(int32_t));
    p->scales = malloc((size_t)ng * out * sizeof(uint16_t));
    p->g_idx = malloc((size_t)in * sizeof(int32_t));
    if (!p->qweight || !p->qzeros || !p->scales || !p->g_idx) {
        sq_gptq_packed_free(p);
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate packed GPTQ tensors", name);
    }
    for (int i = 0; i < in; i++) {
        if (res->g_idx[i] < 0 || res->g_idx[i] >= ng) {
            sq_gptq_packed_free(p);
            return sq_fail(SQ_ERR_ARG, "%s: g_idx[%d] = %d outside [0, %d)", name, i, res->g_idx[i], ng);
        }
        p->g_idx[i] = res->g_idx[i];
    }
    uint32_t *qweight = (uint32_t *)p->qweight, *qzeros = (uint32_t *)p->qzeros;
    /* Output column o of qweight is only written by row o of the codes: rows run in
     * parallel. qzeros packs along the output dimension, so it stays sequential. */
#pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++) {
        const uint8_t *codes = res->codes + (size_t)o * in;
        for (int i = 0; i < in; i++)
            put_bits(qweight + o, (size_t)out, (size_t)i, bits, codes[i] & maxq);
    }
    for (int o = 0; o < out; o++) {
        for (int g = 0; g < ng; g++) {
            size_t gi = (size_t)o * ng + g;
            uint32_t stored = ((uint32_t)(int32_t)res->zeros[gi] - 1u) & maxq;
            put_bits(qzeros + (size_t)g * qz_cols, 1, (size_t)o, bits, stored);
            p->scales[(size_t)g * out + o] = sq_f32_to_f16(res->scales[gi]);
        }
    }
    return SQ_OK;
}

void sq_gptq_packed_free(sq_gptq_packed *p)
{
    free(p->qweight);
    free(p->qzeros);
    free(p->scales);
    free(p->g_idx);
    memset(p, 0, sizeof *p);
}
