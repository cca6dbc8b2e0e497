/* layer_results.c: moving quantized or pruned-dense layer results between
 * ranks, to and from layer artifacts, and into device weights (see layer_results.h). */
#include "worker/layer_results.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "worker/comm.h"

#define RESULT_TAG 7100

/* What a receiver needs to allocate a result. */
typedef struct {
    int rows, cols, bits, group_size, sym;
    double loss;
} result_header;

static result_header header_of(const sq_quant_result *res)
{
    return (result_header){res->rows, res->cols, res->bits, res->group_size, res->sym, res->loss};
}

static sq_status alloc_from_header(sq_quant_result *res, const result_header *h)
{
    SQ_TRY(sq_quant_result_alloc(res, h->rows, h->cols, h->bits, h->group_size, h->sym != 0));
    res->loss = h->loss;
    return SQ_OK;
}

void sq_dense_weights_free(sq_dense_weights *dense)
{
    free(dense->data);
    memset(dense, 0, sizeof *dense);
}

static void folded_free(sq_folded_tensors *f)
{
    free(f->input_norm), free(f->post_attention_norm), free(f->v_bias);
    memset(f, 0, sizeof *f);
}

const char *sq_norm_name(sq_norm_id id)
{
    return id == SQ_NORM_INPUT ? "input_layernorm" : id == SQ_NORM_POST_ATTENTION ? "post_attention_layernorm" : "?";
}

void sq_layer_results_free(sq_layer_results *results)
{
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        sq_quant_result_free(&results->linear[i]);
        sq_dense_weights_free(&results->dense[i]);
    }
    for (int k = 0; k < SQ_NORM_COUNT; k++)
        sq_dense_weights_free(&results->norm[k]);
    folded_free(&results->folded);
}

/* The three folded tensors in one order: name inside the layer, host buffer, length. */
typedef struct {
    const char *name;
    float **data;
    int n;
} folded_slot;

static int folded_slots(sq_folded_tensors *f, folded_slot slots[3])
{
    slots[0] = (folded_slot){"input_layernorm.weight", &f->input_norm, f->hidden};
    slots[1] = (folded_slot){"post_attention_layernorm.weight", &f->post_attention_norm, f->hidden};
    slots[2] = (folded_slot){"self_attn.v_proj.bias", &f->v_bias, f->v_rows};
    return f->v_rows > 0 ? 3 : 2;
}

/* Allocate f's buffers for `hidden` and `v_rows` (0: no v bias). */
static sq_status folded_alloc(sq_folded_tensors *f, int hidden, int v_rows)
{
    memset(f, 0, sizeof *f);
    if (hidden <= 0 || v_rows < 0)
        return sq_fail(SQ_ERR_ARG, "folded tensors: bad sizes hidden=%d v_rows=%d", hidden, v_rows);
    *f = (sq_folded_tensors){.hidden = hidden, .v_rows = v_rows};
    folded_slot slots[3];
    int n = folded_slots(f, slots);
    for (int k = 0; k < n; k++) {
        *slots[k].data = malloc((size_t)slots[k].n * sizeof(float));
        if (!*slots[k].data) {
            folded_free(f);
            return sq_fail(SQ_ERR_NOMEM, "folded tensors: cannot hold %d floats", slots[k].n);
        }
    }
    return SQ_OK;
}

sq_status sq_folded_tensors_capture(sq_folded_tensors *folded, const sq_layer_weights *weights, int hidden)
{
    const sq_linear *v = &weights->linear[SQ_LINEAR_V];
    SQ_TRY(folded_alloc(folded, hidden, v->bias ? v->out_features : 0));
    const float *device[3] = {weights->input_norm, weights->post_attention_norm, v->bias};
    folded_slot slots[3];
    int n = folded_slots(folded, slots);
    sq_status st = SQ_OK;
    for (int k = 0; k < n && st == SQ_OK; k++)
        st = kn_download(*slots[k].data, device[k], (size_t)slots[k].n * sizeof(float));
    if (st != SQ_OK)
        folded_free(folded);
    return st;
}

