/* assemble.c: the output checkpoint of a calibration step, from the layer
 * artifacts in the journal (loaded one layer at a time, as the writer asks for
 * each linear) and the source model's other tensors (see assemble.h). */
#include "coordinator/assemble.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/assemble_dense.h"
#include "core/fileio.h"
#include "model/checkpoint_files.h"
#include "model/layer.h"
#include "quant/gptq_checkpoint.h"
#include "worker/calibrate.h"
#include "worker/layer_results.h"

#define SPARSITY_REPORT "sparsity_report.json"

typedef struct {
    const sq_journal *journal;
    int step;
    const sq_model_config *cfg;
    int cached_layer; /* the layer whose artifact is in `cached`, -1 if none */
    sq_layer_results cached;
} artifact_source;

/* "model.layers.12.mlp.up_proj" -> layer 12, linear SQ_LINEAR_UP. */
static sq_status parse_linear(const char *name, int *layer, int *linear)
{
    int consumed = 0;
    if (sscanf(name, "model.layers.%d.%n", layer, &consumed) != 1 || consumed == 0)
        return sq_fail(SQ_ERR_ARG, "assemble: %s is not a decoder-layer linear", name);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        if (strcmp(name + consumed, sq_linear_name(i)) == 0) {
            *linear = i;
            return SQ_OK;
        }
    }
    return sq_fail(SQ_ERR_ARG, "assemble: %s is not a decoder-layer linear", name);
}

/* Make `layer`'s artifact the cached one. */
static sq_status load_layer(artifact_source *src, int layer)
{
    if (layer == src->cached_layer)
        return SQ_OK;
    sq_layer_results_free(&src->cached);
    src->cached_layer = -1;
    const char *sha256 = NULL;
    const char *artifact = sq_journal_layer_artifact(src->journal, src->step, layer, &sha256);
    if (!artifact)
        return sq_fail(SQ_ERR_NOT_FOUND, "assemble: the journal has no artifact for layer %d of step %d", layer,
                       src->step);
    char *path;
    SQ_TRY(sq_journal_fetch_artifact(src->journal, artifact, sha256, &path));
    sq_status st = sq_layer_results_read(&src->cached, layer, path, src->cfg);
    free(path);
    SQ_TRY(st);
    src->cached_layer = layer;
    return SQ_OK;
}

/* The cached layer's results must have the form the step produces. */
static sq_status load_linear(artifact_source *src, const char *name, sq_layer_form form, int *linear)
{
    int layer = -1;
    SQ_TRY(parse_linear(name, &layer, linear));
    SQ_TRY(load_layer(src, layer));
    if (src->cached.form != form)
        return sq_fail(SQ_ERR_FORMAT, "assemble: the artifact of layer %d of step %d holds %s results, the step "
                       "produces %s ones", layer, src->step, src->cached.form == SQ_LAYER_DENSE ? "dense" : "quantized",
                       form == SQ_LAYER_DENSE ? "dense" : "quantized");
    return SQ_OK;
}

static sq_status packed_linear(void *ctx, const char *name, sq_gptq_packed *packed)
{
    artifact_source *src = ctx;
    int linear = -1;
    SQ_TRY(load_linear(src, name, SQ_LAYER_QUANTIZED, &linear));
    return sq_gptq_pack(&src->cached.linear[linear], name, packed);
}

/* Hands the cached dense weights over to the writer. */
static sq_status dense_linear(void *ctx, const char *name, sq_dense_weights *dense)
{
    artifact_source *src = ctx;
    int linear = -1;
    SQ_TRY(load_linear(src, name, SQ_LAYER_DENSE, &linear));
    if (!src->cached.dense[linear].data) { /* handed over before: read the artifact again */
        src->cached_layer = -1;
        SQ_TRY(load_linear(src, name, SQ_LAYER_DENSE, &linear));
    }
    *dense = src->cached.dense[linear];
    memset(&src->cached.dense[linear], 0, sizeof src->cached.dense[linear]);
    return SQ_OK;
}

/* ---- sparsity ----------------------------------------------------------- */

static bool is_pruning(sq_step_kind kind)
{
    return kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA || kind == SQ_STEP_MAGNITUDE;
}

static json_t *pattern_json(const sq_sparse_options *opt)
{
    if (opt->prune_n == 0)
        return json_null();
    char pattern[32];
    snprintf(pattern, sizeof pattern, "%d:%d", opt->prune_n, opt->prune_m);
    return json_string(pattern);
}

/* Zeros per linear, counted from every layer artifact: {"method", "sparsity" (the
 * target), "pattern", "zeros", "total", "achieved", "layers": [{"layer", "achieved",
 * "linears": {"self_attn.q_proj": {"zeros", "total", "achieved"}, ...}}, ...]}. */
