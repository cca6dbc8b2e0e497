/* spec.c: the job spec's top level (model, data, steps, URIs, parallel, storage,
 * push), the checks that span several fields or steps, the spec hash, and
 * loading/freeing. Per-step options are in spec_steps.c, typed field readers in
 * spec_fields.c. */
#include "jobs/spec.h"

#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/sha256.h"
#include "jobs/spec_fields.h"
#include "jobs/spec_steps.h"

static bool produces_model(sq_step_kind kind) { return kind != SQ_STEP_EVAL; }

static bool is_pruning(sq_step_kind kind)
{
    return kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA || kind == SQ_STEP_MAGNITUDE;
}

static bool quantizes(const sq_step *step)
{
    return step->kind == SQ_STEP_RTN || step->kind == SQ_STEP_GPTQ || step->kind == SQ_STEP_SMOOTHQUANT ||
           step->kind == SQ_STEP_AWQ ||
           (step->kind == SQ_STEP_SPARSEGPT && step->sparse.bits > 0);
}

static void parse_data(sq_spec_errors *errs, json_t *root, sq_job_spec *spec)
{
    static const char *const keys[] = {"calibration", "format", "nsamples", "seqlen", "sampling", NULL};
    static const char *const formats[] = {"text", "token_ids", NULL};
    static const char *const samplings[] = {"random", "consecutive", NULL}; /* sq_window_sampling order */
    int format = 0, sampling = 0;
    json_t *data = sq_spec_object(errs, root, "", "data");
    if (!data)
        return;
    sq_spec_check_keys(errs, data, "data", keys);
    sq_spec_uri(errs, data, "data", "calibration", &spec->calibration_uri);
    if (sq_spec_choice(errs, data, "data", "format", formats, &format))
        spec->calibration_token_ids = format == 1;
    /* at most KN_FIXED_MAX_ADDENDS (kernels/fixed_sum.h): the Hessians' exact sums have one addend per sample */
    sq_spec_int(errs, data, "data", "nsamples", 1, 262144, "must be an integer in 1..262144", &spec->nsamples);
    sq_spec_int(errs, data, "data", "seqlen", 1, INT_MAX, "must be a positive integer", &spec->seqlen);
    if (sq_spec_choice(errs, data, "data", "sampling", samplings, &sampling))
        spec->sampling = (sq_window_sampling)sampling;
}

static void parse_parallel(sq_spec_errors *errs, json_t *root, sq_job_spec *spec)
{
    static const char *const keys[] = {"mode", "micro_batch", "blocks", NULL};
    static const char *const modes[] = {"sequential", "pipeline", NULL};
    json_t *parallel = sq_spec_object(errs, root, "", "parallel");
    if (!parallel)
        return;
    sq_spec_check_keys(errs, parallel, "parallel", keys);
    int mode;
    if (sq_spec_choice(errs, parallel, "parallel", "mode", modes, &mode))
        spec->mode = mode == 1 ? SQ_PARALLEL_PIPELINE : SQ_PARALLEL_SEQUENTIAL;
    sq_spec_int(errs, parallel, "parallel", "micro_batch", 1, INT_MAX, "must be a positive integer",
                &spec->micro_batch);
    sq_spec_int(errs, parallel, "parallel", "blocks", 1, INT_MAX, "must be a positive integer", &spec->pipeline_blocks);
}

