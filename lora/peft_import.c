/* peft_import.c: read a PEFT LoRA adapter (peft_import.h). */
#include "lora/peft_import.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "core/dtype.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "store/manifest.h"

static sq_status read_config(const char *dir, const sq_model_config *cfg, sq_lora_adapter *a)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t err;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!doc)
        return sq_fail(SQ_ERR_FORMAT, "%s:%d: %s", path, err.line, err.text);
    json_t *r = json_object_get(doc, "r"), *alpha = json_object_get(doc, "lora_alpha");
    json_t *targets = json_object_get(doc, "target_modules");
    const char *type = json_string_value(json_object_get(doc, "peft_type"));
    const char *bias = json_string_value(json_object_get(doc, "bias"));
    sq_status st = SQ_OK;
    if (!type || strcmp(type, "LORA"))
        st = sq_fail(SQ_ERR_FORMAT, "%s: peft_type must be \"LORA\"", path);
    else if (!json_is_integer(r) || !json_is_number(alpha))
        st = sq_fail(SQ_ERR_FORMAT, "%s: r must be an integer and lora_alpha a number", path);
    else if (!json_is_array(targets) || json_array_size(targets) == 0 || json_array_size(targets) > SQ_LINEAR_COUNT)
        st = sq_fail(SQ_ERR_FORMAT, "%s: target_modules must be a list of 1 to 7 module names", path);
    else if (bias && strcmp(bias, "none"))
        st = sq_fail(SQ_ERR_UNSUPPORTED, "%s: bias \"%s\" (only \"none\" is supported)", path, bias);
    char *names[SQ_LINEAR_COUNT];
    int n = 0;
    for (size_t i = 0; st == SQ_OK && i < json_array_size(targets); i++) {
        const char *name = json_string_value(json_array_get(targets, i));
        if (!name)
            st = sq_fail(SQ_ERR_FORMAT, "%s: target_modules[%zu] must be a string", path, i);
        else
            names[n++] = (char *)name;
    }
    if (st == SQ_OK)
        st = sq_lora_adapter_create(a, cfg, (int)json_integer_value(r), (float)json_number_value(alpha), 0.0f, names,
                                    n);
    if (st != SQ_OK && sq_last_error()[0] && !strstr(sq_last_error(), path))
        sq_fail_context(st, "%s", path);
    json_decref(doc);
    return st;
}

static sq_status read_weights(const char *dir, sq_lora_adapter *a)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    sq_st_file f;
    SQ_TRY(sq_st_open(&f, path));
    float *host = malloc(a->n_params * sizeof *host);
    sq_status st = host ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; st == SQ_OK && i < a->n_modules; i++) {
        const sq_lora_module *m = &a->modules[i];
        for (int k = 0; st == SQ_OK && k < 2; k++) {
            char name[160];
            snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.lora_%c.weight", m->layer,
                     sq_linear_name(m->id), k ? 'B' : 'A');
            int64_t rows = k ? m->out_features : a->r, cols = k ? a->r : m->in_features;
            const sq_st_tensor *t = NULL;
            for (int j = 0; j < f.header.n_tensors; j++)
                if (!strcmp(f.header.tensors[j].name, name))
                    t = &f.header.tensors[j];
            if (!t)
                st = sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor %s", path, name);
            else if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
                st = sq_fail(SQ_ERR_MISMATCH, "%s: %s must be [%lld, %lld]", path, name, (long long)rows,
                             (long long)cols);
            else
                st = sq_convert_to_f32(host + (k ? m->b_offset : m->a_offset), sq_st_data(&f, t), t->dtype,
                                       (size_t)(rows * cols));
            if (st != SQ_OK && t && !strstr(sq_last_error(), path))
                sq_fail_context(st, "%s: %s", path, name);
        }
    }
    if (st == SQ_OK && f.header.n_tensors != 2 * a->n_modules)
        st = sq_fail(SQ_ERR_MISMATCH, "%s: %d tensors, but adapter_config.json describes %d", path,
                     f.header.n_tensors, 2 * a->n_modules);
    if (st == SQ_OK)
        st = kn_upload(a->params, host, a->n_params * sizeof *host);
    free(host);
    sq_st_close(&f);
    return st;
}

sq_status sq_peft_import(const char *dir, const sq_model_config *cfg, sq_lora_adapter *a, char **base_quant)
{
    *base_quant = NULL;
    SQ_TRY(read_config(dir, cfg, a));
    sq_status st = read_weights(dir, a);
    const char *quant = "none";
    json_t *manifest = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SQ_MANIFEST_FILE);
    if (st == SQ_OK && access(path, F_OK) == 0) {
        st = sq_manifest_load(dir, &manifest);
        const char *q = json_string_value(json_object_get(json_object_get(manifest, "quantization"), "base_quant"));
        quant = q ? q : quant;
    }
    if (st == SQ_OK && !(*base_quant = strdup(quant)))
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    json_decref(manifest);
    if (st != SQ_OK)
        sq_lora_adapter_free(a);
    return st;
}