const float *sq_folded_tensor(const sq_folded_tensors *folded, const char *name, int *n)
{
    folded_slot slots[3];
    int count = folded->hidden > 0 ? folded_slots((sq_folded_tensors *)folded, slots) : 0;
    for (int k = 0; k < count; k++) {
        if (strcmp(slots[k].name, name) == 0) {
            *n = slots[k].n;
            return *slots[k].data;
        }
    }
    *n = 0;
    return NULL;
}

/* The folded tensors between ranks: a header {hidden, v_rows}, then each tensor. */
static sq_status folded_send(const sq_folded_tensors *f, int dest)
{
    int header[2] = {f->hidden, f->v_rows};
    SQ_TRY(sq_comm_send_host(header, sizeof header, dest, RESULT_TAG));
    folded_slot slots[3];
    int n = f->hidden > 0 ? folded_slots((sq_folded_tensors *)f, slots) : 0;
    for (int k = 0; k < n; k++)
        SQ_TRY(sq_comm_send_host(*slots[k].data, (size_t)slots[k].n * sizeof(float), dest, RESULT_TAG));
    return SQ_OK;
}

static sq_status folded_recv(sq_folded_tensors *f, int source)
{
    int header[2];
    SQ_TRY(sq_comm_recv_host(header, sizeof header, source, RESULT_TAG));
    if (header[0] == 0)
        return SQ_OK;
    SQ_TRY(folded_alloc(f, header[0], header[1]));
    folded_slot slots[3];
    int n = folded_slots(f, slots);
    for (int k = 0; k < n; k++)
        SQ_TRY(sq_comm_recv_host(*slots[k].data, (size_t)slots[k].n * sizeof(float), source, RESULT_TAG));
    return SQ_OK;
}

static sq_status folded_bcast(sq_folded_tensors *f, int root, int my_rank)
{
    int header[2] = {f->hidden, f->v_rows};
    SQ_TRY(sq_comm_bcast_host(header, sizeof header, root));
    if (header[0] == 0)
        return SQ_OK;
    if (my_rank != root)
        SQ_TRY(folded_alloc(f, header[0], header[1]));
    folded_slot slots[3];
    int n = folded_slots(f, slots);
    for (int k = 0; k < n; k++)
        SQ_TRY(sq_comm_bcast_host(*slots[k].data, (size_t)slots[k].n * sizeof(float), root));
    return SQ_OK;
}

static size_t dense_bytes(const sq_dense_weights *d) { return (size_t)d->rows * d->cols * sq_dtype_size(d->dtype); }

static sq_status dense_alloc(sq_dense_weights *d, int rows, int cols, sq_dtype dtype)
{
    memset(d, 0, sizeof *d);
    if (!sq_dtype_is_float(dtype))
        return sq_fail(SQ_ERR_ARG, "dense weights must be a float type, not %s", sq_dtype_name(dtype));
    *d = (sq_dense_weights){.rows = rows, .cols = cols, .dtype = dtype};
    d->data = malloc(dense_bytes(d) ? dense_bytes(d) : 1);
    return d->data ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "cannot hold a %dx%d dense linear", rows, cols);
}

sq_status sq_dense_weights_from_device(sq_dense_weights *dense, const float *W, int rows, int cols, sq_dtype dtype)
{
    SQ_TRY(dense_alloc(dense, rows, cols, dtype));
    size_t n = (size_t)rows * cols;
    float *host = malloc(n ? n * sizeof *host : 1);
    sq_status st = host ? kn_download(host, W, n * sizeof *host)
                        : sq_fail(SQ_ERR_NOMEM, "cannot hold a %dx%d linear", rows, cols);
    if (st == SQ_OK)
        st = sq_convert_from_f32(dense->data, dtype, host, n);
    free(host);
    if (st != SQ_OK)
        sq_dense_weights_free(dense);
    return st;
}

static size_t cells(const sq_quant_result *res) { return (size_t)res->rows * res->cols; }
static size_t group_cells(const sq_quant_result *res) { return (size_t)res->rows * res->ngroups; }

