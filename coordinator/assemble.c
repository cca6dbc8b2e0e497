/* assemble.c: the output checkpoint of a calibration step, from the layer
 * artifacts in the journal (loaded one layer at a time, as the writer asks for
 * each linear) and the source model's other tensors (see assemble.h). */
#include "coordinator/assemble.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/assemble_awq.h"
#include "coordinator/assemble_dense.h"
#include "coordinator/assemble_formats.h"
#include "core/fileio.h"
#include "model/checkpoint_files.h"
#include "model/layer.h"
#include "quant/gptq_checkpoint.h"
#include "worker/calibrate.h"
#include "worker/layer_results.h"

#define SPARSITY_REPORT "sparsity_report.json"

typedef struct {
    const sq_journal *journal;
    const sq_checkpoint *source; /* the step's input model (dtypes of the dense outputs) */
    int step;
    const sq_model_config *cfg;
    int cached_layer; /* the layer whose artifact is in `cached`, -1 if none */
    sq_layer_results cached;
    sq_packed_layers *packed; /* linears packed during calibration, or NULL */
} artifact_source;

/* "model.layers.12.mlp.up_proj" -> layer 12, linear SQ_LINEAR_UP. */
static sq_status parse_linear(const char *name, int *layer, int *linear)
{
    const char *rest = sq_checkpoint_layer_part(name, layer);
    if (!rest)
        return sq_fail(SQ_ERR_ARG, "assemble: %s is not a decoder-layer linear", name);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        if (strcmp(rest, sq_linear_name(i)) == 0) {
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
    int layer = -1, linear = -1;
    SQ_TRY(parse_linear(name, &layer, &linear));
    bool taken = false; /* waits for the layer while calibration still runs (streamed assembly) */
    SQ_TRY(sq_packed_layers_wait_take(src->packed, layer, linear, packed, &taken));
    if (taken)
        return SQ_OK;
    SQ_TRY(load_linear(src, name, SQ_LAYER_QUANTIZED, &linear));
    return sq_gptq_pack(&src->cached.linear[linear], name, packed);
}

/* Hands the cached dense weights over to the writer. */
static sq_status dense_linear(void *ctx, const char *name, sq_linear_tensors *tensors)
{
    artifact_source *src = ctx;
    int linear = -1;
    SQ_TRY(load_linear(src, name, SQ_LAYER_DENSE, &linear));
    if (!src->cached.dense[linear].data) { /* handed over before: read the artifact again */
        src->cached_layer = -1;
        SQ_TRY(load_linear(src, name, SQ_LAYER_DENSE, &linear));
    }
    sq_linear_tensors_take_dense(tensors, &src->cached.dense[linear]);
    return SQ_OK;
}

/* The dtype of a linear's weight in the source model. */
static sq_status source_dtype(const artifact_source *src, const char *name, sq_dtype *dtype)
{
    char weight[192];
    snprintf(weight, sizeof weight, "%s.weight", name);
    const sq_st_tensor *t = sq_checkpoint_find(src->source, weight);
    if (!t)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor %s", sq_checkpoint_dir(src->source), weight);
    *dtype = t->dtype;
    return SQ_OK;
}

/* A quantized linear as the tensors of another output format, made by `convert`
 * (assemble_formats.h) from the result and the source weight's dtype. */
typedef sq_status (*format_converter)(const sq_quant_result *res, const char *name, sq_dtype dtype,
                                      sq_linear_tensors *tensors);

/* "model.layers.3.input_layernorm" -> layer 3, SQ_NORM_INPUT; false for any other name. */
static bool parse_norm(const char *name, int *layer, sq_norm_id *norm)
{
    const char *rest = sq_checkpoint_layer_part(name, layer);
    if (!rest)
        return false;
    for (int k = 0; k < SQ_NORM_COUNT; k++)
        if (strcmp(rest, sq_norm_name((sq_norm_id)k)) == 0) {
            *norm = (sq_norm_id)k;
            return true;
        }
    return false;
}

/* A rescaled norm of a layer's artifact (smoothquant), handed over to the writer. */
static sq_status rescaled_norm(artifact_source *src, int layer, sq_norm_id norm, const char *name,
                               sq_linear_tensors *tensors)
{
    SQ_TRY(load_layer(src, layer));
    if (!src->cached.norm[norm].data) { /* handed over before, or never there */
        src->cached_layer = -1;
        SQ_TRY(load_layer(src, layer));
    }
    sq_dense_weights *d = &src->cached.norm[norm];
    if (!d->data)
        return sq_fail(SQ_ERR_FORMAT, "assemble: the artifact of layer %d of step %d has no rescaled %s", layer,
                       src->step, name);
    *tensors = (sq_linear_tensors){.n = 1};
    tensors->t[0] = (sq_linear_tensor){.suffix = ".weight", .dtype = d->dtype, .ndim = 1, .shape = {d->cols, 0},
                                       .data = d->data};
    memset(d, 0, sizeof *d);
    return SQ_OK;
}

static sq_status converted_linear(artifact_source *src, const char *name, format_converter convert,
                                  sq_linear_tensors *tensors)
{
    int linear = -1, layer = -1;
    sq_norm_id norm;
    if (parse_norm(name, &layer, &norm))
        return rescaled_norm(src, layer, norm, name, tensors);
    sq_dtype dtype = SQ_DTYPE_F32;
    SQ_TRY(load_linear(src, name, SQ_LAYER_QUANTIZED, &linear));
    SQ_TRY(source_dtype(src, name, &dtype));
    return convert(&src->cached.linear[linear], name, dtype, tensors);
}

static sq_status dequantized_linear(void *ctx, const char *name, sq_linear_tensors *tensors)
{
    return converted_linear(ctx, name, sq_dequantized_linear, tensors);
}

static sq_status compressed_linear(void *ctx, const char *name, sq_linear_tensors *tensors)
{
    return converted_linear(ctx, name, sq_compressed_linear, tensors);
}

static sq_status awq_linear(void *ctx, const char *name, sq_linear_tensors *tensors)
{
    artifact_source *src = ctx;
    int linear = -1;
    SQ_TRY(load_linear(src, name, SQ_LAYER_QUANTIZED, &linear));
    return sq_awq_linear(&src->cached.linear[linear], name, tensors);
}

/* An awq step's folded norms and v bias (sq_tensor_override): the layer artifact's values in the
 * source tensor's dtype; every other tensor is kept. */
static sq_status folded_tensor(void *ctx, const sq_st_tensor *t, void **data)
{
    artifact_source *src = ctx;
    int layer = -1, n = 0;
    *data = NULL;
    const char *rest = sq_checkpoint_layer_part(t->name, &layer);
    if (!rest || (strcmp(rest, "input_layernorm.weight") && strcmp(rest, "post_attention_layernorm.weight") &&
                  strcmp(rest, "self_attn.v_proj.bias")))
        return SQ_OK;
    SQ_TRY(load_layer(src, layer));
    const float *values = sq_folded_tensor(&src->cached.folded, rest, &n);
    if (!values || (uint64_t)n != sq_st_numel(t) || !sq_dtype_is_float(t->dtype))
        return sq_fail(SQ_ERR_FORMAT, "assemble: the artifact of layer %d of step %d holds no folded %s of %llu "
                       "values", layer, src->step, rest, (unsigned long long)sq_st_numel(t));
    *data = malloc(t->nbytes ? t->nbytes : 1);
    if (!*data)
        return sq_fail(SQ_ERR_NOMEM, "assemble: cannot hold %s", t->name);
    sq_status st = sq_convert_from_f32(*data, t->dtype, values, (size_t)n);
    if (st != SQ_OK) {
        free(*data);
        *data = NULL;
    }
    return st;
}

static sq_status int_quantized_linear(void *ctx, const char *name, sq_linear_tensors *tensors)
{
    return converted_linear(ctx, name, sq_int_quantized_linear, tensors);
}

/* ---- sparsity ----------------------------------------------------------- */

static bool is_pruning(sq_step_kind kind)
{
    return kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA || kind == SQ_STEP_MAGNITUDE;
}

/* What a step's sparsity files describe. A pruning step: its own method, target and
 * pattern. A quantizing step whose input was pruned: the input's sparsity_config (from
 * its config.json), and the input model itself, whose zeros the report checks. */
typedef struct {
    const char *method;
    double sparsity;
    json_t *pattern;            /* "N:M" or null */
    json_t *input_config;       /* the input's sparsity_config (quantizing step), else NULL */
    const sq_checkpoint *input; /* the input model (quantizing step), else NULL */
} sparsity_origin;

static json_t *pattern_json(const sq_sparse_options *opt)
{
    if (opt->prune_n == 0)
        return json_null();
    char pattern[32];
    snprintf(pattern, sizeof pattern, "%d:%d", opt->prune_n, opt->prune_m);
    return json_string(pattern);
}

/* Zeros of one linear of the cached layer: output entries that are 0 (codes at the zero
 * point), and with origin->input also the input's zeros and how many of them still are. */
typedef struct {
    int64_t zeros, total, input_zeros, input_zeros_kept;
} zero_count;

static sq_status count_zeros(artifact_source *src, int layer, int linear, const sparsity_origin *origin,
                             zero_count *count)
{
    const sq_layer_results *r = &src->cached;
    int rows = r->form == SQ_LAYER_DENSE ? r->dense[linear].rows : r->linear[linear].rows;
    int cols = r->form == SQ_LAYER_DENSE ? r->dense[linear].cols : r->linear[linear].cols;
    size_t n = (size_t)rows * cols;
    uint8_t *is_zero = malloc(n ? n : 1);
    float *input = origin->input ? malloc(n ? n * sizeof(float) : 1) : NULL;
    sq_status st = is_zero && (input || !origin->input)
                       ? sq_layer_result_zero_mask(r, linear, is_zero)
                       : sq_fail(SQ_ERR_NOMEM, "assemble: cannot count the zeros of a %dx%d linear", rows, cols);
    if (st == SQ_OK && input) {
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, sq_linear_name(linear));
        st = sq_checkpoint_read_f32(origin->input, name, input, n);
    }
    *count = (zero_count){.total = (int64_t)n};
    for (size_t k = 0; st == SQ_OK && k < n; k++) {
        count->zeros += is_zero[k];
        if (input && input[k] == 0.0f) {
            count->input_zeros++;
            count->input_zeros_kept += is_zero[k];
        }
    }
    free(is_zero);
    free(input);
    return st;
}