static void parse_storage(sq_spec_errors *errs, json_t *root, sq_storage_options *s)
{
    static const char *const keys[] = {"endpoint",        "region",          "path_style",        "part_size_mb",
                                       "max_retries",     "stall_timeout_s", "low_speed_bytes",   "request_timeout_s",
                                       NULL};
    json_t *storage = sq_spec_object(errs, root, "", "storage");
    if (!storage)
        return;
    sq_spec_check_keys(errs, storage, "storage", keys);
    if (sq_spec_string(errs, storage, "storage", "endpoint", &s->endpoint) &&
        strncmp(s->endpoint, "http://", 7) && strncmp(s->endpoint, "https://", 8))
        sq_spec_error(errs, "storage.endpoint", "must be an http:// or https:// URL");
    sq_spec_string(errs, storage, "storage", "region", &s->region);
    bool path_style;
    if (sq_spec_bool(errs, storage, "storage", "path_style", &path_style))
        s->path_style = path_style;
    sq_spec_int(errs, storage, "storage", "part_size_mb", 5, 5120,
                "must be an integer from 5 to 5120 (S3 multipart part sizes)", &s->part_size_mb);
    sq_spec_int(errs, storage, "storage", "max_retries", 0, 20, "must be an integer from 0 to 20", &s->max_retries);
    sq_spec_int(errs, storage, "storage", "stall_timeout_s", 1, 86400, "must be an integer from 1 to 86400",
                &s->stall_timeout_s);
    sq_spec_int(errs, storage, "storage", "low_speed_bytes", 1, INT_MAX, "must be a positive integer",
                &s->low_speed_bytes);
    sq_spec_int(errs, storage, "storage", "request_timeout_s", 1, 86400, "must be an integer from 1 to 86400",
                &s->request_timeout_s);
}

static void parse_push(sq_spec_errors *errs, json_t *root, sq_push_options *p)
{
    static const char *const keys[] = {"store", "name", "version", NULL};
    json_t *push = sq_spec_object(errs, root, "", "push");
    if (!push)
        return;
    sq_spec_check_keys(errs, push, "push", keys);
    if (sq_spec_require(errs, push, "push", "store"))
        sq_spec_uri(errs, push, "push", "store", &p->store);
    if (sq_spec_require(errs, push, "push", "name"))
        sq_spec_string(errs, push, "push", "name", &p->name);
    sq_spec_string(errs, push, "push", "version", &p->version);
    if (!p->version && !json_object_get(push, "version")) {
        p->version = strdup("1");
        if (!p->version)
            errs->nomem = true;
    }
}

/* Parse every step; parsed[i] tells whether steps[i]'s kind is known. */
static void parse_steps(sq_spec_errors *errs, json_t *root, sq_job_spec *spec, bool **parsed)
{
    json_t *steps = json_object_get(root, "steps");
    if (!steps) {
        sq_spec_error(errs, "steps", "required");
        return;
    }
    if (!json_is_array(steps) || json_array_size(steps) == 0) {
        sq_spec_error(errs, "steps", "must be a non-empty list of steps");
        return;
    }
    size_t n = json_array_size(steps);
    spec->steps = calloc(n, sizeof *spec->steps);
    *parsed = calloc(n, sizeof **parsed);
    if (!spec->steps || !*parsed) {
        errs->nomem = true;
        return;
    }
    spec->n_steps = (int)n;
    for (size_t i = 0; i < n; i++)
        (*parsed)[i] = sq_spec_parse_step(errs, json_array_get(steps, i), (int)i, &spec->steps[i]);
}

static char *dup_or_null(sq_spec_errors *errs, const char *text)
{
    if (!text)
        return NULL;
    char *copy = strdup(text);
    if (!copy)
        errs->nomem = true;
    return copy;
}

static const char *kind_at(const sq_job_spec *spec, int i) { return sq_step_kind_name(spec->steps[i].kind); }

/* Pruning before quantization, one quantizing step, nothing but eval after qlora. */
static void check_step_order(sq_spec_errors *errs, const sq_job_spec *spec, const bool *parsed)
{
    int quantized_by = -1, qlora_at = -1;
    for (int i = 0; i < spec->n_steps; i++) {
        if (!parsed[i])
            continue;
        const sq_step *step = &spec->steps[i];
        char at[SQ_SPEC_PATH_MAX];
        snprintf(at, sizeof at, "steps[%d]", i);
        if (qlora_at >= 0 && produces_model(step->kind))
            sq_spec_error(errs, at, "%s cannot follow qlora (steps[%d]): the adapter is trained on the final base",
                          kind_at(spec, i), qlora_at);
        else if (is_pruning(step->kind) && quantized_by >= 0)
            sq_spec_error(errs, at, "pruning must come before quantization (steps[%d] is %s)", quantized_by,
                          kind_at(spec, quantized_by));
        else if (quantizes(step) && quantized_by >= 0)
            sq_spec_error(errs, at, "the model is already quantized by steps[%d] (%s)", quantized_by,
                          kind_at(spec, quantized_by));
        if (quantizes(step) && quantized_by < 0)
            quantized_by = i;
        if (step->kind == SQ_STEP_QLORA)
            qlora_at = i;
    }
}

