/* sweep_record.c: a finished job's sweep record, read from its journal, output and config
 * (see sweep_record.h). */
#include "coordinator/sweep_record.h"

#include <stdlib.h>
#include <string.h>

#include "coordinator/job_storage.h"
#include "core/dtype.h"
#include "jobs/journal.h"
#include "model/config.h"
#include "model/geometry.h"
#include "store/uri.h"

/* The quantization of a step that quantizes (bits > 0), else bits 0. */
static void step_quantization(const sq_step *step, int *bits, int *group_size)
{
    *bits = 0, *group_size = 0;
    if (step->kind == SQ_STEP_RTN || step->kind == SQ_STEP_GPTQ || step->kind == SQ_STEP_SMOOTHQUANT)
        *bits = step->quant.bits, *group_size = step->quant.group_size;
    else if (step->kind == SQ_STEP_SPARSEGPT && step->sparse.bits > 0)
        *bits = step->sparse.bits, *group_size = step->sparse.group_size;
}

static bool produces_model(sq_step_kind kind) { return kind != SQ_STEP_EVAL && kind != SQ_STEP_QLORA; }

/* Bits per weight of one decoder layer's linears, each at widths[linear]: codes plus an fp16 scale and
 * a bits-wide zero per group of group_size inputs (-1: one group per row), or the source dtype's width
 * (width 0). */
static double layer_bits(const sq_model_config *cfg, const int widths[SQ_LINEAR_COUNT], int group_size)
{
    double stored = 0, weights = 0;
    for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
        int in, out, bits = widths[id];
        sq_linear_shape(cfg, (sq_linear_id)id, &in, &out);
        double n = (double)in * (double)out;
        weights += n;
        if (bits == 0) {
            stored += n * 8.0 * (double)sq_dtype_size(cfg->torch_dtype);
        } else {
            int group = group_size > 0 ? group_size : in;
            double groups = (double)((in + group - 1) / group);
            stored += n * bits + (double)out * groups * (16.0 + bits);
        }
    }
    return weights > 0 ? stored / weights : 0;
}

/* Layer `layer`'s widths: each linear's "bits" in a mixed-precision output's sensitivity_report.json
 * (`report`, or NULL), else `bits` for all. */
static void layer_widths(const json_t *report, int layer, int bits, int widths[SQ_LINEAR_COUNT])
{
    json_t *linears = json_object_get(report, "linears");
    for (int id = 0; id < SQ_LINEAR_COUNT; id++) {
        json_t *width = json_object_get(json_array_get(linears, (size_t)layer * SQ_LINEAR_COUNT + id), "bits");
        widths[id] = json_is_integer(width) ? (int)json_integer_value(width) : bits;
    }
}

/* Sum of the sizes of every object under `uri`. */
static sq_status bytes_under(sq_store *store, const char *uri, json_int_t *bytes)
{
    sq_object_list list;
    SQ_TRY(sq_store_list(store, uri, &list));
    *bytes = 0;
    for (int i = 0; i < list.n; i++)
        *bytes += (json_int_t)list.sizes[i];
    sq_object_list_free(&list);
    return SQ_OK;
}

/* The bytes of base/name (NUL-terminated; caller frees), or NULL when there is no such object. */
static sq_status read_object(sq_store *store, const char *base, const char *name, char **text, size_t *len)
{
    *text = NULL;
    char *uri = sq_uri_join(base, name);
    if (!uri)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    void *data = NULL;
    sq_status st = sq_store_get(store, uri, &data, len);
    char *copy = st == SQ_OK ? malloc(*len + 1) : NULL;
    if (st == SQ_ERR_NOT_FOUND)
        st = SQ_OK;
    else if (st == SQ_OK && !copy)
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (copy) {
        memcpy(copy, data, *len);
        copy[*len] = '\0';
        *text = copy;
    }
    free(data);
    free(uri);
    return st;
}

/* "phases" and "evals" from the journal's step results; "method", "sparsity", totals. */
static sq_status add_steps(const sq_job_spec *spec, const sq_journal *journal, json_t *record)
{
    json_t *steps = json_object_get(journal->doc, "steps");
    json_t *phases = json_array(), *evals = json_array();
    char method[256] = "";
    double wall = 0, cpu = 0, sparsity = 0;
    for (int i = 0; i < spec->n_steps; i++) {
        const char *kind = sq_step_kind_name(spec->steps[i].kind);
        json_t *entry = json_array_get(steps, (size_t)i);
        json_t *result = json_object_get(entry, "result");
        if (!json_is_object(result))
            return sq_fail(SQ_ERR_FORMAT, "%s: steps[%d] has no result: the job has not finished", journal->path, i);
        double step_wall = json_number_value(json_object_get(entry, "wall_s"));
        double step_cpu = json_number_value(json_object_get(entry, "cpu_s"));
        wall += step_wall, cpu += step_cpu;
        json_array_append_new(phases, json_pack("{s:i, s:s, s:f, s:f}", "step", i, "kind", kind, "wall_s", step_wall,
                                                "cpu_s", step_cpu));
        if (spec->steps[i].kind == SQ_STEP_EVAL) {
            json_t *eval = json_deep_copy(result);
            json_object_del(eval, "model");
            json_object_set_new(eval, "step", json_integer(i));
            json_array_append_new(evals, eval);
        } else {
            size_t used = strlen(method);
            snprintf(method + used, sizeof method - used, "%s%s", used ? "+" : "", kind);
        }
        if (json_is_number(json_object_get(result, "sparsity")))
            sparsity = json_number_value(json_object_get(result, "sparsity"));
    }
    json_object_set_new(record, "method", json_string(method[0] ? method : "none"));
    json_object_set_new(record, "sparsity", json_real(sparsity));
    json_object_set_new(record, "evals", evals);
    json_object_set_new(record, "phases", phases);
    json_object_set_new(record, "wall_s", json_real(wall));
    json_object_set_new(record, "cpu_s", json_real(cpu));
    return SQ_OK;
}

