/* gptq_reader.c: GPTQ-packed linears of a checkpoint read back as fp32 (see gptq_reader.h). */
#include "model/gptq_reader.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

/* Value k of a stream of `bits`-bit values whose words are `stride` apart. */
static uint32_t get_bits(const uint32_t *words, size_t stride, size_t k, int bits)
{
    size_t pos = k * (size_t)bits, word = pos / 32;
    int shift = (int)(pos % 32);
    uint64_t v = words[word * stride] >> shift;
    if (shift + bits > 32)
        v |= (uint64_t)words[(word + 1) * stride] << (32 - shift);
    return (uint32_t)v & ((1u << bits) - 1);
}

sq_status sq_gptq_check_shape(const char *name, int out, int in, int bits)
{
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: GPTQ packing supports 2, 3, 4 or 8 bits, not %d", name, bits);
    if (in <= 0 || out <= 0 || in % 32 != 0 || out % 32 != 0)
        return sq_fail(SQ_ERR_UNSUPPORTED,
                       "%s: GPTQ format needs in_features and out_features divisible by 32 "
                       "(AutoGPTQ's qweight [in*bits/32, out] and qzeros [groups, out*bits/32]); got out %d, in %d",
                       name, out, in);
    return SQ_OK;
}

sq_status sq_gptq_dequantize(const char *name, const int32_t *qweight, const int32_t *qzeros, const float *scales,
                             const int32_t *g_idx, int out, int in, int bits, int ngroups, float *W)
{
    SQ_TRY(sq_gptq_check_shape(name, out, in, bits));
    if (ngroups <= 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: qzeros/scales have no groups", name);
    for (int i = 0; i < in; i++)
        if (g_idx[i] < 0 || g_idx[i] >= ngroups)
            return sq_fail(SQ_ERR_FORMAT, "%s.g_idx[%d] = %d outside [0, %d)", name, i, g_idx[i], ngroups);
    size_t qz_cols = (size_t)out * bits / 32;
    const uint32_t *qw = (const uint32_t *)qweight, *qz = (const uint32_t *)qzeros;
#pragma omp parallel for
    for (int o = 0; o < out; o++)
        for (int i = 0; i < in; i++) {
            int g = g_idx[i];
            float q = (float)get_bits(qw + o, (size_t)out, (size_t)i, bits);
            float zero = (float)get_bits(qz + (size_t)g * qz_cols, 1, (size_t)o, bits) + 1.0f;
            W[(size_t)o * in + i] = scales[(size_t)g * out + o] * (q - zero);
        }
    return SQ_OK;
}

bool sq_checkpoint_is_gptq(const sq_checkpoint *ckpt)
{
    int n = sq_checkpoint_tensor_count(ckpt);
    for (int i = 0; i < n; i++) {
        const char *name = sq_checkpoint_tensor_at(ckpt, i)->name;
        size_t len = strlen(name);
        if (len >= 8 && strcmp(name + len - 8, ".qweight") == 0)
            return true;
    }
    return false;
}

static const sq_st_tensor *find_part(const sq_checkpoint *ckpt, const char *linear, const char *suffix)
{
    char name[600];
    snprintf(name, sizeof name, "%s%s", linear, suffix);
    return sq_checkpoint_find(ckpt, name);
}

bool sq_gptq_has_linear(const sq_checkpoint *ckpt, const char *linear)
{
    return find_part(ckpt, linear, ".qweight") != NULL;
}

sq_status sq_gptq_linear_shape(const sq_checkpoint *ckpt, const char *linear, int *out_features, int *in_features,
                               int *bits)
{
    const char *dir = sq_checkpoint_dir(ckpt);
    const sq_st_tensor *qw = find_part(ckpt, linear, ".qweight"), *qz = find_part(ckpt, linear, ".qzeros");
    const sq_st_tensor *sc = find_part(ckpt, linear, ".scales"), *gi = find_part(ckpt, linear, ".g_idx");
    if (!qw || !qz || !sc || !gi)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: GPTQ linear '%s' lacks %s%s", dir, linear,
                       !qw ? "qweight" : !qz ? "qzeros" : !sc ? "scales" : "g_idx",
                       qw && qz && sc ? " (an AWQ checkpoint has none: shardq reads GPTQ v1 and dense checkpoints)"
                                      : "");
    if (qw->dtype != SQ_DTYPE_I32 || qz->dtype != SQ_DTYPE_I32 || gi->dtype != SQ_DTYPE_I32 ||
        !sq_dtype_is_float(sc->dtype))
        return sq_fail(SQ_ERR_FORMAT, "%s: '%s': qweight, qzeros and g_idx must be I32 and scales a float type",
                       dir, linear);
    if (qw->ndim != 2 || qz->ndim != 2 || sc->ndim != 2 || gi->ndim != 1)
        return sq_fail(SQ_ERR_FORMAT, "%s: '%s': qweight, qzeros, scales must be matrices and g_idx a vector", dir,
                       linear);
    int64_t in = gi->shape[0], out = qw->shape[1], words = qw->shape[0];
    if (in <= 0 || in > INT32_MAX || out <= 0 || out > INT32_MAX || (words * 32) % in != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: '%s.qweight' has %" PRId64 " rows for %" PRId64 " inputs", dir, linear,
                       words, in);
    int64_t b = words * 32 / in;
    SQ_TRY(sq_gptq_check_shape(linear, (int)out, (int)in, (int)(b <= 8 ? b : 0)));
    int64_t ngroups = sc->shape[0];
    if (sc->shape[1] != out || qz->shape[0] != ngroups || qz->shape[1] != out * b / 32 || ngroups <= 0)
        return sq_fail(SQ_ERR_FORMAT,
                       "%s: '%s': scales [%" PRId64 ", %" PRId64 "] and qzeros [%" PRId64 ", %" PRId64
                       "] do not fit %" PRId64 " outputs at %" PRId64 " bits",
                       dir, linear, sc->shape[0], sc->shape[1], qz->shape[0], qz->shape[1], out, b);
    *out_features = (int)out;
    *in_features = (int)in;
    *bits = (int)b;
    return SQ_OK;
}