static json_t *count_json(const zero_count *c, bool with_input)
{
    json_t *o = json_pack("{s:I, s:I, s:f}", "zeros", (json_int_t)c->zeros, "total", (json_int_t)c->total,
                          "achieved", c->total ? (double)c->zeros / (double)c->total : 0.0);
    if (with_input) {
        json_object_set_new(o, "input_zeros", json_integer(c->input_zeros));
        json_object_set_new(o, "input_zeros_kept", json_integer(c->input_zeros_kept));
    }
    return o;
}

/* Zeros per linear, counted from every layer artifact: {"method", "sparsity" (the
 * target), "pattern", "zeros", "total", "achieved", "layers": [{"layer", "achieved",
 * "linears": {"self_attn.q_proj": {"zeros", "total", "achieved"}, ...}}, ...]}; after a
 * quantizing step also "input_zeros" and "input_zeros_kept" (overall and per linear). */
static sq_status sparsity_report(artifact_source *src, const sparsity_origin *origin, json_t **report)
{
    bool with_input = origin->input != NULL;
    json_t *layers = json_array();
    zero_count all = {0};
    sq_status st = SQ_OK;
    for (int layer = 0; layer < src->cfg->num_layers && st == SQ_OK; layer++) {
        st = load_layer(src, layer);
        json_t *linears = json_object();
        zero_count sum = {0};
        for (int i = 0; i < SQ_LINEAR_COUNT && st == SQ_OK; i++) {
            zero_count c = {0};
            st = count_zeros(src, layer, i, origin, &c);
            json_object_set_new(linears, sq_linear_name(i), count_json(&c, with_input));
            sum.zeros += c.zeros, sum.total += c.total;
            sum.input_zeros += c.input_zeros, sum.input_zeros_kept += c.input_zeros_kept;
        }
        json_array_append_new(layers, json_pack("{s:i, s:f, s:o}", "layer", layer, "achieved",
                                                sum.total ? (double)sum.zeros / (double)sum.total : 0.0,
                                                "linears", linears));
        all.zeros += sum.zeros, all.total += sum.total;
        all.input_zeros += sum.input_zeros, all.input_zeros_kept += sum.input_zeros_kept;
    }
    *report = json_pack("{s:s, s:f, s:O}", "method", origin->method, "sparsity", origin->sparsity, "pattern",
                        origin->pattern);
    json_t *counts = count_json(&all, with_input);
    json_object_update(*report, counts);
    json_decref(counts);
    json_object_set_new(*report, "layers", layers);
    if (st != SQ_OK) {
        json_decref(*report);
        *report = NULL;
    }
    return st;
}

