/* json_path.h: set one value inside a JSON document by a path written as the
 * spec's error messages write it: keys joined by dots, array items by [index]
 * ("steps[0].gptq.bits", "data.nsamples", "model"). A sweep's axes name the
 * spec fields they vary this way (jobs/sweep_spec.h).
 *
 * A key "*" stands for the only key of an object, so that one path reaches a field of whichever
 * step an earlier axis put there ("steps[0].*.bits" is the bits of a gptq or an rtn step).
 *
 * Every part of the path but the last must exist in the document (an object
 * key, or an array index in range); the last may add a new key to an object
 * but must name an existing item of an array. */
#ifndef SQ_JOBS_JSON_PATH_H
#define SQ_JOBS_JSON_PATH_H

#include <jansson.h>

#include "core/status.h"

/* Replace (or add) the value at `path` in `root` with `value` (a new reference is taken).
 * SQ_ERR_SPEC, with a message "<origin>: <path>: <why>", when the path is malformed or
 * does not lead to a place in the document. */
sq_status sq_json_path_set(json_t *root, const char *path, json_t *value, const char *origin);

#endif