/* Aligned copies of a packed linear's four tensors (qweight, qzeros, g_idx as stored;
 * scales widened to fp32): tensor offsets in a file need not be multiples of 4. */
enum { PART_QWEIGHT, PART_QZEROS, PART_G_IDX, PART_SCALES, PART_COUNT };

static void free_parts(void *copy[PART_COUNT])
{
    for (int k = 0; k < PART_COUNT; k++)
        free(copy[k]), copy[k] = NULL;
}

static sq_status read_parts(const sq_checkpoint *ckpt, const char *linear, void *copy[PART_COUNT], int *ngroups)
{
    static const char *const parts[PART_COUNT] = {".qweight", ".qzeros", ".g_idx", ".scales"};
    sq_status st = SQ_OK;
    for (int k = 0; k < PART_COUNT && st == SQ_OK; k++) {
        char name[600];
        snprintf(name, sizeof name, "%s%s", linear, parts[k]);
        sq_tensor_bytes raw;
        st = sq_checkpoint_tensor_bytes(ckpt, name, &raw);
        if (st != SQ_OK)
            break;
        const sq_st_tensor *t = raw.tensor;
        size_t bytes = k != PART_SCALES ? t->nbytes : sq_st_numel(t) * sizeof(float);
        copy[k] = malloc(bytes ? bytes : 1);
        if (!copy[k])
            st = sq_fail(SQ_ERR_NOMEM, "cannot read '%s'", name);
        else if (k != PART_SCALES)
            memcpy(copy[k], raw.data, bytes);
        else {
            st = sq_convert_to_f32(copy[k], raw.data, t->dtype, sq_st_numel(t));
            *ngroups = (int)t->shape[0];
        }
        sq_tensor_bytes_release(&raw);
    }
    if (st != SQ_OK)
        free_parts(copy);
    return st;
}

sq_status sq_gptq_read_linear_f32(const sq_checkpoint *ckpt, const char *linear, float *W, size_t count)
{
    int out, in, bits, ngroups = 0;
    SQ_TRY(sq_gptq_linear_shape(ckpt, linear, &out, &in, &bits));
    if (count != (size_t)out * in)
        return sq_fail(SQ_ERR_MISMATCH, "%s: '%s' is [%d, %d], caller expected %zu values", sq_checkpoint_dir(ckpt),
                       linear, out, in, count);
    void *copy[PART_COUNT] = {0};
    SQ_TRY(read_parts(ckpt, linear, copy, &ngroups));
    sq_status st = sq_gptq_dequantize(linear, copy[PART_QWEIGHT], copy[PART_QZEROS], copy[PART_SCALES],
                                      copy[PART_G_IDX], out, in, bits, ngroups, W);
    free_parts(copy);
    return st;
}

void sq_gptq_codes_free(sq_gptq_codes *c)
{
    free(c->codes), free(c->scale), free(c->zero), free(c->g_idx);
    memset(c, 0, sizeof *c);
}

sq_status sq_gptq_read_linear_codes(const sq_checkpoint *ckpt, const char *linear, sq_gptq_codes *c)
{
    memset(c, 0, sizeof *c);
    SQ_TRY(sq_gptq_linear_shape(ckpt, linear, &c->out, &c->in, &c->bits));
    void *copy[PART_COUNT] = {0};
    SQ_TRY(read_parts(ckpt, linear, copy, &c->ngroups));
    const int out = c->out, in = c->in, bits = c->bits, ngroups = c->ngroups;
    const int32_t *g_idx = copy[PART_G_IDX];
    sq_status st = SQ_OK;
    for (int i = 0; i < in && st == SQ_OK; i++)
        if (g_idx[i] < 0 || g_idx[i] >= ngroups)
            st = sq_fail(SQ_ERR_FORMAT, "%s.g_idx[%d] = %d outside [0, %d)", linear, i, g_idx[i], ngroups);
    c->codes = malloc((size_t)out * in);
    c->scale = malloc((size_t)out * ngroups * sizeof *c->scale);
    c->zero = malloc((size_t)out * ngroups * sizeof *c->zero);
    if (st == SQ_OK && (!c->codes || !c->scale || !c->zero))
        st = sq_fail(SQ_ERR_NOMEM, "%s: cannot unpack %s", sq_checkpoint_dir(ckpt), linear);
    if (st != SQ_OK) {
        free_parts(copy);
        sq_gptq_codes_free(c);
        return st;
    }
    const uint32_t *qw = copy[PART_QWEIGHT], *qz = copy[PART_QZEROS];
    const float *scales = copy[PART_SCALES];
    size_t qz_cols = (size_t)out * bits / 32;
#pragma omp parallel for
    for (int o = 0; o < out; o++) {
        for (int i = 0; i < in; i++)
            c->codes[(size_t)o * in + i] = (uint8_t)get_bits(qw + o, (size_t)out, (size_t)i, bits);
        for (int g = 0; g < ngroups; g++) {
            c->scale[(size_t)o * ngroups + g] = scales[(size_t)g * out + o];
            c->zero[(size_t)o * ngroups + g] = (float)get_bits(qz + (size_t)g * qz_cols, 1, (size_t)o, bits) + 1.0f;
        }
    }
    c->g_idx = copy[PART_G_IDX]; /* kept: the column -> group map kn_dequantize reads */
    copy[PART_G_IDX] = NULL;
    free_parts(copy);
    return SQ_OK;
}