sq_status sq_quant_result_bcast(sq_quant_result *res, int root, int my_rank)
{
    result_header h = my_rank == root ? header_of(res) : (result_header){0};
    SQ_TRY(sq_comm_bcast_host(&h, sizeof h, root));
    if (my_rank != root)
        SQ_TRY(alloc_from_header(res, &h));
    SQ_TRY(sq_comm_bcast_host(res->codes, cells(res), root));
    SQ_TRY(sq_comm_bcast_host(res->scales, group_cells(res) * sizeof(float), root));
    SQ_TRY(sq_comm_bcast_host(res->zeros, group_cells(res) * sizeof(float), root));
    return sq_comm_bcast_host(res->g_idx, (size_t)res->cols * sizeof(int32_t), root);
}

sq_status sq_quant_result_send(const sq_quant_result *res, int dest)
{
    result_header h = header_of(res);
    SQ_TRY(sq_comm_send_host(&h, sizeof h, dest, RESULT_TAG));
    SQ_TRY(sq_comm_send_host(res->codes, cells(res), dest, RESULT_TAG));
    SQ_TRY(sq_comm_send_host(res->scales, group_cells(res) * sizeof(float), dest, RESULT_TAG));
    SQ_TRY(sq_comm_send_host(res->zeros, group_cells(res) * sizeof(float), dest, RESULT_TAG));
    return sq_comm_send_host(res->g_idx, (size_t)res->cols * sizeof(int32_t), dest, RESULT_TAG);
}

sq_status sq_quant_result_recv(sq_quant_result *res, int source)
{
    result_header h;
    SQ_TRY(sq_comm_recv_host(&h, sizeof h, source, RESULT_TAG));
    SQ_TRY(alloc_from_header(res, &h));
    SQ_TRY(sq_comm_recv_host(res->codes, cells(res), source, RESULT_TAG));
    SQ_TRY(sq_comm_recv_host(res->scales, group_cells(res) * sizeof(float), source, RESULT_TAG));
    SQ_TRY(sq_comm_recv_host(res->zeros, group_cells(res) * sizeof(float), source, RESULT_TAG));
    return sq_comm_recv_host(res->g_idx, (size_t)res->cols * sizeof(int32_t), source, RESULT_TAG);
}

/* What a receiver needs to allocate dense weights. */
typedef struct {
    int rows, cols, dtype;
} dense_header;

static sq_status dense_bcast(sq_dense_weights *d, int root, int my_rank)
{
    dense_header h = my_rank == root ? (dense_header){d->rows, d->cols, (int)d->dtype} : (dense_header){0};
    SQ_TRY(sq_comm_bcast_host(&h, sizeof h, root));
    if (my_rank != root)
        SQ_TRY(dense_alloc(d, h.rows, h.cols, (sq_dtype)h.dtype));
    return sq_comm_bcast_host(d->data, dense_bytes(d), root);
}

static sq_status dense_send(const sq_dense_weights *d, int dest)
{
    dense_header h = {d->rows, d->cols, (int)d->dtype};
    SQ_TRY(sq_comm_send_host(&h, sizeof h, dest, RESULT_TAG));
    return sq_comm_send_host(d->data, dense_bytes(d), dest, RESULT_TAG);
}

static sq_status dense_recv(sq_dense_weights *d, int source)
{
    dense_header h;
    SQ_TRY(sq_comm_recv_host(&h, sizeof h, source, RESULT_TAG));
    SQ_TRY(dense_alloc(d, h.rows, h.cols, (sq_dtype)h.dtype));
    return sq_comm_recv_host(d->data, dense_bytes(d), source, RESULT_TAG);
}

static bool has_norms(const sq_layer_results *results) { return results->norm[0].data != NULL; }

/* The form, and whether rescaled norms follow the linears. */
typedef struct {
    int form, norms;
} results_header;

sq_status sq_layer_results_send(const sq_layer_results *results, int dest)
{
    results_header h = {(int)results->form, has_norms(results)};
    SQ_TRY(sq_comm_send_host(&h, sizeof h, dest, RESULT_TAG));
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        SQ_TRY(results->form == SQ_LAYER_DENSE ? dense_send(&results->dense[i], dest)
                                               : sq_quant_result_send(&results->linear[i], dest));
    for (int k = 0; h.norms && k < SQ_NORM_COUNT; k++)
        SQ_TRY(dense_send(&results->norm[k], dest));
    return folded_send(&results->folded, dest);
}

