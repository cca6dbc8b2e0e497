/* report_data.h: a sweep's results.jsonl read for `shardq report`: one row per point (the last
 * record of each point name, so a point rerun with a changed spec shows its latest result), its
 * first eval set's perplexity, and the Pareto frontier of perplexity against output size
 * (jobs/pareto.h). */
#ifndef SQ_CLI_REPORT_DATA_H
#define SQ_CLI_REPORT_DATA_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"

typedef struct {
    int point;
    const char *name;      /* borrowed from the record */
    const char *method;
    const char *eval_data; /* the first eval set, or NULL */
    double bits, group_size, avg_bits, sparsity, bytes, ppl, wall_s, cpu_s; /* NAN when absent */
    bool frontier;
    json_t *layers;        /* borrowed: [{"layer", "bits", "sparsity"}], or NULL */
} report_row;

typedef struct {
    json_t *records;
    report_row *rows;
    int n;
    int *frontier;  /* row indices, by increasing size */
    int n_frontier;
    const char *sweep; /* the first record's sweep name, or "" */
} report_data;

/* SQ_ERR_FORMAT naming path:line for a record without a string "name". */
sq_status report_data_load(report_data *data, const char *path);
void report_data_free(report_data *data);

/* "12.3 KiB" etc.: bytes with 3 significant digits. */
void report_format_bytes(double bytes, char *out, size_t cap);

/* `v` printed with `format` (e.g. "%.4g"), or "-" when it is NAN. */
void report_format_number(double v, const char *format, char *out, size_t cap);

/* The row whose per-layer data the report shows: the one named `name` (NULL when none has that
 * name), or with name NULL the frontier's lowest-perplexity row that has layers, else the first
 * row that has layers (NULL when no row has). */
const report_row *report_layers_row(const report_data *data, const char *name);

#endif