/* config.json's {"sparsity_config": {...}}: what was pruned, and how much the output
 * achieves; a quantizing step keeps its input's entries and recounts global_sparsity. */
static json_t *sparsity_config(const sparsity_origin *origin, const json_t *report)
{
    json_t *achieved = json_object_get(report, "achieved");
    if (origin->input_config) {
        json_t *config = json_deep_copy(origin->input_config);
        json_object_set(config, "global_sparsity", achieved);
        return json_pack("{s:o}", "sparsity_config", config);
    }
    json_t *targets = json_array();
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        json_array_append_new(targets, json_string(sq_linear_name(i)));
    return json_pack("{s:{s:s, s:f, s:O, s:O, s:o, s:s}}", "sparsity_config", "method", origin->method, "sparsity",
                     origin->sparsity, "pattern", origin->pattern, "global_sparsity", achieved, "targets", targets,
                     "format", "dense");
}

/* A pruning step's journal result also gets "sparsity" (achieved) and "sparsity_report". */
static sq_status write_sparsity_files(artifact_source *src, const sparsity_origin *origin, const char *output_dir,
                                      json_t *step_result, json_t **extra_config)
{
    json_t *report = NULL;
    SQ_TRY(sparsity_report(src, origin, &report));
    sq_status st = sq_make_dirs(output_dir);
    if (st == SQ_OK)
        st = sq_checkpoint_write_json(output_dir, SPARSITY_REPORT, report);
    if (st == SQ_OK) {
        *extra_config = sparsity_config(origin, report);
        if (!origin->input) {
            json_object_set(step_result, "sparsity", json_object_get(report, "achieved"));
            json_object_set_new(step_result, "sparsity_report", json_string(SPARSITY_REPORT));
        }
    }
    json_decref(report);
    return st;
}