static sq_status sparsity_report(artifact_source *src, const sq_step *step_spec, json_t **report)
{
    json_t *layers = json_array();
    int64_t all_zeros = 0, all_total = 0;
    sq_status st = SQ_OK;
    for (int layer = 0; layer < src->cfg->num_layers && st == SQ_OK; layer++) {
        st = load_layer(src, layer);
        json_t *linears = json_object();
        int64_t layer_zeros = 0, layer_total = 0;
        for (int i = 0; i < SQ_LINEAR_COUNT && st == SQ_OK; i++) {
            int64_t zeros = 0;
            st = sq_layer_result_zeros(&src->cached, i, &zeros);
            const sq_layer_results *r = &src->cached;
            int64_t total = r->form == SQ_LAYER_DENSE ? (int64_t)r->dense[i].rows * r->dense[i].cols
                                                      : (int64_t)r->linear[i].rows * r->linear[i].cols;
            json_object_set_new(linears, sq_linear_name(i),
                                json_pack("{s:I, s:I, s:f}", "zeros", (json_int_t)zeros, "total", (json_int_t)total,
                                          "achieved", total ? (double)zeros / (double)total : 0.0));
            layer_zeros += zeros;
            layer_total += total;
        }
        json_array_append_new(layers, json_pack("{s:i, s:f, s:o}", "layer", layer, "achieved",
                                                layer_total ? (double)layer_zeros / (double)layer_total : 0.0,
                                                "linears", linears));
        all_zeros += layer_zeros;
        all_total += layer_total;
    }
    const sq_sparse_options *opt = &step_spec->sparse;
    *report = json_pack("{s:s, s:f, s:o, s:I, s:I, s:f, s:o}", "method", sq_step_kind_name(step_spec->kind),
                        "sparsity", opt->sparsity, "pattern", pattern_json(opt), "zeros", (json_int_t)all_zeros,
                        "total", (json_int_t)all_total, "achieved",
                        all_total ? (double)all_zeros / (double)all_total : 0.0, "layers", layers);
    if (st != SQ_OK) {
        json_decref(*report);
        *report = NULL;
    }
    return st;
}

/* config.json's {"sparsity_config": {...}}: what was pruned, and how much it achieved. */
static json_t *sparsity_config(const sq_step *step_spec, const json_t *report)
{
    json_t *targets = json_array();
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        json_array_append_new(targets, json_string(sq_linear_name(i)));
    const sq_sparse_options *opt = &step_spec->sparse;
    return json_pack("{s:{s:s, s:f, s:o, s:O, s:o, s:s}}", "sparsity_config", "method",
                     sq_step_kind_name(step_spec->kind), "sparsity", opt->sparsity, "pattern", pattern_json(opt),
                     "global_sparsity", json_object_get(report, "achieved"), "targets", targets, "format", "dense");
}

static sq_status write_sparsity_files(artifact_source *src, const sq_step *step_spec, const char *output_dir,
                                      json_t *step_result, json_t **extra_config)
{
    json_t *report = NULL;
    SQ_TRY(sparsity_report(src, step_spec, &report));
    sq_status st = sq_make_dirs(output_dir);
    if (st == SQ_OK)
        st = sq_checkpoint_write_json(output_dir, SPARSITY_REPORT, report);
    if (st == SQ_OK) {
        *extra_config = sparsity_config(step_spec, report);
        json_object_set(step_result, "sparsity", json_object_get(report, "achieved"));
        json_object_set_new(step_result, "sparsity_report", json_string(SPARSITY_REPORT));
    }
    json_decref(report);
    return st;
}

/* ---- entry -------------------------------------------------------------- */

sq_status sq_assemble_checkpoint(const sq_journal *journal, int step, const sq_step *step_spec,
                                 const sq_model_config *cfg, const sq_checkpoint *source, const char *output_dir,
                                 json_t *step_result)
{
    int n = cfg->num_layers * SQ_LINEAR_COUNT;
    char **names = calloc((size_t)n, sizeof *names);
    if (!names)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = SQ_OK;
    for (int layer = 0; layer < cfg->num_layers && st == SQ_OK; layer++) {
        for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
            char buf[160];
            snprintf(buf, sizeof buf, "model.layers.%d.%s", layer, sq_linear_name(i));
            names[layer * SQ_LINEAR_COUNT + i] = strdup(buf);
            if (!names[layer * SQ_LINEAR_COUNT + i])
                st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        }
    }
    artifact_source src = {.journal = journal, .step = step, .cfg = cfg, .cached_layer = -1};
    bool pruning = is_pruning(step_spec->kind);
    json_t *extra_config = NULL;
    const char *const extra_files[] = {SPARSITY_REPORT};
    if (st == SQ_OK && pruning)
        st = write_sparsity_files(&src, step_spec, output_dir, step_result, &extra_config);
    sq_quant_options joint = sq_sparse_joint_quant_options(&step_spec->sparse);
    if (st == SQ_OK && pruning && step_spec->sparse.bits == 0) {
        sq_dense_checkpoint_request req = {.source = source,
                                           .linears = (const char *const *)names,
                                           .n_linears = n,
                                           .get_linear = dense_linear,
                                           .ctx = &src,
                                           .extra_config = extra_config,
                                           .extra_files = extra_files,
                                           .n_extra_files = 1};
        st = sq_dense_checkpoint_write(&req, output_dir);
    } else if (st == SQ_OK) {
        sq_gptq_checkpoint_request req = {.source = source,
                                          .linears = (const char *const *)names,
                                          .n_linears = n,
                                          .get_linear = packed_linear,
                                          .ctx = &src,
                                          .options = pruning ? &joint : &step_spec->quant,
                                          .extra_config = extra_config,
                                          .extra_files = pruning ? extra_files : NULL,
                                          .n_extra_files = pruning ? 1 : 0};
        st = sq_gptq_checkpoint_write(&req, output_dir);
    }
    json_decref(extra_config);
    sq_layer_results_free(&src.cached);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}
