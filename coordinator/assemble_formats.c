/* assemble_formats.c: a quantized linear as dense weights or as compressed-tensors
 * pack-quantized tensors, and the config records of both (see assemble_formats.h). */
#include "coordinator/assemble_formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

/* The scale of (row, group), rounded to fp16 as every output stores it. */
static float grid_scale(const sq_quant_result *res, int row, int group)
{
    return sq_f16_to_f32(sq_f32_to_f16(res->scales[(size_t)row * res->ngroups + group]));
}

static sq_status alloc_tensor(sq_linear_tensors *out, const char *name, const char *suffix, sq_dtype dtype, int ndim,
                              int64_t d0, int64_t d1)
{
    sq_linear_tensor *t = &out->t[out->n];
    size_t n = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    *t = (sq_linear_tensor){.suffix = suffix, .dtype = dtype, .ndim = ndim, .shape = {d0, d1}};
    t->data = calloc(n ? n : 1, sq_dtype_size(dtype));
    if (!t->data)
        return sq_fail(SQ_ERR_NOMEM, "%s%s: cannot allocate %zu values", name, suffix, n);
    out->n++;
    return SQ_OK;
}

sq_status sq_dequantized_linear(const sq_quant_result *res, const char *name, sq_dtype dtype, sq_linear_tensors *out)
{
    memset(out, 0, sizeof *out);
    size_t n = (size_t)res->rows * res->cols;
    float *W = malloc(n ? n * sizeof *W : 1);
    sq_status st = W ? alloc_tensor(out, name, ".weight", dtype, 2, res->rows, res->cols)
                     : sq_fail(SQ_ERR_NOMEM, "%s: cannot dequantize a %dx%d linear", name, res->rows, res->cols);
    for (int r = 0; st == SQ_OK && r < res->rows; r++) {
        for (int c = 0; c < res->cols; c++) {
            int g = res->g_idx[c];
            if (g < 0 || g >= res->ngroups) {
                st = sq_fail(SQ_ERR_FORMAT, "%s: g_idx[%d] = %d outside [0, %d)", name, c, g, res->ngroups);
                break;
            }
            float q = (float)res->codes[(size_t)r * res->cols + c];
            W[(size_t)r * res->cols + c] = grid_scale(res, r, g) * (q - res->zeros[(size_t)r * res->ngroups + g]);
        }
    }
    if (st == SQ_OK)
        st = sq_convert_from_f32(out->t[0].data, dtype, W, n);
    free(W);
    if (st != SQ_OK)
        sq_linear_tensors_free(out);
    return st;
}

/* Value k of a stream of `bits`-bit values (4 or 8: none straddles a word) whose words are `stride` apart. */
static void put_value(int32_t *words, size_t stride, size_t k, int bits, uint32_t value)
{
    size_t pos = k * (size_t)bits;
    uint32_t *word = (uint32_t *)&words[pos / 32 * stride];
    *word |= value << (pos % 32);
}

/* The format's assumptions about our grids: contiguous groups, integer zeros in range,
 * and a symmetric zero at 2^(bits-1). */
static sq_status check_grids(const sq_quant_result *res, const char *name)
{
    if (res->bits != 4 && res->bits != 8)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: compressed-tensors output is written for 4 and 8 bits, not %d", name,
                       res->bits);
    for (int c = 0; c < res->cols; c++) {
        int expected = res->group_size > 0 ? c / res->group_size : 0;
        if (res->g_idx[c] != expected)
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: input %d is in group %d, not %d: compressed-tensors needs "
                           "contiguous groups", name, c, res->g_idx[c], expected);
    }
    float maxq = (float)((1 << res->bits) - 1), half = (float)(1 << (res->bits - 1));
    for (size_t k = 0; k < (size_t)res->rows * res->ngroups; k++) {
        float z = res->zeros[k];
        if (z != (float)(int)z || z < 0 || z > maxq || (res->sym && z != half))
            return sq_fail(SQ_ERR_FORMAT, "%s: zero point %g of grid %zu cannot be stored in compressed-tensors "
                           "(%s)", name, z, k, res->sym ? "symmetric grids have zero 2^(bits-1)" : "0..2^bits-1");
    }
    return SQ_OK;
}