/* "bits", "group_size", "avg_bits" and "layers" from the final model's config.json and, where the
 * output has one, its sparsity_report.json. */
static sq_status add_model(const sq_job_spec *spec, sq_store *store, const char *model_uri, json_t *record)
{
    int bits = 0, group_size = 0;
    for (int i = 0; i < spec->n_steps; i++)
        if (produces_model(spec->steps[i].kind) && bits == 0)
            step_quantization(&spec->steps[i], &bits, &group_size);
    char *text = NULL;
    size_t len = 0;
    SQ_TRY(read_object(store, model_uri, "config.json", &text, &len));
    if (!text)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no config.json", model_uri);
    sq_model_config cfg;
    sq_status st = sq_model_config_parse(&cfg, model_uri, text, len);
    free(text);
    if (st == SQ_OK)
        st = read_object(store, model_uri, "sparsity_report.json", &text, &len);
    if (st != SQ_OK)
        return st;
    json_error_t jerr;
    json_t *report = text ? json_loadb(text, len, 0, &jerr) : NULL; /* its layers' "achieved", when present */
    free(text);
    st = read_object(store, model_uri, "sensitivity_report.json", &text, &len);
    if (st != SQ_OK) {
        json_decref(report);
        return st;
    }
    json_t *widths_report = text ? json_loadb(text, len, 0, &jerr) : NULL; /* mixed precision's widths */
    free(text);
    json_t *report_layers = json_object_get(report, "layers");
    json_t *layers = json_array();
    double total = 0, first = 0;
    for (int layer = 0; layer < cfg.num_layers; layer++) {
        int widths[SQ_LINEAR_COUNT];
        layer_widths(widths_report, layer, bits, widths);
        double per_layer = layer_bits(&cfg, widths, group_size);
        json_t *counted = json_object_get(json_array_get(report_layers, (size_t)layer), "achieved");
        json_array_append_new(layers, json_pack("{s:i, s:f, s:f}", "layer", layer, "bits", per_layer, "sparsity",
                                                json_is_number(counted) ? json_number_value(counted) : 0.0));
        total += per_layer;
        first = layer == 0 ? per_layer : first;
    }
    json_decref(report);
    bool uniform = bits && !widths_report;
    json_decref(widths_report);
    json_object_set_new(record, "bits", uniform ? json_integer(bits) : json_null());
    json_object_set_new(record, "group_size", bits ? json_integer(group_size) : json_null());
    /* every layer alike unless mixed precision chose widths per linear */
    json_object_set_new(record, "avg_bits", json_real(widths_report ? total / cfg.num_layers : first));
    json_object_set_new(record, "layers", layers);
    return SQ_OK;
}

sq_status sq_sweep_record_build(const sq_job_spec *spec, json_t **record)
{
    *record = NULL;
    sq_job_storage io;
    SQ_TRY(sq_job_storage_open(&io, spec));
    sq_journal journal = {0};
    bool model_out = false, writes_output = false;
    for (int i = 0; i < spec->n_steps; i++) {
        model_out = model_out || produces_model(spec->steps[i].kind);
        writes_output = writes_output || spec->steps[i].kind != SQ_STEP_EVAL;
    }
    const char *model_uri = model_out ? spec->output_uri : spec->model_uri;
    const char *bytes_of = writes_output ? spec->output_uri : spec->model_uri;
    json_int_t bytes = 0;
    json_t *r = json_pack("{s:s, s:s, s:s, s:s?}", "format", "shardq-sweep-record/1", "spec_sha256", spec->sha256,
                          "state_uri", spec->state_uri, "output_uri", spec->output_uri);
    sq_status st = r ? sq_journal_read(&journal, spec->state_uri, io.store) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = add_steps(spec, &journal, r);
    if (st == SQ_OK)
        st = add_model(spec, io.store, model_uri, r);
    if (st == SQ_OK)
        st = bytes_under(io.store, bytes_of, &bytes);
    if (st == SQ_OK)
        json_object_set_new(r, "output_bytes", json_integer(bytes));
    sq_journal_close(&journal);
    sq_job_storage_close(&io);
    if (st == SQ_OK)
        *record = r;
    else
        json_decref(r);
    return st;
}
