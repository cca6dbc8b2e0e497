/* assemble_awq.c: a quantized linear as AWQ GEMM tensors and the config
 * entries of an awq output (see assemble_awq.h). */
#include "coordinator/assemble_awq.h"

#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"

/* Nibble position of output o % 8 inside its word: the inverse of AWQ_ORDER {0, 2, 4, 6, 1, 3, 5, 7}. */
static const int awq_position[8] = {0, 4, 1, 5, 2, 6, 3, 7};

static sq_status check_awq_grids(const sq_quant_result *res, const char *name)
{
    if (res->bits != 4 || res->group_size <= 0 || res->cols % res->group_size != 0 || res->rows % 8 != 0)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: the awq format holds 4-bit groups dividing the inputs and outputs in "
                       "multiples of 8, not %d bits, group %d, [%d out, %d in]", name, res->bits, res->group_size,
                       res->rows, res->cols);
    for (int c = 0; c < res->cols; c++)
        if (res->g_idx[c] != c / res->group_size)
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: input %d is in group %d, not %d: the awq format needs "
                           "contiguous groups", name, c, res->g_idx[c], c / res->group_size);
    for (size_t k = 0; k < (size_t)res->rows * res->ngroups; k++) {
        float z = res->zeros[k];
        if (z != (float)(int)z || z < 0 || z > 15)
            return sq_fail(SQ_ERR_FORMAT, "%s: zero point %g of grid %zu is not a 4-bit integer", name, z, k);
    }
    return SQ_OK;
}

static sq_status add_tensor(sq_linear_tensors *out, const char *name, const char *suffix, sq_dtype dtype, int64_t d0,
                            int64_t d1)
{
    sq_linear_tensor *t = &out->t[out->n];
    *t = (sq_linear_tensor){.suffix = suffix, .dtype = dtype, .ndim = 2, .shape = {d0, d1}};
    size_t n = (size_t)d0 * (size_t)d1;
    t->data = calloc(n ? n : 1, sq_dtype_size(dtype));
    if (!t->data)
        return sq_fail(SQ_ERR_NOMEM, "%s%s: cannot allocate [%lld, %lld]", name, suffix, (long long)d0, (long long)d1);
    out->n++;
    return SQ_OK;
}

/* words [rows, out/8]: value v of (row, output o) into word (row, o/8) at o's nibble. */
static void put_awq(int32_t *words, int out, int row, int o, uint32_t v)
{
    uint32_t *word = (uint32_t *)&words[(size_t)row * (out / 8) + o / 8];
    *word |= (v & 15u) << (4 * awq_position[o % 8]);
}

sq_status sq_awq_linear(const sq_quant_result *res, const char *name, sq_linear_tensors *out)
{
    memset(out, 0, sizeof *out);
    SQ_TRY(check_awq_grids(res, name));
    int rows = res->rows, cols = res->cols, ng = res->ngroups;
    sq_status st = add_tensor(out, name, ".qweight", SQ_DTYPE_I32, cols, rows / 8);
    if (st == SQ_OK)
        st = add_tensor(out, name, ".qzeros", SQ_DTYPE_I32, ng, rows / 8);
    if (st == SQ_OK)
        st = add_tensor(out, name, ".scales", SQ_DTYPE_F16, ng, rows);
    float *scales = st == SQ_OK ? malloc((size_t)ng * rows * sizeof *scales) : NULL;
    if (st == SQ_OK && !scales)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", name);
    for (int o = 0; st == SQ_OK && o < rows; o++) {
        for (int i = 0; i < cols; i++)
            put_awq(out->t[0].data, rows, i, o, res->codes[(size_t)o * cols + i]);
        for (int g = 0; g < ng; g++) {
            put_awq(out->t[1].data, rows, g, o, (uint32_t)res->zeros[(size_t)o * ng + g]);
            scales[(size_t)g * rows + o] = res->scales[(size_t)o * ng + g];
        }
    }
    if (st == SQ_OK)
        st = sq_convert_from_f32(out->t[2].data, SQ_DTYPE_F16, scales, (size_t)ng * rows);
    free(scales);
    if (st != SQ_OK)
        sq_linear_tensors_free(out);
    return st;
}

json_t *sq_awq_config_entries(const sq_quant_options *opt, const json_t *config)
{
    json_t *entries = json_pack("{s:{s:s, s:i, s:i, s:b, s:s}}", "quantization_config", "quant_method", "awq", "bits",
                                opt->bits, "group_size", opt->group_size, "zero_point", 1, "version", "gemm");
    bool has_dtype = json_object_get(config, "dtype") != NULL;
    if (entries && (!has_dtype || json_object_get(config, "torch_dtype")))
        json_object_set_new(entries, "torch_dtype", json_string("float16"));
    if (entries && has_dtype)
        json_object_set_new(entries, "dtype", json_string("float16"));
    return entries;
}
