/* json_file.h: a JSON document written to a local file in one step — serialised
 * with Jansson and replaced atomically (fileio.h) — for the JSON files of
 * checkpoints (config, index, reports) and their manifests. */
#ifndef SQ_JSON_FILE_H
#define SQ_JSON_FILE_H

#include <stddef.h>

#include <jansson.h>

#include "core/status.h"

/* Atomically replace dir/name with json_dumps(value, flags). */
sq_status sq_write_json_file(const char *dir, const char *name, const json_t *value, size_t flags);

#endif