/* Step defaults that come from the rest of the spec: seqlen from data.seqlen,
 * qlora's train_data from data.calibration, base_quant from earlier steps, and
 * gptq's preserve_sparsity from an earlier pruning step. */
static void fill_dependent_defaults(sq_spec_errors *errs, json_t *root, sq_job_spec *spec, const bool *parsed)
{
    int quantized_by = -1;
    bool pruned = false;
    for (int i = 0; i < spec->n_steps; i++) {
        if (!parsed[i])
            continue;
        sq_step *step = &spec->steps[i];
        if (step->kind == SQ_STEP_EVAL && !step->eval.seqlen)
            step->eval.seqlen = spec->seqlen;
        json_t *gptq = json_object_get(json_array_get(json_object_get(root, "steps"), (size_t)i), "gptq");
        if (step->kind == SQ_STEP_GPTQ && !json_object_get(gptq, "preserve_sparsity"))
            step->quant.preserve_sparsity = pruned;
        if (step->kind == SQ_STEP_AWQ) /* then gptq keeps a pruned input's zeros, as rtn does */
            step->quant.preserve_sparsity = pruned;
        pruned |= is_pruning(step->kind);
        if (step->kind == SQ_STEP_QLORA) {
            sq_lora_options *l = &step->lora;
            json_t *options = json_object_get(json_array_get(json_object_get(root, "steps"), (size_t)i), "qlora");
            if (!l->seqlen)
                l->seqlen = spec->seqlen;
            if (!json_object_get(options, "train_data"))
                l->train_data = dup_or_null(errs, spec->calibration_uri);
            if (!json_object_get(options, "base_quant")) {
                l->base_quant = dup_or_null(errs, quantized_by >= 0 ? "gptq" : "nf4");
            } else if (l->base_quant && quantized_by >= 0 && !strcmp(l->base_quant, "nf4")) {
                char at[SQ_SPEC_PATH_MAX];
                snprintf(at, sizeof at, "steps[%d].qlora.base_quant", i);
                sq_spec_error(errs, at, "cannot be \"nf4\": steps[%d] (%s) already quantized the model; use \"gptq\"",
                              quantized_by, kind_at(spec, quantized_by));
            }
        }
        if (quantizes(step) && quantized_by < 0)
            quantized_by = i;
    }
}

/* Top-level fields that become required because of the steps. */
static void check_required_by_steps(sq_spec_errors *errs, json_t *root, const sq_job_spec *spec, const bool *parsed)
{
    int first_output = -1, calibration_for = -1;
    for (int i = 0; i < spec->n_steps; i++) {
        if (!parsed[i])
            continue;
        sq_step_kind kind = spec->steps[i].kind;
        json_t *options = json_object_get(json_array_get(json_object_get(root, "steps"), (size_t)i), "qlora");
        bool needs_calibration = kind == SQ_STEP_GPTQ || kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA ||
                                 kind == SQ_STEP_SMOOTHQUANT ||
                                 kind == SQ_STEP_KV_CACHE ||
                                 kind == SQ_STEP_AWQ ||
                                 (kind == SQ_STEP_QLORA && !json_object_get(options, "train_data"));
        if (needs_calibration && calibration_for < 0)
            calibration_for = i;
        if (produces_model(kind) && first_output < 0)
            first_output = i;
    }
    json_t *data = json_object_get(root, "data");
    if (calibration_for >= 0 && !(json_is_object(data) && json_object_get(data, "calibration")))
        sq_spec_error(errs, "data.calibration", "required because step %s needs calibration data",
                      kind_at(spec, calibration_for));
    if (first_output >= 0 && !json_object_get(root, "output_uri"))
        sq_spec_error(errs, "output_uri", "required because step %s produces a model", kind_at(spec, first_output));
    if (json_is_object(json_object_get(root, "push")) && first_output < 0 && spec->n_steps > 0)
        sq_spec_error(errs, "push", "needs a step that produces a model");
}

