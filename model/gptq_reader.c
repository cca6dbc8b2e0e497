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
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: GPTQ linear '%s' lacks %s", dir, linear,
                       !qw ? "qweight" : !qz ? "qzeros" : !sc ? "scales" : "g_idx");
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

sq_status sq_gptq_read_linear_f32(const sq_checkpoint *ckpt, const char *linear, float *W, size_t count)
{
    int out, in, bits;
    SQ_TRY(sq_gptq_linear_shape(ckpt, linear, &out, &in, &bits));
    if (count != (size_t)out * in)
        return sq_fail(SQ_ERR_MISMATCH, "%s: '%s' is [%d, %d], caller expected %zu values", sq_checkpoint_dir(ckpt),
                       linear, out, in, count);
    static const char *const parts[] = {".qweight", ".qzeros", ".g_idx", ".scales"};
    const sq_st_tensor *t[4];
    void *copy[4] = {0};
    sq_status st = SQ_OK;
    for (int k = 0; k < 4; k++) {
        char name[600];
        snprintf(name, sizeof name, "%s%s", linear, parts[k]);
        sq_tensor_bytes raw;
        SQ_TRY_GOTO(st, sq_checkpoint_tensor_bytes(ckpt, name, &raw), done);
        t[k] = raw.tensor;
        /* Aligned copies: tensor offsets in a file need not be multiples of 4. */
        size_t bytes = k < 3 ? t[k]->nbytes : sq_st_numel(t[k]) * sizeof(float);
        copy[k] = malloc(bytes ? bytes : 1);
        if (!copy[k])
            st = sq_fail(SQ_ERR_NOMEM, "cannot read '%s'", name);
        else if (k < 3)
            memcpy(copy[k], raw.data, bytes);
        else
            st = sq_convert_to_f32(copy[k], raw.data, t[k]->dtype, sq_st_numel(t[k]));
        sq_tensor_bytes_release(&raw);
        if (st != SQ_OK)
            goto done;
    }
    st = sq_gptq_dequantize(linear, copy[0], copy[1], copy[3], copy[2], out, in, bits, (int)t[3]->shape[0], W);
done:
    for (int k = 0; k < 4; k++)
        free(copy[k]);
    return st;
}