sq_status sq_layer_results_recv(sq_layer_results *results, int source)
{
    results_header h;
    SQ_TRY(sq_comm_recv_host(&h, sizeof h, source, RESULT_TAG));
    results->form = h.form == SQ_LAYER_DENSE ? SQ_LAYER_DENSE : SQ_LAYER_QUANTIZED;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        SQ_TRY(results->form == SQ_LAYER_DENSE ? dense_recv(&results->dense[i], source)
                                               : sq_quant_result_recv(&results->linear[i], source));
    for (int k = 0; h.norms && k < SQ_NORM_COUNT; k++)
        SQ_TRY(dense_recv(&results->norm[k], source));
    return folded_recv(&results->folded, source);
}

sq_status sq_layer_result_bcast_linear(sq_layer_results *results, int linear, int root, int my_rank)
{
    return results->form == SQ_LAYER_DENSE ? dense_bcast(&results->dense[linear], root, my_rank)
                                           : sq_quant_result_bcast(&results->linear[linear], root, my_rank);
}

sq_status sq_layer_results_bcast(sq_layer_results *results, int root, int my_rank)
{
    results_header h = {(int)results->form, has_norms(results)};
    SQ_TRY(sq_comm_bcast_host(&h, sizeof h, root));
    results->form = h.form == SQ_LAYER_DENSE ? SQ_LAYER_DENSE : SQ_LAYER_QUANTIZED;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        SQ_TRY(sq_layer_result_bcast_linear(results, i, root, my_rank));
    for (int k = 0; h.norms && k < SQ_NORM_COUNT; k++)
        SQ_TRY(dense_bcast(&results->norm[k], root, my_rank));
    return folded_bcast(&results->folded, root, my_rank);
}

/* Device dev_W[rows, cols] = fp16(scale[r, g_idx[c]]) * (codes[r, c] - zero[r, g_idx[c]]):
 * the codes and grids go up (a quarter of the bytes of the fp32 weights) and the
 * weights are rebuilt where they are used. */
static sq_status dequantize_to_device(const sq_quant_result *res, float *dev_W)
{
    size_t groups = group_cells(res), cells = (size_t)res->rows * res->cols;
    float *scales = malloc(groups * sizeof *scales);
    uint8_t *dev_codes = NULL;
    float *dev_scales = NULL, *dev_zeros = NULL;
    int32_t *dev_g_idx = NULL;
    sq_status st = scales ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "cannot dequantize a %dx%d linear", res->rows, res->cols);
    if (st != SQ_OK)
        return st;
    /* Round each grid's scale to fp16 once, as the checkpoint stores it. */
    for (size_t g = 0; g < groups; g++)
        scales[g] = sq_f16_to_f32(sq_f32_to_f16(res->scales[g]));
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_codes, cells ? cells : 1), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_scales, groups * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_zeros, groups * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev_g_idx, (size_t)res->cols * sizeof(int32_t)), done);
    SQ_TRY_GOTO(st, kn_upload(dev_codes, res->codes, cells), done);
    SQ_TRY_GOTO(st, kn_upload(dev_scales, scales, groups * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_upload(dev_zeros, res->zeros, groups * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_upload(dev_g_idx, res->g_idx, (size_t)res->cols * sizeof(int32_t)), done);
    st = kn_dequantize(dev_W, dev_codes, dev_scales, dev_zeros, res->ngroups, dev_g_idx, res->rows, res->cols);
done:
    kn_free(dev_codes), kn_free(dev_scales), kn_free(dev_zeros), kn_free(dev_g_idx);
    free(scales);
    return st;
}

sq_status sq_layer_result_zero_mask(const sq_layer_results *results, int linear, uint8_t *is_zero)
{
    if (results->form != SQ_LAYER_DENSE) {
        const sq_quant_result *res = &results->linear[linear];
#pragma omp parallel for schedule(static)
        for (int r = 0; r < res->rows; r++)
            for (int c = 0; c < res->cols; c++) {
                size_t k = (size_t)r * res->cols + c;
                is_zero[k] = (float)res->codes[k] == res->zeros[(size_t)r * res->ngroups + res->g_idx[c]];
            }
        return SQ_OK;
    }
    const sq_dense_weights *d = &results->dense[linear];
    size_t n = (size_t)d->rows * d->cols;
    float *W = malloc(n ? n * sizeof(float) : 1);
    if (!W)
        return sq_fail(SQ_ERR_NOMEM, "cannot rebuild a %dx%d linear", d->rows, d->cols);
    sq_status st = sq_convert_to_f32(W, d->data, d->dtype, n);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < n; k++)
        is_zero[k] = W[k] == 0.0f;
    free(W);
    return st;
}

