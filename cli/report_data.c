/* report_data.c: read results.jsonl into report rows and find the frontier (see report_data.h). */
#include "cli/report_data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/pareto.h"
#include "jobs/sweep_results.h"

static double number_or_nan(json_t *value)
{
    return json_is_number(value) ? json_number_value(value) : NAN;
}

static void fill_row(report_row *row, json_t *record)
{
    json_t *first_eval = json_array_get(json_object_get(record, "evals"), 0);
    json_t *layers = json_object_get(record, "layers");
    json_t *point = json_object_get(record, "point");
    *row = (report_row){
        .point = json_is_integer(point) ? (int)json_integer_value(point) : -1,
        .name = json_string_value(json_object_get(record, "name")),
        .method = json_string_value(json_object_get(record, "method")),
        .eval_data = json_string_value(json_object_get(first_eval, "data")),
        .bits = number_or_nan(json_object_get(record, "bits")),
        .group_size = number_or_nan(json_object_get(record, "group_size")),
        .avg_bits = number_or_nan(json_object_get(record, "avg_bits")),
        .sparsity = number_or_nan(json_object_get(record, "sparsity")),
        .bytes = number_or_nan(json_object_get(record, "output_bytes")),
        .ppl = number_or_nan(json_object_get(first_eval, "ppl")),
        .wall_s = number_or_nan(json_object_get(record, "wall_s")),
        .cpu_s = number_or_nan(json_object_get(record, "cpu_s")),
        .layers = json_is_array(layers) && json_array_size(layers) ? layers : NULL,
    };
    if (!row->method)
        row->method = "?";
}

static sq_status find_frontier(report_data *data)
{
    double *x = malloc((size_t)(data->n + 1) * sizeof *x), *y = malloc((size_t)(data->n + 1) * sizeof *y);
    data->frontier = malloc((size_t)(data->n + 1) * sizeof *data->frontier);
    sq_status st = x && y && data->frontier ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    for (int i = 0; st == SQ_OK && i < data->n; i++)
        x[i] = data->rows[i].bytes, y[i] = data->rows[i].ppl;
    if (st == SQ_OK)
        st = sq_pareto_frontier(x, y, data->n, data->frontier, &data->n_frontier);
    for (int k = 0; st == SQ_OK && k < data->n_frontier; k++)
        data->rows[data->frontier[k]].frontier = true;
    free(x);
    free(y);
    return st;
}

sq_status report_data_load(report_data *data, const char *path)
{
    memset(data, 0, sizeof *data);
    data->sweep = "";
    SQ_TRY(sq_sweep_results_read(path, &data->records));
    size_t count = json_array_size(data->records);
    data->rows = calloc(count + 1, sizeof *data->rows);
    if (!data->rows) {
        report_data_free(data);
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < count; i++) {
        json_t *record = json_array_get(data->records, i);
        if (!json_is_string(json_object_get(record, "name"))) {
            report_data_free(data);
            return sq_fail(SQ_ERR_FORMAT, "%s:%zu: the record has no string \"name\"", path, i + 1);
        }
        report_row row;
        fill_row(&row, record);
        int at = 0; /* a later record of the same point replaces the earlier one */
        while (at < data->n && strcmp(data->rows[at].name, row.name))
            at++;
        data->rows[at] = row;
        data->n += at == data->n;
    }
    const char *sweep = json_string_value(json_object_get(json_array_get(data->records, 0), "sweep"));
    if (sweep)
        data->sweep = sweep;
    sq_status st = find_frontier(data);
    if (st != SQ_OK)
        report_data_free(data);
    return st;
}

void report_data_free(report_data *data)
{
    json_decref(data->records);
    free(data->rows);
    free(data->frontier);
    memset(data, 0, sizeof *data);
}

void report_format_bytes(double bytes, char *out, size_t cap)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4)
        bytes /= 1024, u++;
    if (isnan(bytes))
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, u == 0 ? "%.0f %s" : "%.3g %s", bytes, units[u]);
}

void report_format_number(double v, const char *format, char *out, size_t cap)
{
    if (isnan(v))
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, format, v);
}

const report_row *report_layers_row(const report_data *data, const char *name)
{
    for (int i = 0; name && i < data->n; i++)
        if (!strcmp(data->rows[i].name, name))
            return &data->rows[i];
    if (name)
        return NULL;
    for (int k = data->n_frontier - 1; k >= 0; k--) /* the frontier runs from small to low perplexity */
        if (data->rows[data->frontier[k]].layers)
            return &data->rows[data->frontier[k]];
    for (int i = 0; i < data->n; i++)
        if (data->rows[i].layers)
            return &data->rows[i];
    return NULL;
}