/* Whether rtn or gptq carries its input's sparsity: when the input's config.json has a
 * sparsity_config (a pruned model) and the step kept its zeros (rtn always: a zero rounds
 * to the zero point; gptq with preserve_sparsity). `*carried` and origin->input_config
 * then hold it; a gptq that did not keep them gets extra config "sparsity_config": null. */
static sq_status quantized_sparsity(const sq_step *step_spec, const sq_checkpoint *source, sparsity_origin *origin,
                                    json_t **extra_config, bool *carried)
{
    json_t *config = NULL;
    SQ_TRY(sq_checkpoint_load_config_json(sq_checkpoint_local_dir(source), &config));
    json_t *input = json_object_get(config, "sparsity_config");
    sq_status st = SQ_OK;
    *carried = false;
    if (!input || json_is_null(input)) {
        /* a dense input: nothing to carry */
    } else if (!json_is_object(input) || !json_is_string(json_object_get(input, "method")) ||
               !json_is_number(json_object_get(input, "sparsity"))) {
        st = sq_fail(SQ_ERR_FORMAT, "%s/config.json: sparsity_config must be an object with a string \"method\" "
                     "and a number \"sparsity\"", sq_checkpoint_dir(source));
    } else if (step_spec->kind == SQ_STEP_GPTQ && !step_spec->quant.preserve_sparsity) {
        *extra_config = json_pack("{s:n}", "sparsity_config");
    } else {
        origin->input_config = json_incref(input);
        origin->method = json_string_value(json_object_get(input, "method"));
        origin->sparsity = json_number_value(json_object_get(input, "sparsity"));
        json_t *pattern = json_object_get(input, "pattern");
        origin->pattern = json_incref(pattern ? pattern : json_null());
        origin->input = source;
        *carried = true;
    }
    json_decref(config);
    return st;
}

/* ---- entry -------------------------------------------------------------- */

bool sq_assemble_needs_only_packed_layers(const sq_job_spec *spec, int step, const sq_checkpoint *source)
{
    const sq_step *step_spec = &spec->steps[step];
    if (spec->output_format != SQ_OUTPUT_GPTQ || (step_spec->kind != SQ_STEP_GPTQ && step_spec->kind != SQ_STEP_RTN) ||
        step_spec->quant.avg_bits > 0 || !sq_checkpoint_is_mapped(source))
        return false;
    sparsity_origin origin = {0};
    json_t *extra_config = NULL;
    bool carried = false;
    sq_status st = quantized_sparsity(step_spec, source, &origin, &extra_config, &carried);
    json_decref(extra_config);
    json_decref(origin.pattern);
    json_decref(origin.input_config);
    if (st != SQ_OK) { /* the assembly after the loop reports it */
        sq_clear_error();
        return false;
    }
    return !carried;
}

