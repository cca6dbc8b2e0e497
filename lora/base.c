/* base.c: the frozen base of LoRA training (base.h). */
#include "lora/base.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/device_tensor.h"
#include "model/gptq_reader.h"

sq_status sq_lora_base_kind_parse(const char *name, sq_lora_base_kind *kind)
{
    if (!strcmp(name, "nf4"))
        *kind = SQ_LORA_BASE_NF4;
    else if (!strcmp(name, "gptq"))
        *kind = SQ_LORA_BASE_GPTQ;
    else if (!strcmp(name, "none"))
        *kind = SQ_LORA_BASE_AS_STORED;
    else
        return sq_fail(SQ_ERR_ARG, "base quantization \"%s\" is not one of nf4, gptq, none", name);
    return SQ_OK;
}

static void linear_name(char *out, size_t size, int layer, sq_linear_id id)
{
    snprintf(out, size, "model.layers.%d.%s", layer, sq_linear_name(id));
}

/* Quantize every linear of the dense checkpoint to NF4 and keep it on the device. */
static sq_status quantize_all(sq_lora_base *b)
{
    const sq_model_config *cfg = &b->model.cfg;
    size_t count = (size_t)cfg->num_layers * SQ_LINEAR_COUNT, largest = 0;
    b->nf4 = calloc(count, sizeof *b->nf4);
    if (!b->nf4)
        return sq_fail(SQ_ERR_NOMEM, "nf4 base: cannot allocate the linear table");
    for (int l = 0; l < cfg->num_layers; l++) {
        for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
            const sq_linear *lin = &b->model.layer.linear[id];
            size_t n = (size_t)lin->in_features * lin->out_features;
            char name[160], tensor[176];
            linear_name(name, sizeof name, l, (sq_linear_id)id);
            snprintf(tensor, sizeof tensor, "%s.weight", name);
            float *W = malloc(n * sizeof *W);
            if (!W)
                return sq_fail(SQ_ERR_NOMEM, "nf4 base: cannot read %s", tensor);
            sq_nf4_tensor q;
            sq_status st = sq_checkpoint_read_f32(b->model.ckpt, tensor, W, n);
            if (st == SQ_OK)
                st = sq_nf4_quantize(W, n, tensor, &q);
            free(W);
            SQ_TRY(st);
            sq_lora_nf4_linear *d = &b->nf4[l * SQ_LINEAR_COUNT + id];
            size_t blocks = n / SQ_NF4_BLOCK, blocks2 = (blocks + SQ_NF4_ABSMAX_BLOCK - 1) / SQ_NF4_ABSMAX_BLOCK;
            d->n = n;
            d->offset = q.offset;
            st = kn_alloc((void **)&d->packed, n / 2);
            if (st == SQ_OK)
                st = kn_alloc((void **)&d->qabsmax, blocks);
            if (st == SQ_OK)
                st = kn_alloc((void **)&d->absmax2, blocks2 * sizeof(float));
            if (st == SQ_OK)
                st = kn_upload(d->packed, q.packed, n / 2);
            if (st == SQ_OK)
                st = kn_upload(d->qabsmax, q.qabsmax, blocks);
            if (st == SQ_OK)
                st = kn_upload(d->absmax2, q.absmax2, blocks2 * sizeof(float));
            sq_nf4_free(&q);
            SQ_TRY(st);
            largest = blocks > largest ? blocks : largest;
        }
    }
    float code8[256];
    sq_nf4_code8(code8);
    SQ_TRY(kn_alloc((void **)&b->code8, sizeof code8));
    SQ_TRY(kn_upload(b->code8, code8, sizeof code8));
    return kn_alloc((void **)&b->absmax, largest * sizeof(float));
}

/* Read every GPTQ-packed linear once and keep its codes, scales, zeros and g_idx on the device. */
static sq_status upload_gptq(sq_lora_gptq_linear *d, const sq_gptq_codes *c)
{
    size_t cells = (size_t)c->out * c->ngroups * sizeof(float);
    d->ngroups = c->ngroups;
    SQ_TRY(kn_alloc((void **)&d->codes, (size_t)c->out * c->in));
    SQ_TRY(kn_alloc((void **)&d->scale, cells));
    SQ_TRY(kn_alloc((void **)&d->zero, cells));
    SQ_TRY(kn_alloc((void **)&d->g_idx, (size_t)c->in * sizeof(int32_t)));
    SQ_TRY(kn_upload(d->codes, c->codes, (size_t)c->out * c->in));
    SQ_TRY(kn_upload(d->scale, c->scale, cells));
    SQ_TRY(kn_upload(d->zero, c->zero, cells));
    return kn_upload(d->g_idx, c->g_idx, (size_t)c->in * sizeof(int32_t));
}

static sq_status read_all_gptq(sq_lora_base *b)
{
    const sq_model_config *cfg = &b->model.cfg;
    b->gptq = calloc((size_t)cfg->num_layers * SQ_LINEAR_COUNT, sizeof *b->gptq);
    if (!b->gptq)
        return sq_fail(SQ_ERR_NOMEM, "gptq base: cannot allocate the linear table");
    for (int l = 0; l < cfg->num_layers; l++) {
        for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
            const sq_linear *lin = &b->model.layer.linear[id];
            char name[160];
            linear_name(name, sizeof name, l, (sq_linear_id)id);
            if (!sq_gptq_has_linear(b->model.ckpt, name))
                continue; /* stored dense: read at each load, as model/layer.c does */
            sq_gptq_codes c;
            SQ_TRY(sq_gptq_read_linear_codes(b->model.ckpt, name, &c));
            sq_status st = c.out == lin->out_features && c.in == lin->in_features
                               ? upload_gptq(&b->gptq[l * SQ_LINEAR_COUNT + id], &c)
                               : sq_fail(SQ_ERR_MISMATCH, "%s: '%s' is [%d, %d], the config implies [%d, %d]",
                                         sq_checkpoint_dir(b->model.ckpt), name, c.out, c.in, lin->out_features,
                                         lin->in_features);
            sq_gptq_codes_free(&c);
            SQ_TRY(st);
        }
    }
    return SQ_OK;
}

