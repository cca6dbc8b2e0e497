/* adapter_merge.c: base + s·B·A as a dense checkpoint beside the adapter (adapter_merge.h). */
#include "coordinator/adapter_merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/assemble_dense.h"
#include "kernels/kernels.h"
#include "lora/adapter.h"
#include "lora/base.h"
#include "lora/peft_import.h"
#include "store/manifest.h"

typedef struct {
    sq_lora_base *base;
    const sq_lora_adapter *adapter;
    const sq_checkpoint *ckpt;
} merge_ctx;

/* "model.layers.N.<self_attn|mlp>.<name>" -> layer and linear id; false when it is not one. */
static bool parse_linear(const char *linear, int *layer, sq_linear_id *id)
{
    if (sscanf(linear, "model.layers.%d.", layer) != 1)
        return false;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        char expect[160];
        snprintf(expect, sizeof expect, "model.layers.%d.%s", *layer, sq_linear_name((sq_linear_id)i));
        if (!strcmp(expect, linear)) {
            *id = (sq_linear_id)i;
            return true;
        }
    }
    return false;
}

static sq_status merged_linear(void *p, const char *linear, sq_linear_tensors *tensors)
{
    merge_ctx *ctx = p;
    int layer;
    sq_linear_id id;
    if (!parse_linear(linear, &layer, &id))
        return sq_fail(SQ_ERR_ARG, "merge: %s is not a decoder linear", linear);
    char name[176];
    snprintf(name, sizeof name, "%s.weight", linear);
    const sq_st_tensor *t = sq_checkpoint_find(ctx->ckpt, name);
    if (!t)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor %s to merge into", sq_checkpoint_dir(ctx->ckpt), name);
    SQ_TRY(sq_lora_base_load_layer(ctx->base, layer)); /* the buffers are overwritten below: reload every time */
    const sq_linear *lin = &ctx->base->model.layer.linear[id];
    const sq_lora_module *m = sq_lora_find(ctx->adapter, layer, id);
    if (m) { /* W[out, in] += s B[out, r] A[r, in] */
        const sq_lora_adapter *a = ctx->adapter;
        SQ_TRY(kn_gemm(false, false, m->out_features, m->in_features, a->r, a->scale, a->params + m->b_offset, a->r,
                       a->params + m->a_offset, m->in_features, 1.0f, lin->weight, m->in_features));
    }
    sq_dense_weights dense;
    SQ_TRY(sq_dense_weights_from_device(&dense, lin->weight, lin->out_features, lin->in_features, t->dtype));
    sq_linear_tensors_take_dense(tensors, &dense);
    return SQ_OK;
}

static sq_status write_merged(const char *adapter_dir, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                              const char *out_dir)
{
    sq_lora_adapter adapter = {0};
    sq_lora_base base = {0};
    char *base_quant = NULL;
    SQ_TRY(sq_peft_import(adapter_dir, cfg, &adapter, &base_quant));
    sq_status st = SQ_OK;
    if (!strcmp(base_quant, "gptq"))
        st = sq_fail(SQ_ERR_UNSUPPORTED, "merge: a GPTQ base has no dense linears to merge into (train on nf4, or "
                     "load the adapter on the GPTQ model with peft)");
    if (st == SQ_OK)
        st = sq_lora_base_open(&base, cfg, ckpt, strcmp(base_quant, "nf4") ? SQ_LORA_BASE_AS_STORED : SQ_LORA_BASE_NF4);
    const int count = cfg->num_layers * SQ_LINEAR_COUNT;
    char (*names)[160] = calloc((size_t)count, 160);
    const char **list = calloc((size_t)count, sizeof *list);
    if (st == SQ_OK && (!names || !list))
        st = sq_fail(SQ_ERR_NOMEM, "merge: out of memory");
    for (int i = 0; st == SQ_OK && i < count; i++) {
        snprintf(names[i], 160, "model.layers.%d.%s", i / SQ_LINEAR_COUNT,
                 sq_linear_name((sq_linear_id)(i % SQ_LINEAR_COUNT)));
        list[i] = names[i];
    }
    merge_ctx ctx = {.base = &base, .adapter = &adapter, .ckpt = ckpt};
    sq_dense_checkpoint_request rq = {.source = ckpt, .linears = list, .n_linears = count,
                                      .get_linear = merged_linear, .ctx = &ctx};
    if (st == SQ_OK)
        st = sq_dense_checkpoint_write(&rq, out_dir);
    free(names), free(list), free(base_quant);
    sq_lora_base_close(&base);
    sq_lora_adapter_free(&adapter);
    return st;
}

/* The adapter's manifest again, over its own files and merged/'s, with the same metadata. */
static sq_status relist_manifest(const char *adapter_dir)
{
    json_t *old = NULL, *merged = NULL, *manifest = NULL;
    char merged_dir[4096];
    snprintf(merged_dir, sizeof merged_dir, "%s/merged", adapter_dir);
    SQ_TRY(sq_manifest_load(adapter_dir, &old));
    sq_status st = sq_manifest_load(merged_dir, &merged);
    json_t *own = json_object_get(old, "files"), *theirs = json_object_get(merged, "files");
    size_t n = json_object_size(own) + json_object_size(theirs) + 1, k = 0;
    char **files = calloc(n, sizeof *files);
    if (st == SQ_OK && !files)
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    const char *name;
    json_t *entry;
    json_object_foreach(own, name, entry) {
        if (st == SQ_OK && !(files[k++] = strdup(name)))
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    }
    json_object_foreach(theirs, name, entry) {
        if (st == SQ_OK && asprintf(&files[k++], "merged/%s", name) < 0)
            files[--k] = NULL, st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    }
    if (st == SQ_OK && asprintf(&files[k++], "merged/%s", SQ_MANIFEST_FILE) < 0)
        files[--k] = NULL, st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = sq_manifest_describe(adapter_dir, files, (int)k, NULL, &manifest);
    json_object_del(old, "files");
    json_object_del(old, "format");
    if (st == SQ_OK)
        st = sq_manifest_set_meta(manifest, old, adapter_dir);
    if (st == SQ_OK)
        st = sq_manifest_write(adapter_dir, manifest);
    for (size_t i = 0; files && i < k; i++)
        free(files[i]);
    free(files);
    json_decref(old), json_decref(merged), json_decref(manifest);
    return st;
}

sq_status sq_adapter_merge_write(const char *adapter_dir, const sq_model_config *cfg, const sq_checkpoint *ckpt)
{
    char out_dir[4096];
    snprintf(out_dir, sizeof out_dir, "%s/merged", adapter_dir);
    SQ_TRY(write_merged(adapter_dir, cfg, ckpt, out_dir));
    return relist_manifest(adapter_dir);
}