/* config.json's record of the quantization in a "dense" or "compressed-tensors" output
 * (assemble_formats.h), added to *extra_config (which may hold the sparsity_config); with
 * mixed precision (bits not NULL) each linear's width as the format writes overrides. */
static sq_status record_quantization(sq_output_format format, const sq_step *step_spec, const sq_quant_options *opt,
                                     const char *const *names, const int *bits, int n, const sq_checkpoint *source,
                                     json_t **extra_config)
{
    if (!*extra_config)
        *extra_config = json_object();
    if (format == SQ_OUTPUT_AWQ) {
        json_t *config = NULL;
        SQ_TRY(sq_checkpoint_load_config_json(sq_checkpoint_local_dir(source), &config));
        json_t *entries = sq_awq_config_entries(opt, config);
        json_decref(config);
        if (!*extra_config || !entries) {
            json_decref(entries);
            return sq_fail(SQ_ERR_NOMEM, "assemble: out of memory");
        }
        json_object_update(*extra_config, entries);
        json_decref(entries);
        return SQ_OK;
    }
    json_t *sparsity = json_object_get(*extra_config, "sparsity_config");
    json_t *record = NULL;
    if (step_spec->kind == SQ_STEP_SMOOTHQUANT) { /* int-quantized, or what the dense weights came from */
        record = sq_int_quantized_config(opt, step_spec->smooth.act_bits);
        if (record && format == SQ_OUTPUT_DENSE)
            json_object_set_new(record, "smoothquant", json_pack("{s:f}", "alpha", step_spec->smooth.alpha));
    } else {
        record = format == SQ_OUTPUT_DENSE
                     ? sq_gptq_quantization_config(opt)
                     : sq_compressed_quantization_config(opt, json_is_object(sparsity) ? sparsity : NULL);
    }
    if (!*extra_config || !record)
        return sq_fail(SQ_ERR_NOMEM, "assemble: out of memory");
    sq_status st = SQ_OK;
    if (bits && format == SQ_OUTPUT_DENSE)
        json_object_set_new(record, "dynamic", sq_gptq_dynamic(opt, names, bits, n));
    else if (bits)
        st = sq_compressed_groups_by_width(record, names, bits, n);
    json_object_set_new(*extra_config, format == SQ_OUTPUT_DENSE ? "dequantized_from" : "quantization_config",
                        record);
    return st;
}

/* A mixed-precision step's widths, from the report its journal records, and that report
 * written beside the output. */
static sq_status mixed_widths(const sq_journal *journal, int step, const sq_step *step_spec,
                              const sq_model_config *cfg, const char *output_dir, sq_bit_plan *plan)
{
    SQ_TRY(sq_bit_plan_alloc(plan, cfg, &step_spec->quant));
    bool found = false;
    SQ_TRY(sq_read_sensitivity_report(journal, step, plan, &found));
    if (!found)
        return sq_fail(SQ_ERR_NOT_FOUND, "assemble: the journal has no sensitivity report for step %d", step);
    json_t *report = sq_bit_plan_report(plan, &step_spec->quant);
    sq_status st = report ? sq_make_dirs(output_dir) : sq_fail(SQ_ERR_NOMEM, "assemble: out of memory");
    if (st == SQ_OK)
        st = sq_checkpoint_write_json(output_dir, SQ_SENSITIVITY_REPORT, report);
    json_decref(report);
    return st;
}

