/* sweep_spec.h: a sweep, a grid of jobs written as one base job spec and named axes.
 *
 * {
 *   "name": "fixture-grid",                  optional, default: the file name
 *   "root": "build/sweeps/fixture-grid",     a local directory: points/ and results.jsonl
 *   "base": { a job spec without name, state_uri, output_uri },
 *   "axes": [
 *     {"name": "method", "path": "steps[0]", "values": [{"rtn": {...}}, {"gptq": {...}}],
 *      "labels": ["rtn", "gptq"]},                optional, one per value
 *     {"name": "bits", "path": "steps[0].*.bits", "values": [3, 4]}   (* : jobs/json_path.h)
 *   ]
 * }
 *
 * The points are every combination of one value per axis, numbered with the last axis
 * fastest. Point k's job spec is the base with each axis's value set at its path, in axis order
 * (jobs/json_path.h) and, derived from the point's name,
 *   "name":       "<sweep name>-<axis name><label>-..."  e.g. fixture-grid-methodgptq-bits3
 *   "state_uri":  "<root>/points/<name>/state"
 *   "output_uri": "<root>/points/<name>/output".
 * A value's label is its "labels" entry, else the value itself (a number, a string's last
 * path component, true/false, an object's only key); names keep [A-Za-z0-9._-] and must
 * differ between points. Each point's spec is validated as `shardq run` validates a spec,
 * its errors prefixed with the point ("SWEEP.json: point 2 (NAME): ...").
 *
 * root is local because results.jsonl is appended to with O_APPEND (jobs/sweep_results.h);
 * the points' state and output are local too, below it. */
#ifndef SQ_JOBS_SWEEP_SPEC_H
#define SQ_JOBS_SWEEP_SPEC_H

#include <jansson.h>

#include "core/status.h"
#include "jobs/spec.h"

/* The most points a sweep may expand to. */
#define SQ_SWEEP_MAX_POINTS 100000

typedef struct {
    char *name;
    char *path;    /* JSON path in the base spec */
    json_t *values;/* non-empty array */
    char **labels; /* one per value, sanitized */
} sq_sweep_axis;

typedef struct {
    char *origin;       /* the sweep file, for messages */
    char *name;
    char *root;         /* local directory */
    char *results_path; /* root/results.jsonl */
    json_t *base;
    sq_sweep_axis *axes;
    int n_axes;
    int n_points;
} sq_sweep;

typedef struct {
    int index;
    char *name;
    json_t *axes;       /* {"<axis name>": value, ...}; an object or list value as its label */
    sq_job_spec spec;   /* the point's job, parsed and validated */
} sq_sweep_point;

/* Read and check a sweep file; SQ_ERR_SPEC naming the file and JSON path at fault. */
sq_status sq_sweep_load(sq_sweep *sweep, const char *path);
void sq_sweep_free(sq_sweep *sweep);

/* Point `index` (0 .. n_points-1): its name, axis values and validated job spec. */
sq_status sq_sweep_point_make(const sq_sweep *sweep, int index, sq_sweep_point *point);
void sq_sweep_point_free(sq_sweep_point *point);

#endif
