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
    sq_status st = kind == SQ_LORA_BASE_NF4 ? quantize_all(b) : SQ_OK;
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
    kn_free(b->code8);
    kn_free(b->absmax);
    sq_model_close(&b->model);
    memset(b, 0, sizeof *b);
}

static sq_status dequantize_nf4(sq_lora_base *b, int layer, sq_linear_id id, float *W)
{
    const sq_lora_nf4_linear *d = &b->nf4[layer * SQ_LINEAR_COUNT + id];
    SQ_TRY(kn_dequantize_blockwise8(b->absmax, d->qabsmax, b->code8, d->absmax2, d->offset, d->n / SQ_NF4_BLOCK));
    return kn_dequantize_nf4(W, d->packed, b->absmax, d->n);
}

sq_status sq_lora_base_load_layer(sq_lora_base *b, int layer)
{
    sq_layer_weights *w = &b->model.layer;
    const sq_model_config *cfg = &b->model.cfg;
    if (b->kind != SQ_LORA_BASE_NF4)
        return sq_layer_weights_load(w, cfg, b->model.ckpt, layer);
    /* NF4: the linears from their 4-bit form, the norms and biases as stored */
    char name[176];
    w->index = -1;
    for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
        SQ_TRY(dequantize_nf4(b, layer, (sq_linear_id)id, w->linear[id].weight));
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