/* Refuse a base that is not what `kind` needs, naming the checkpoint. */
static sq_status check_kind(const sq_checkpoint *ckpt, sq_lora_base_kind kind)
{
    bool gptq = sq_checkpoint_is_gptq(ckpt);
    if (kind == SQ_LORA_BASE_GPTQ && !gptq)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: base_quant \"gptq\" needs a GPTQ checkpoint (config.json with a GPTQ "
                       "quantization_config); this one is dense (use \"nf4\")", sq_checkpoint_dir(ckpt));
    if (kind == SQ_LORA_BASE_NF4 && gptq)
        return sq_fail(SQ_ERR_UNSUPPORTED, "%s: base_quant \"nf4\" needs dense weights; this checkpoint is "
                       "GPTQ-quantized (use \"gptq\")", sq_checkpoint_dir(ckpt));
    return SQ_OK;
}

sq_status sq_lora_base_open(sq_lora_base *b, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                            sq_lora_base_kind kind)
{
    memset(b, 0, sizeof *b);
    SQ_TRY(check_kind(ckpt, kind));
    b->kind = kind;
    SQ_TRY(sq_model_open(&b->model, cfg, ckpt));
    sq_status st = kind == SQ_LORA_BASE_NF4 ? quantize_all(b) : kind == SQ_LORA_BASE_GPTQ ? read_all_gptq(b) : SQ_OK;
    if (st != SQ_OK)
        sq_lora_base_close(b);
    return st;
}

void sq_lora_base_close(sq_lora_base *b)
{
    if (b->nf4) {
        for (int i = 0; i < b->model.cfg.num_layers * SQ_LINEAR_COUNT; i++) {
            kn_free(b->nf4[i].packed);
            kn_free(b->nf4[i].qabsmax);
            kn_free(b->nf4[i].absmax2);
        }
        free(b->nf4);
    }
    if (b->gptq) {
        for (int i = 0; i < b->model.cfg.num_layers * SQ_LINEAR_COUNT; i++) {
            kn_free(b->gptq[i].codes);
            kn_free(b->gptq[i].scale);
            kn_free(b->gptq[i].zero);
            kn_free(b->gptq[i].g_idx);
        }
        free(b->gptq);
    }
    kn_free(b->code8);
    kn_free(b->absmax);
    sq_model_close(&b->model);
    memset(b, 0, sizeof *b);
}

/* One linear of the layer into its compute buffer, from the form the base keeps. */
static sq_status load_linear(sq_lora_base *b, int layer, sq_linear_id id, sq_linear *lin)
{
    size_t at = (size_t)layer * SQ_LINEAR_COUNT + id;
    if (b->kind == SQ_LORA_BASE_NF4) {
        const sq_lora_nf4_linear *d = &b->nf4[at];
        SQ_TRY(kn_dequantize_blockwise8(b->absmax, d->qabsmax, b->code8, d->absmax2, d->offset,
                                        d->n / SQ_NF4_BLOCK));
        return kn_dequantize_nf4(lin->weight, d->packed, b->absmax, d->n);
    }
    const sq_lora_gptq_linear *g = &b->gptq[at];
    if (g->codes)
        return kn_dequantize(lin->weight, g->codes, g->scale, g->zero, g->ngroups, g->g_idx, lin->out_features,
                             lin->in_features);
    char name[176];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, sq_linear_name(id));
    return sq_upload_checkpoint_tensor(lin->weight, b->model.ckpt, name, 2, lin->out_features, lin->in_features);
}

sq_status sq_lora_base_load_layer(sq_lora_base *b, int layer)
{
    sq_layer_weights *w = &b->model.layer;
    const sq_model_config *cfg = &b->model.cfg;
    if (b->kind == SQ_LORA_BASE_AS_STORED)
        return sq_layer_weights_load(w, cfg, b->model.ckpt, layer);
    if (layer < 0 || layer >= cfg->num_layers)
        return sq_fail(SQ_ERR_ARG, "layer %d does not exist (the model has %d)", layer, cfg->num_layers);
    /* the linears from their resident form, the norms and biases as stored */
    char name[176];
    w->index = -1;
    for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
        SQ_TRY(load_linear(b, layer, (sq_linear_id)id, &w->linear[id]));
        if (w->linear[id].bias) {
            snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, sq_linear_name((sq_linear_id)id));
            SQ_TRY(sq_upload_checkpoint_tensor(w->linear[id].bias, b->model.ckpt, name, 1,
                                               w->linear[id].out_features, 0));
        }
    }
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    SQ_TRY(sq_upload_checkpoint_tensor(w->input_norm, b->model.ckpt, name, 1, cfg->hidden_size, 0));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    SQ_TRY(sq_upload_checkpoint_tensor(w->post_attention_norm, b->model.ckpt, name, 1, cfg->hidden_size, 0));
    w->index = layer;
    return SQ_OK;
}

sq_status sq_lora_base_read_linear(sq_lora_base *b, int layer, sq_linear_id id, float *W)
{
    SQ_TRY(sq_lora_base_load_layer(b, layer));
    const sq_linear *lin = &b->model.layer.linear[id];
    return kn_download(W, lin->weight, (size_t)lin->in_features * lin->out_features * sizeof(float));
}