sq_status sq_layer_result_zeros(const sq_layer_results *results, int linear, int64_t *zeros)
{
    int rows = results->form == SQ_LAYER_DENSE ? results->dense[linear].rows : results->linear[linear].rows;
    int cols = results->form == SQ_LAYER_DENSE ? results->dense[linear].cols : results->linear[linear].cols;
    size_t n = (size_t)rows * cols;
    uint8_t *is_zero = malloc(n ? n : 1);
    if (!is_zero)
        return sq_fail(SQ_ERR_NOMEM, "cannot mark the zeros of a %dx%d linear", rows, cols);
    sq_status st = sq_layer_result_zero_mask(results, linear, is_zero);
    int64_t count = 0;
#pragma omp parallel for reduction(+ : count) schedule(static)
    for (size_t k = 0; k < n; k++)
        count += is_zero[k];
    free(is_zero);
    *zeros = count;
    return st;
}

sq_status sq_quant_result_install(const sq_quant_result *res, sq_linear *linear)
{
    if (res->rows != linear->out_features || res->cols != linear->in_features)
        return sq_fail(SQ_ERR_MISMATCH, "quantized weights are %dx%d, the linear expects %dx%d", res->rows, res->cols,
                       linear->out_features, linear->in_features);
    return dequantize_to_device(res, linear->weight);
}

sq_status sq_layer_result_install_linear(const sq_layer_results *results, int linear, sq_linear *weights)
{
    if (results->form != SQ_LAYER_DENSE)
        return sq_quant_result_install(&results->linear[linear], weights);
    const sq_dense_weights *d = &results->dense[linear];
    if (d->rows != weights->out_features || d->cols != weights->in_features)
        return sq_fail(SQ_ERR_MISMATCH, "pruned weights are %dx%d, the linear expects %dx%d", d->rows, d->cols,
                       weights->out_features, weights->in_features);
    return kn_upload_as_f32(weights->weight, d->data, d->dtype, (size_t)d->rows * d->cols);
}

sq_status sq_layer_results_install(const sq_layer_results *results, sq_layer_weights *weights)
{
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        sq_status st = sq_layer_result_install_linear(results, i, &weights->linear[i]);
        if (st != SQ_OK)
            return sq_fail_context(st, "%s", sq_linear_name(i));
    }
    float *norms[SQ_NORM_COUNT] = {weights->input_norm, weights->post_attention_norm};
    for (int k = 0; has_norms(results) && k < SQ_NORM_COUNT; k++) {
        const sq_dense_weights *d = &results->norm[k];
        SQ_TRY(kn_upload_as_f32(norms[k], d->data, d->dtype, (size_t)d->cols));
    }
    const sq_folded_tensors *f = &results->folded;
    if (f->hidden == 0)
        return SQ_OK;
    sq_linear *v = &weights->linear[SQ_LINEAR_V];
    if ((f->v_rows > 0) != (v->bias != NULL) || (v->bias && f->v_rows != v->out_features))
        return sq_fail(SQ_ERR_MISMATCH, "folded v_proj bias of %d rows, the layer's v_proj has %s", f->v_rows,
                       v->bias ? "another size" : "no bias");
    SQ_TRY(kn_upload(weights->input_norm, f->input_norm, (size_t)f->hidden * sizeof(float)));
    SQ_TRY(kn_upload(weights->post_attention_norm, f->post_attention_norm, (size_t)f->hidden * sizeof(float)));
    return v->bias ? kn_upload(v->bias, f->v_bias, (size_t)f->v_rows * sizeof(float)) : SQ_OK;
}

/* The tensor names of one linear, in one buffer. */
typedef struct {
    char codes[160], scales[160], zeros[160], g_idx[160], weight[160];
} artifact_names;