/* "output": {"format": ...}, and the steps it can apply to. */
static void parse_output(sq_spec_errors *errs, json_t *root, sq_job_spec *spec, const bool *parsed)
{
    static const char *const keys[] = {"format", "max_shard_bytes", NULL};
    json_t *output = sq_spec_object(errs, root, "", "output");
    int format;
    if (!output)
        return;
    sq_spec_check_keys(errs, output, "output", keys);
    long long shard_bytes;
    if (sq_spec_int64(errs, output, "output", "max_shard_bytes", 1024, "must be an integer of at least 1024 (bytes)",
                      &shard_bytes))
        spec->max_shard_bytes = (uint64_t)shard_bytes;
    if (!sq_spec_choice(errs, output, "output", "format", sq_output_format_names, &format))
        return;
    spec->output_format = (sq_output_format)format;
    int last_model = -1;
    for (int i = 0; i < spec->n_steps; i++) /* a kv_cache step keeps its input's format */
        if (parsed[i] && produces_model(spec->steps[i].kind) && spec->steps[i].kind != SQ_STEP_KV_CACHE)
            last_model = i;
    if (format != SQ_OUTPUT_GPTQ && (last_model < 0 || !quantizes(&spec->steps[last_model])))
        sq_spec_error(errs, "output.format", "\"%s\" applies to a quantized output; the last step that produces a "
                      "model (%s) does not quantize", sq_output_format_names[format],
                      last_model < 0 ? "none" : kind_at(spec, last_model));
    bool unreadable = format == SQ_OUTPUT_COMPRESSED_TENSORS || format == SQ_OUTPUT_AWQ;
    for (int i = last_model + 1; i < spec->n_steps && unreadable; i++) {
        char at[SQ_SPEC_PATH_MAX];
        snprintf(at, sizeof at, "steps[%d]", i);
        if (parsed[i] && spec->steps[i].kind == SQ_STEP_KV_CACHE)
            sq_spec_error(errs, at, "kv_cache reads gptq and dense checkpoints, not the %s output: "
                          "use a \"dense\" or \"gptq\" output", sq_output_format_names[format]);
        if (parsed[i] && spec->steps[i].kind == SQ_STEP_EVAL)
            sq_spec_error(errs, at, "eval reads gptq and dense checkpoints, not the %s output: "
                          "evaluate a \"dense\" output instead", sq_output_format_names[format]);
    }
}

/* smoothquant writes its smoothed norms and W8A8 linears as compressed-tensors int-quantized
 * (8-bit weights and activations only) or as dense dequantized weights, not as GPTQ v1. */
static void check_smoothquant_output(sq_spec_errors *errs, const sq_job_spec *spec, const bool *parsed)
{
    for (int i = 0; i < spec->n_steps; i++) {
        const sq_step *step = &spec->steps[i];
        if (!parsed[i] || step->kind != SQ_STEP_SMOOTHQUANT)
            continue;
        char at[SQ_SPEC_PATH_MAX];
        if (spec->output_format == SQ_OUTPUT_GPTQ)
            sq_spec_error(errs, "output.format", "steps[%d] (smoothquant) writes \"compressed-tensors\" (int-quantized "
                          "W8A8) or \"dense\", not GPTQ v1: set \"output\": {\"format\": ...}", i);
        if (spec->output_format != SQ_OUTPUT_COMPRESSED_TENSORS)
            continue;
        if (step->quant.bits != 8) {
            snprintf(at, sizeof at, "steps[%d].smoothquant.bits", i);
            sq_spec_error(errs, at, "%d; compressed-tensors int-quantized W8A8 holds 8-bit weights: use 8, or "
                          "\"output\": {\"format\": \"dense\"}", step->quant.bits);
        }
        if (step->smooth.act_bits != 8) {
            snprintf(at, sizeof at, "steps[%d].smoothquant.act_bits", i);
            sq_spec_error(errs, at, "%d; compressed-tensors int-quantized W8A8 declares 8-bit activations: use 8, or "
                          "\"output\": {\"format\": \"dense\"}", step->smooth.act_bits);
        }
    }
}

