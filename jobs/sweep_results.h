/* sweep_results.h: a sweep's results.jsonl, one JSON record per finished point per line.
 *
 * A record is appended whole or not at all: the line (record and newline) goes to the file in a
 * single write(2) on a descriptor opened with O_APPEND, then fsync. On a local file system such a
 * write lands at the end in one piece even when several writers append at once (a Slurm job
 * array's elements on one node); within one `shardq sweep` only rank 0 writes. NFS does not
 * promise this: give a job array a root on a local disk or on a file system that does.
 *
 * The record's fields are written by coordinator/sweep_record.h; what this file reads of them is
 * "name" and "spec_sha256", which say which point and which spec finished. */
#ifndef SQ_JOBS_SWEEP_RESULTS_H
#define SQ_JOBS_SWEEP_RESULTS_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"

/* Append `record` as one line to `path` (created, with its directory, when absent). */
sq_status sq_sweep_results_append(const char *path, const json_t *record);

/* Every record of `path`, in file order, as a new JSON array (an absent file: empty). A line that
 * is not a JSON object, or a last line without its newline, is SQ_ERR_FORMAT naming path:line. */
sq_status sq_sweep_results_read(const char *path, json_t **records);

/* The record of point `name` with spec hash `spec_sha256` in `records`, or NULL (borrowed). */
json_t *sq_sweep_results_find(const json_t *records, const char *name, const char *spec_sha256);

#endif