static artifact_names names_for(int layer, int linear)
{
    artifact_names n;
    const char *base = sq_linear_name(linear);
    snprintf(n.codes, sizeof n.codes, "model.layers.%d.%s.codes", layer, base);
    snprintf(n.scales, sizeof n.scales, "model.layers.%d.%s.scales", layer, base);
    snprintf(n.zeros, sizeof n.zeros, "model.layers.%d.%s.zeros", layer, base);
    snprintf(n.g_idx, sizeof n.g_idx, "model.layers.%d.%s.g_idx", layer, base);
    snprintf(n.weight, sizeof n.weight, "model.layers.%d.%s.weight", layer, base);
    return n;
}

static sq_status write_dense(const sq_layer_results *results, int layer, const char *path, char *sha256_hex)
{
    artifact_names names[SQ_LINEAR_COUNT];
    sq_st_entry entries[SQ_LINEAR_COUNT];
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        const sq_dense_weights *d = &results->dense[i];
        names[i] = names_for(layer, i);
        entries[i] = (sq_st_entry){names[i].weight, d->dtype, 2, {d->rows, d->cols}, d->data};
    }
    json_t *metadata = json_pack("{s:s}", "form", "dense");
    sq_status st = sq_st_write_hashed(path, entries, SQ_LINEAR_COUNT, metadata, sha256_hex);
    json_decref(metadata);
    return st;
}

sq_status sq_layer_results_write(const sq_layer_results *results, int layer, const char *path, char *sha256_hex)
{
    if (results->form == SQ_LAYER_DENSE)
        return write_dense(results, layer, path, sha256_hex);
    artifact_names names[SQ_LINEAR_COUNT];
    sq_st_entry entries[4 * SQ_LINEAR_COUNT + SQ_NORM_COUNT + 3];
    char norm_names[SQ_NORM_COUNT][160];
    int n_entries = 4 * SQ_LINEAR_COUNT;
    for (int k = 0; has_norms(results) && k < SQ_NORM_COUNT; k++) {
        const sq_dense_weights *d = &results->norm[k];
        snprintf(norm_names[k], sizeof norm_names[k], "model.layers.%d.%s.weight", layer, sq_norm_name(k));
        entries[n_entries++] = (sq_st_entry){norm_names[k], d->dtype, 1, {d->cols}, d->data};
    }
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        const sq_quant_result *res = &results->linear[i];
        names[i] = names_for(layer, i);
        entries[4 * i] = (sq_st_entry){names[i].codes, SQ_DTYPE_U8, 2, {res->rows, res->cols}, res->codes};
        entries[4 * i + 1] = (sq_st_entry){names[i].scales, SQ_DTYPE_F32, 2, {res->rows, res->ngroups}, res->scales};
        entries[4 * i + 2] = (sq_st_entry){names[i].zeros, SQ_DTYPE_F32, 2, {res->rows, res->ngroups}, res->zeros};
        entries[4 * i + 3] = (sq_st_entry){names[i].g_idx, SQ_DTYPE_I32, 1, {res->cols}, res->g_idx};
    }
    const sq_quant_result *first = &results->linear[0];
    char bits[16], group[16], linear_bits[2 * SQ_LINEAR_COUNT + 1];
    snprintf(bits, sizeof bits, "%d", first->bits);
    snprintf(group, sizeof group, "%d", first->group_size);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) /* "4,4,4,8,3,3,2": each linear's width (mixed precision) */
        snprintf(linear_bits + 2 * i, sizeof linear_bits - 2 * (size_t)i, "%d%s", results->linear[i].bits,
                 i + 1 < SQ_LINEAR_COUNT ? "," : "");
    json_t *metadata = json_pack("{s:s, s:s, s:s, s:s}", "bits", bits, "group_size", group, "sym",
                                 first->sym ? "true" : "false", "linear_bits", linear_bits);
    folded_slot slots[3];
    char folded_names[3][160];
    int nfolded = results->folded.hidden > 0 ? folded_slots((sq_folded_tensors *)&results->folded, slots) : 0;
    for (int k = 0; k < nfolded; k++) {
        snprintf(folded_names[k], sizeof folded_names[k], "model.layers.%d.%s", layer, slots[k].name);
        entries[n_entries++] = (sq_st_entry){folded_names[k], SQ_DTYPE_F32, 1, {slots[k].n}, *slots[k].data};
    }
    if (nfolded > 0)
        json_object_set_new(metadata, "folded", json_string("true"));
    sq_status st = sq_st_write_hashed(path, entries, n_entries, metadata, sha256_hex);
    json_decref(metadata);
    return st;
}