static void parse_document(sq_spec_errors *errs, json_t *root, const char *origin, sq_job_spec *spec)
{
    static const char *const keys[] = {"name", "model", "data", "steps", "state_uri", "output_uri",
                                       "parallel", "seed", "storage", "push", "output", NULL};
    sq_spec_check_keys(errs, root, "", keys);
    if (json_object_get(root, "name")) {
        sq_spec_string(errs, root, "", "name", &spec->name);
    } else {
        spec->name = sq_spec_name_from_origin(origin);
        if (!spec->name)
            errs->nomem = true;
    }
    if (sq_spec_require(errs, root, "", "model"))
        sq_spec_uri(errs, root, "", "model", &spec->model_uri);
    parse_data(errs, root, spec);
    bool *parsed = NULL;
    parse_steps(errs, root, spec, &parsed);
    if (sq_spec_require(errs, root, "", "state_uri"))
        sq_spec_uri(errs, root, "", "state_uri", &spec->state_uri);
    sq_spec_uri(errs, root, "", "output_uri", &spec->output_uri);
    parse_parallel(errs, root, spec);
    long long seed;
    if (sq_spec_int64(errs, root, "", "seed", 0, "must be a non-negative integer", &seed))
        spec->seed = (uint64_t)seed;
    parse_storage(errs, root, &spec->storage);
    parse_push(errs, root, &spec->push);
    if (parsed) {
        check_step_order(errs, spec, parsed);
        fill_dependent_defaults(errs, root, spec, parsed);
        check_required_by_steps(errs, root, spec, parsed);
        parse_output(errs, root, spec, parsed);
        check_smoothquant_output(errs, spec, parsed);
    }
    free(parsed);
}

static void set_defaults(sq_job_spec *spec)
{
    memset(spec, 0, sizeof *spec);
    spec->nsamples = 128;
    spec->seqlen = 2048;
    spec->mode = SQ_PARALLEL_SEQUENTIAL;
    spec->micro_batch = 4;
    spec->seed = 0;
    spec->storage = (sq_storage_options)SQ_STORAGE_OPTIONS_UNSET; /* SHARDQ_S3_* or the store's defaults */
}

sq_status sq_job_spec_parse(sq_job_spec *spec, const char *origin, const char *text)
{
    if (!spec || !origin || !text)
        return sq_fail(SQ_ERR_ARG, "sq_job_spec_parse: spec, origin and text are required");
    set_defaults(spec);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sq_fail(SQ_ERR_SPEC, "%s:%d:%d: invalid JSON: %s", origin, jerr.line, jerr.column, jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return sq_fail(SQ_ERR_SPEC, "%s: 1 error\n(root): must be an object", origin);
    }
    sq_spec_errors errs = {0};
    parse_document(&errs, root, origin, spec);
    sq_status st = SQ_OK;
    if (errs.nomem) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory while reading the job spec", origin);
    } else if (errs.count) {
        st = sq_spec_report_errors(origin, &errs);
    } else {
        char *canonical = json_dumps(root, JSON_SORT_KEYS | JSON_COMPACT);
        if (canonical)
            sq_sha256_hex(canonical, strlen(canonical), spec->sha256);
        else
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory while hashing the job spec", origin);
        free(canonical);
    }
    sq_spec_errors_free(&errs);
    json_decref(root);
    if (st != SQ_OK)
        sq_job_spec_free(spec);
    return st;
}

sq_status sq_job_spec_load(sq_job_spec *spec, const char *path)
{
    char *text;
    size_t len;
    set_defaults(spec);
    SQ_TRY(sq_read_file(path, &text, &len));
    if (strlen(text) != len) {
        free(text);
        return sq_fail(SQ_ERR_SPEC, "%s: contains a NUL byte", path);
    }
    sq_status st = sq_job_spec_parse(spec, path, text);
    free(text);
    return st;
}

void sq_job_spec_free(sq_job_spec *spec)
{
    for (int i = 0; spec->steps && i < spec->n_steps; i++)
        sq_spec_free_step(&spec->steps[i]);
    free(spec->steps);
    free(spec->name);
    free(spec->model_uri);
    free(spec->calibration_uri);
    free(spec->state_uri);
    free(spec->output_uri);
    free(spec->storage.endpoint);
    free(spec->storage.region);
    free(spec->push.store);
    free(spec->push.name);
    free(spec->push.version);
    memset(spec, 0, sizeof *spec);
}