sq_status sq_compressed_linear(const sq_quant_result *res, const char *name, sq_dtype source_dtype,
                               sq_linear_tensors *out)
{
    memset(out, 0, sizeof *out);
    SQ_TRY(check_grids(res, name));
    int bits = res->bits, rows = res->rows, cols = res->cols, ng = res->ngroups;
    int64_t packed_cols = ((int64_t)cols * bits + 31) / 32, packed_rows = ((int64_t)rows * bits + 31) / 32;
    sq_dtype scale_dtype = source_dtype == SQ_DTYPE_F32 ? SQ_DTYPE_F32 : SQ_DTYPE_F16;
    sq_status st = alloc_tensor(out, name, ".weight_packed", SQ_DTYPE_I32, 2, rows, packed_cols);
    if (st == SQ_OK)
        st = alloc_tensor(out, name, ".weight_scale", scale_dtype, 2, rows, ng);
    if (st == SQ_OK)
        st = alloc_tensor(out, name, ".weight_shape", SQ_DTYPE_I64, 1, 2, 0);
    if (st == SQ_OK && !res->sym)
        st = alloc_tensor(out, name, ".weight_zero_point", SQ_DTYPE_I32, 2, packed_rows, ng);
    float *scales = st == SQ_OK ? malloc((size_t)rows * ng * sizeof *scales + 1) : NULL;
    if (st == SQ_OK && !scales)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", name);
    for (int r = 0; st == SQ_OK && r < rows; r++) {
        int32_t *row = (int32_t *)out->t[0].data + (size_t)r * packed_cols;
        for (int c = 0; c < cols; c++)
            put_value(row, 1, (size_t)c, bits, res->codes[(size_t)r * cols + c]);
        for (int g = 0; g < ng; g++) {
            scales[(size_t)r * ng + g] = grid_scale(res, r, g);
            if (!res->sym)
                put_value((int32_t *)out->t[3].data + g, (size_t)ng, (size_t)r, bits,
                          (uint32_t)res->zeros[(size_t)r * ng + g]);
        }
    }
    if (st == SQ_OK) {
        st = sq_convert_from_f32(out->t[1].data, scale_dtype, scales, (size_t)rows * ng);
        int64_t *shape = out->t[2].data;
        shape[0] = rows, shape[1] = cols;
    }
    free(scales);
    if (st != SQ_OK)
        sq_linear_tensors_free(out);
    return st;
}

sq_status sq_int_quantized_linear(const sq_quant_result *res, const char *name, sq_dtype source_dtype,
                                  sq_linear_tensors *out)
{
    memset(out, 0, sizeof *out);
    if (res->bits != 8 || !res->sym || res->ngroups != 1)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: int-quantized output holds 8-bit symmetric per-channel weights, not "
                       "%d-bit %s with %d groups", name, res->bits, res->sym ? "symmetric" : "asymmetric", res->ngroups);
    SQ_TRY(check_grids(res, name));
    int rows = res->rows, cols = res->cols;
    sq_dtype scale_dtype = source_dtype == SQ_DTYPE_F32 ? SQ_DTYPE_F32 : SQ_DTYPE_F16;
    sq_status st = alloc_tensor(out, name, ".weight", SQ_DTYPE_I8, 2, rows, cols);
    if (st == SQ_OK)
        st = alloc_tensor(out, name, ".weight_scale", scale_dtype, 2, rows, 1);
    float *scales = st == SQ_OK ? malloc((size_t)rows * sizeof *scales + 1) : NULL;
    if (st == SQ_OK && !scales)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", name);
    for (int r = 0; st == SQ_OK && r < rows; r++) {
        int8_t *row = (int8_t *)out->t[0].data + (size_t)r * cols;
        for (int c = 0; c < cols; c++)
            row[c] = (int8_t)((int)res->codes[(size_t)r * cols + c] - 128);
        scales[r] = grid_scale(res, r, 0);
    }
    if (st == SQ_OK)
        st = sq_convert_from_f32(out->t[1].data, scale_dtype, scales, (size_t)rows);
    free(scales);
    if (st != SQ_OK)
        sq_linear_tensors_free(out);
    return st;
}