/* Copy one tensor of the artifact into `dst` after checking its dtype and element count. */
static sq_status read_exact(const sq_st_file *file, const char *name, sq_dtype dtype, size_t numel, void *dst)
{
    const sq_st_tensor *t = sq_st_find(&file->header, name);
    if (!t)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s is missing", file->path, name);
    if (t->dtype != dtype || sq_st_numel(t) != numel)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s has dtype %s and %llu elements, expected %s and %zu", file->path,
                       name, sq_dtype_name(t->dtype), (unsigned long long)sq_st_numel(t), sq_dtype_name(dtype), numel);
    memcpy(dst, sq_st_data(file, t), numel * sq_dtype_size(dtype));
    return SQ_OK;
}

/* Rescaled norms, when the artifact has them: both, float vectors of the hidden size. */
static sq_status read_norms(sq_layer_results *results, int layer, const sq_st_file *file, const sq_model_config *cfg)
{
    for (int k = 0; k < SQ_NORM_COUNT; k++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, sq_norm_name(k));
        const sq_st_tensor *t = sq_st_find(&file->header, name);
        if (!t && k == 0)
            return SQ_OK;
        if (!t)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s is missing (the artifact has rescaled norms)", file->path,
                           name);
        if (!sq_dtype_is_float(t->dtype) || t->ndim != 1 || t->shape[0] != cfg->hidden_size)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s must be a float [%d] vector", file->path, name,
                           cfg->hidden_size);
        SQ_TRY(dense_alloc(&results->norm[k], 1, cfg->hidden_size, t->dtype));
        SQ_TRY(read_exact(file, name, t->dtype, (size_t)cfg->hidden_size, results->norm[k].data));
    }
    return SQ_OK;
}

/* The dense form: each linear's weight must be a [rows, cols] float matrix. */
static sq_status read_dense(sq_layer_results *results, int layer, const sq_st_file *file, const sq_model_config *cfg)
{
    results->form = SQ_LAYER_DENSE;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int rows, cols;
        sq_linear_shape(cfg, (sq_linear_id)i, &cols, &rows);
        artifact_names n = names_for(layer, i);
        const sq_st_tensor *t = sq_st_find(&file->header, n.weight);
        if (!t)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s is missing", file->path, n.weight);
        if (!sq_dtype_is_float(t->dtype) || t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s must be a float [%d, %d] matrix, it is %s with %d dims",
                           file->path, n.weight, rows, cols, sq_dtype_name(t->dtype), t->ndim);
        SQ_TRY(dense_alloc(&results->dense[i], rows, cols, t->dtype));
        SQ_TRY(read_exact(file, n.weight, t->dtype, (size_t)rows * cols, results->dense[i].data));
    }
    return SQ_OK;
}

/* An awq artifact's folded tensors, sized by the config (v bias where it announces one). */
static sq_status read_folded(sq_folded_tensors *f, int layer, const sq_st_file *file, const sq_model_config *cfg)
{
    int v_in, v_out;
    sq_linear_shape(cfg, SQ_LINEAR_V, &v_in, &v_out);
    SQ_TRY(folded_alloc(f, cfg->hidden_size, cfg->attention_bias ? v_out : 0));
    folded_slot slots[3];
    int n = folded_slots(f, slots);
    for (int k = 0; k < n; k++) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s", layer, slots[k].name);
        SQ_TRY(read_exact(file, name, SQ_DTYPE_F32, (size_t)slots[k].n, *slots[k].data));
    }
    return SQ_OK;
}

/* Each linear's width from the metadata's "linear_bits" ("4,4,4,8,3,3,2"), or `bits` for all
 * when it is absent (artifacts written before mixed precision). */
