/* peft_export.c: the adapter in peft's format (peft_export.h). */
#include "lora/peft_export.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "store/manifest.h"

/* A float parameter as the decimal a user wrote (0.05, not 0.05000000074505806). */
static double shortest(float x)
{
    char text[32];
    snprintf(text, sizeof text, "%.7g", (double)x);
    return strtod(text, NULL);
}

static sq_status write_config(const sq_lora_adapter *a, char *const *targets, int n_targets, const char *base_model,
                              const char *dir)
{
    json_t *modules = json_array();
    for (int i = 0; i < n_targets; i++)
        json_array_append_new(modules, json_string(targets[i]));
    json_t *cfg = json_pack("{s:s, s:s, s:i, s:f, s:f, s:o, s:s, s:s, s:b, s:b, s:b, s:n}", "peft_type", "LORA",
                            "task_type", "CAUSAL_LM", "r", a->r, "lora_alpha", shortest(a->alpha), "lora_dropout",
                            shortest(a->dropout), "target_modules", modules, "bias", "none",
                            "base_model_name_or_path", base_model, "fan_in_fan_out", 0, "inference_mode", 1,
                            "use_rslora", 0, "modules_to_save");
    char *text = cfg ? json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    sq_status st = text ? sq_write_file_atomic(path, text, strlen(text))
                        : sq_fail(SQ_ERR_NOMEM, "%s: cannot serialise the adapter config", path);
    free(text);
    json_decref(cfg);
    return st;
}

static sq_status write_weights(const sq_lora_adapter *a, const char *dir)
{
    float *p = malloc(a->n_params * sizeof *p);
    sq_st_entry *e = calloc((size_t)a->n_modules * 2, sizeof *e);
    char (*names)[160] = calloc((size_t)a->n_modules * 2, 160);
    if (!p || !e || !names) {
        free(p), free(e), free(names);
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot stage the adapter weights", dir);
    }
    sq_status st = kn_download(p, a->params, a->n_params * sizeof *p);
    for (int i = 0; i < a->n_modules; i++) {
        const sq_lora_module *m = &a->modules[i];
        for (int k = 0; k < 2; k++) {
            int at = 2 * i + k;
            snprintf(names[at], 160, "base_model.model.model.layers.%d.%s.lora_%c.weight", m->layer,
                     sq_linear_name(m->id), k ? 'B' : 'A');
            e[at] = (sq_st_entry){.name = names[at], .dtype = SQ_DTYPE_F32, .ndim = 2,
                                  .shape = {k ? m->out_features : a->r, k ? a->r : m->in_features},
                                  .data = p + (k ? m->b_offset : m->a_offset)};
        }
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (st == SQ_OK)
        st = sq_st_write(path, e, a->n_modules * 2, NULL);
    free(p), free(e), free(names);
    return st;
}

sq_status sq_peft_export(const sq_lora_adapter *a, char *const *target_names, int n_targets, const char *base_model,
                         const char *base_quant, json_t *metrics, const char *dir)
{
    SQ_TRY(sq_make_dirs(dir));
    SQ_TRY(write_config(a, target_names, n_targets, base_model, dir));
    SQ_TRY(write_weights(a, dir));
    char *files[] = {"adapter_config.json", "adapter_model.safetensors"};
    json_t *manifest = NULL;
    SQ_TRY(sq_manifest_describe(dir, files, 2, NULL, &manifest));
    json_t *meta = json_pack("{s:s, s:s, s:{s:s}, s:O}", "method", "qlora", "source_model", base_model,
                             "quantization", "base_quant", base_quant, "metrics", metrics);
    sq_status st = meta ? sq_manifest_set_meta(manifest, meta, dir) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = sq_manifest_write(dir, manifest);
    json_decref(meta);
    json_decref(manifest);
    return st;
}
