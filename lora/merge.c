/* merge.c: base + s·B·A as a dense checkpoint (merge.h). */
#include "lora/merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/assemble_dense.h"
#include "kernels/kernels.h"

typedef struct {
    sq_lora_base *base;
    const sq_lora_adapter *adapter;
    const sq_checkpoint *ckpt;
} merge_ctx;

static sq_status merged_linear(void *p, const char *linear, sq_dense_weights *dense)
{
    merge_ctx *ctx = p;
    int layer = -1, id = -1;
    for (int i = 0; i < SQ_LINEAR_COUNT && id < 0; i++) {
        char expect[160];
        int l;
        if (sscanf(linear, "model.layers.%d.", &l) != 1)
            break;
        snprintf(expect, sizeof expect, "model.layers.%d.%s", l, sq_linear_name((sq_linear_id)i));
        if (!strcmp(expect, linear))
            layer = l, id = i;
    }
    if (id < 0)
        return sq_fail(SQ_ERR_ARG, "merge: %s is not a decoder linear", linear);
    char name[176];
    snprintf(name, sizeof name, "%s.weight", linear);
    const sq_st_tensor *t = sq_checkpoint_find(ctx->ckpt, name);
    if (!t)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor %s to merge into", sq_checkpoint_dir(ctx->ckpt), name);
    if (ctx->base->model.layer.index != layer)
        SQ_TRY(sq_lora_base_load_layer(ctx->base, layer));
    const sq_linear *lin = &ctx->base->model.layer.linear[id];
    const sq_lora_module *m = sq_lora_find(ctx->adapter, layer, (sq_linear_id)id);
    if (m) { /* W += s B A: [out, r] [r, in] */
        const sq_lora_adapter *a = ctx->adapter;
        SQ_TRY(kn_gemm(false, false, m->out_features, m->in_features, a->r, a->scale, a->params + m->b_offset, a->r,
                       a->params + m->a_offset, m->in_features, 1.0f, lin->weight, m->in_features));
    }
    SQ_TRY(sq_dense_weights_from_device(dense, lin->weight, lin->out_features, lin->in_features, t->dtype));
    ctx->base->model.layer.index = -1; /* the buffer now holds merged weights: reload before reuse */
    return SQ_OK;
}

sq_status sq_lora_merge(sq_lora_base *b, const sq_lora_adapter *a, const sq_checkpoint *ckpt, const char *out_dir)
{
    if (b->kind == SQ_LORA_BASE_GPTQ)
        return sq_fail(SQ_ERR_UNSUPPORTED, "merge: a GPTQ base has no dense linears to merge into (train on nf4, "
                       "or load the adapter on the GPTQ model with peft)");
    const int layers = b->model.cfg.num_layers, count = layers * SQ_LINEAR_COUNT;
    char (*names)[160] = calloc((size_t)count, 160);
    const char **list = calloc((size_t)count, sizeof *list);
    if (!names || !list) {
        free(names), free(list);
        return sq_fail(SQ_ERR_NOMEM, "merge: out of memory");
    }
    for (int i = 0; i < count; i++) {
        snprintf(names[i], 160, "model.layers.%d.%s", i / SQ_LINEAR_COUNT,
                 sq_linear_name((sq_linear_id)(i % SQ_LINEAR_COUNT)));
        list[i] = names[i];
    }
    merge_ctx ctx = {.base = b, .adapter = a, .ckpt = ckpt};
    sq_dense_checkpoint_request rq = {.source = ckpt, .linears = list, .n_linears = count,
                                      .get_linear = merged_linear, .ctx = &ctx};
    sq_status st = sq_dense_checkpoint_write(&rq, out_dir);
    free(names), free(list);
    return st;
}