static sq_status linear_widths(const char *list, int bits, const char *path, int widths[SQ_LINEAR_COUNT])
{
    bool listed = list && strlen(list) == 2 * SQ_LINEAR_COUNT - 1;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int b = !list ? bits : listed && (i == 0 || list[2 * i - 1] == ',') ? list[2 * i] - '0' : 0;
        if (b != 2 && b != 3 && b != 4 && b != 8)
            return sq_fail(SQ_ERR_FORMAT, "%s: metadata linear_bits \"%s\" must list %d widths from 2,3,4,8", path,
                           list ? list : "", SQ_LINEAR_COUNT);
        widths[i] = b;
    }
    return SQ_OK;
}

sq_status sq_layer_results_read(sq_layer_results *results, int layer, const char *path, const sq_model_config *cfg)
{
    memset(results, 0, sizeof *results);
    sq_st_file file;
    SQ_TRY(sq_st_open(&file, path));
    sq_status st = SQ_OK;
    json_t *meta = file.header.metadata;
    const char *form = json_string_value(json_object_get(meta, "form"));
    if (form) {
        st = strcmp(form, "dense") == 0 ? read_dense(results, layer, &file, cfg)
                                        : sq_fail(SQ_ERR_FORMAT, "%s: metadata form \"%s\" is not \"dense\"", path, form);
        goto done;
    }
    const char *bits_s = json_string_value(json_object_get(meta, "bits"));
    const char *group_s = json_string_value(json_object_get(meta, "group_size"));
    const char *sym_s = json_string_value(json_object_get(meta, "sym"));
    if (!bits_s || !group_s || !sym_s) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: metadata must give bits, group_size and sym", path);
        goto done;
    }
    int bits = atoi(bits_s), group_size = atoi(group_s);
    if ((bits != 2 && bits != 3 && bits != 4 && bits != 8) || (group_size != -1 && group_size <= 0)) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: metadata bits \"%s\" / group_size \"%s\" are not a quantization setting", path,
                     bits_s, group_s);
        goto done;
    }
    int widths[SQ_LINEAR_COUNT];
    SQ_TRY_GOTO(st, linear_widths(json_string_value(json_object_get(meta, "linear_bits")), bits, path, widths), done);
    for (int i = 0; i < SQ_LINEAR_COUNT && st == SQ_OK; i++) {
        int rows, cols, bits = widths[i];
        sq_linear_shape(cfg, (sq_linear_id)i, &cols, &rows);
        sq_quant_result *res = &results->linear[i];
        SQ_TRY_GOTO(st, sq_quant_result_alloc(res, rows, cols, bits, group_size, !strcmp(sym_s, "true")), done);
        artifact_names n = names_for(layer, i);
        SQ_TRY_GOTO(st, read_exact(&file, n.codes, SQ_DTYPE_U8, cells(res), res->codes), done);
        SQ_TRY_GOTO(st, read_exact(&file, n.scales, SQ_DTYPE_F32, group_cells(res), res->scales), done);
        SQ_TRY_GOTO(st, read_exact(&file, n.zeros, SQ_DTYPE_F32, group_cells(res), res->zeros), done);
        SQ_TRY_GOTO(st, read_exact(&file, n.g_idx, SQ_DTYPE_I32, (size_t)cols, res->g_idx), done);
        for (int c = 0; c < cols; c++) {
            if (res->g_idx[c] < 0 || res->g_idx[c] >= res->ngroups) {
                st = sq_fail(SQ_ERR_FORMAT, "%s: %s[%d] = %d is not a group index (0..%d)", path, n.g_idx, c,
                             res->g_idx[c], res->ngroups - 1);
                goto done;
            }
        }
        int maxq = (1 << bits) - 1, largest = 0;
        size_t count = cells(res);
#pragma omp parallel for reduction(max : largest) schedule(static)
        for (size_t k = 0; k < count; k++)
            largest = res->codes[k] > largest ? res->codes[k] : largest;
        if (largest > maxq) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: %s holds code %d above %d", path, n.codes, largest, maxq);
            goto done;
        }
    }
    if (st == SQ_OK && json_object_get(meta, "folded"))
        st = read_folded(&results->folded, layer, &file, cfg);
    if (st == SQ_OK)
        st = read_norms(results, layer, &file, cfg);
done:
    sq_st_close(&file);
    if (st != SQ_OK)
        sq_layer_results_free(results);
    return st;
}