/* One config_groups entry's quantization arguments (compressed-tensors' QuantizationArgs). */
static json_t *quantization_args(int bits, bool sym, const char *strategy, json_t *group_size, json_t *actorder,
                                 bool dynamic)
{
    return json_pack("{s:i, s:s, s:b, s:s, s:o, s:o, s:b, s:o, s:n}", "num_bits", bits, "type", "int", "symmetric", sym,
                     "strategy", strategy, "group_size", group_size, "actorder", actorder, "dynamic", dynamic,
                     "observer", dynamic ? json_null() : json_string("minmax"), "block_structure");
}

json_t *sq_int_quantized_config(const sq_quant_options *opt, int act_bits)
{
    json_t *weights = quantization_args(opt->bits, opt->sym, "channel", json_null(), json_null(), false);
    json_t *inputs = quantization_args(act_bits, true, "token", json_null(), json_null(), true);
    return json_pack("{s:s, s:s, s:s, s:{s:{s:[s], s:o, s:o, s:n, s:s}}, s:[s], s:n, s:n}", "quant_method",
                     "compressed-tensors", "format", "int-quantized", "quantization_status", "compressed",
                     "config_groups", "group_0", "targets", "Linear", "weights", weights, "input_activations", inputs,
                     "output_activations", "format", "int-quantized", "ignore", "lm_head", "kv_cache_scheme",
                     "global_compression_ratio");
}

static json_t *compressed_sparsity(const json_t *sparsity)
{
    const json_t *pattern = json_object_get(sparsity, "pattern");
    return json_pack("{s:s, s:O, s:s, s:[s], s:[s], s:b}", "format", "dense", "global_sparsity",
                     json_object_get(sparsity, "global_sparsity"), "sparsity_structure",
                     json_is_string(pattern) ? json_string_value(pattern) : "unstructured", "targets", "Linear",
                     "ignore", "lm_head", "registry_requires_subclass", 0);
}

json_t *sq_compressed_quantization_config(const sq_quant_options *opt, const json_t *sparsity)
{
    bool grouped = opt->group_size > 0;
    json_t *weights = quantization_args(opt->bits, opt->sym, grouped ? "group" : "channel",
                                        grouped ? json_integer(opt->group_size) : json_null(),
                                        opt->desc_act ? json_string("weight") : json_null(), false);
    json_t *config = json_pack("{s:s, s:s, s:s, s:{s:{s:[s], s:o, s:n, s:n, s:s}}, s:[s], s:n, s:n}", "quant_method",
                               "compressed-tensors", "format", "pack-quantized", "quantization_status", "compressed",
                               "config_groups", "group_0", "targets", "Linear", "weights", weights,
                               "input_activations", "output_activations", "format", "pack-quantized", "ignore",
                               "lm_head", "kv_cache_scheme", "global_compression_ratio");
    if (sparsity)
        json_object_set_new(config, "sparsity_config", compressed_sparsity(sparsity));
    return config;
}

sq_status sq_compressed_groups_by_width(json_t *config, const char *const *linears, const int *bits, int n)
{
    json_t *groups = json_object_get(config, "config_groups");
    json_t *scheme = json_object_get(groups, "group_0");
    json_t *by_width = json_object();
    if (!scheme || !by_width)
        return sq_fail(SQ_ERR_ARG, "compressed-tensors config: no config_groups.group_0 to split by width");
    for (int k = 0; k < n; k++) {
        char name[32];
        snprintf(name, sizeof name, "group_%d", bits[k]);
        json_t *group = json_object_get(by_width, name);
        if (!group) {
            group = json_deep_copy(scheme);
            json_object_set_new(group, "targets", json_array());
            json_object_set_new(json_object_get(group, "weights"), "num_bits", json_integer(bits[k]));
            json_object_set_new(by_width, name, group);
        }
        json_array_append_new(json_object_get(group, "targets"), json_string(linears[k]));
    }
    json_object_set_new(config, "config_groups", by_width);
    return SQ_OK;
}