sq_status sq_assemble_checkpoint(const sq_journal *journal, const sq_job_spec *spec, int step,
                                 const sq_model_config *cfg, const sq_checkpoint *source, const char *output_dir,
                                 sq_packed_layers *packed, json_t *step_result)
{
    const sq_step *step_spec = &spec->steps[step];
    const sq_output_format format = spec->output_format;
    /* the replaced tensors: every linear, and smoothquant's rescaled norms */
    bool smoothing = step_spec->kind == SQ_STEP_SMOOTHQUANT;
    int per_layer = SQ_LINEAR_COUNT + (smoothing ? SQ_NORM_COUNT : 0), n = cfg->num_layers * per_layer;
    char **names = calloc((size_t)n, sizeof *names);
    if (!names)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = SQ_OK;
    for (int layer = 0; layer < cfg->num_layers && st == SQ_OK; layer++) {
        for (int i = 0; i < per_layer; i++) {
            char buf[160];
            snprintf(buf, sizeof buf, "model.layers.%d.%s", layer,
                     i < SQ_LINEAR_COUNT ? sq_linear_name(i) : sq_norm_name((sq_norm_id)(i - SQ_LINEAR_COUNT)));
            names[layer * per_layer + i] = strdup(buf);
            if (!names[layer * per_layer + i])
                st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        }
    }
    artifact_source src = {.journal = journal, .source = source, .step = step, .cfg = cfg, .cached_layer = -1,
                           .packed = packed};
    bool pruning = is_pruning(step_spec->kind), sparse_output = pruning;
    json_t *extra_config = NULL;
    sparsity_origin origin = {0};
    if (pruning)
        origin = (sparsity_origin){.method = sq_step_kind_name(step_spec->kind),
                                   .sparsity = step_spec->sparse.sparsity,
                                   .pattern = pattern_json(&step_spec->sparse)};
    else if (st == SQ_OK)
        st = quantized_sparsity(step_spec, source, &origin, &extra_config, &sparse_output);
    if (st == SQ_OK && sparse_output)
        st = write_sparsity_files(&src, &origin, output_dir, step_result, &extra_config);
    sq_quant_options joint = sq_sparse_joint_quant_options(&step_spec->sparse), mixed = step_spec->quant;
    const sq_quant_options *quant = pruning ? &joint : &step_spec->quant;
    bool dense_form = pruning && step_spec->sparse.bits == 0;
    sq_tensor_override folded = step_spec->kind == SQ_STEP_AWQ ? folded_tensor : NULL;
    sq_bit_plan plan = {0};
    if (st == SQ_OK && !pruning && step_spec->quant.avg_bits > 0) {
        st = mixed_widths(journal, step, step_spec, cfg, output_dir, &plan);
        mixed.bits = sq_bit_plan_base_bits(&plan);
        quant = &mixed;
    }
    const char *extra_files[2];
    int n_extra_files = 0;
    if (sparse_output)
        extra_files[n_extra_files++] = SPARSITY_REPORT;
    if (plan.bits)
        extra_files[n_extra_files++] = SQ_SENSITIVITY_REPORT;
    if (st == SQ_OK && !dense_form && format != SQ_OUTPUT_GPTQ)
        st = record_quantization(format, step_spec, quant, (const char *const *)names, plan.bits, n, source,
                                 &extra_config);
    if (st == SQ_OK && (dense_form || format != SQ_OUTPUT_GPTQ)) {
        sq_dense_checkpoint_request req = {.source = source,
                                           .linears = (const char *const *)names,
                                           .n_linears = n,
                                           .get_linear = dense_form                 ? dense_linear
                                                         : format == SQ_OUTPUT_DENSE ? dequantized_linear
                                                         : format == SQ_OUTPUT_AWQ   ? awq_linear
                                                         : smoothing                 ? int_quantized_linear
                                                                                     : compressed_linear,
                                           .ctx = &src,
                                           .extra_config = extra_config,
                                           .extra_files = extra_files,
                                           .n_extra_files = n_extra_files,
                                           .override_tensor = folded,
                                           .max_shard_bytes = spec->max_shard_bytes};
        st = sq_dense_checkpoint_write(&req, output_dir);
    } else if (st == SQ_OK) {
        sq_gptq_checkpoint_request req = {.source = source,
                                          .linears = (const char *const *)names,
                                          .n_linears = n,
                                          .get_linear = packed_linear,
                                          .ctx = &src,
                                          .options = quant,
                                          .linear_bits = plan.bits,
                                          .extra_config = extra_config,
                                          .extra_files = extra_files,
                                          .n_extra_files = n_extra_files,
                                          .method = sq_step_kind_name(step_spec->kind),
                                          .override_tensor = folded,
                                          .max_shard_bytes = spec->max_shard_bytes};
        st = sq_gptq_checkpoint_write(&req, output_dir);
    }
    sq_bit_plan_free(&plan);
    json_decref(extra_config);
    json_decref(origin.pattern);
    json_decref(origin.input_config);
    sq_layer_results_free(&src.cached);
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st;
}
