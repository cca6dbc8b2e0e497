/* manifest.h: manifest.json, the one description of a checkpoint directory,
 * written by the output checkpoint writers (model/checkpoint_files.h) and read
 * and written by the model store (store/model_store.h), so that a job's
 * output is pushed and pulled as it is.
 *
 *   {"format": "shardq-manifest/1",
 *    "files": {"config.json": {"sha256": "<64 lowercase hex>", "size": 712}, ...},
 *    "name": "llama-tiny-w4", "version": "1",       optional, [A-Za-z0-9._-]{1,128}, not starting with '.'
 *    "source_model": "s3://bucket/models/tiny",     optional string
 *    "method": "gptq",                              optional string
 *    "quantization": {...}, "sparsity": {...},      optional objects (config.json's quantization_config
 *                                                   and sparsity_config)
 *    "metrics": {...},                              optional object (the last eval step's result)
 *    "created": "2024-05-01T12:00:00Z"}             optional, UTC ISO 8601
 *
 * `files` lists every file of the directory except manifest.json itself, by
 * relative '/'-separated path (no empty, "." or ".." part); each entry has
 * exactly sha256 and size. No other key is allowed anywhere, so a typo or a
 * manifest of another format is an error naming the field, not a silently
 * ignored value. A manifest is written with sorted keys, so equal manifests
 * are equal bytes. */
#ifndef SQ_STORE_MANIFEST_H
#define SQ_STORE_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"

#define SQ_MANIFEST_FILE "manifest.json"
#define SQ_MANIFEST_FORMAT "shardq-manifest/1"

/* A valid name or version: 1-128 characters of A-Z a-z 0-9 . _ -, not starting with '.'. */
bool sq_manifest_valid_name(const char *s);

/* A new manifest (format and files) for `files` (paths relative to `dir`), hashing each
 * file but those whose SHA-256 the writer computed as it wrote them: known_sha256 (NULL,
 * or one entry per file, NULL where unknown). */
sq_status sq_manifest_describe(const char *dir, char *const *files, int n_files, const char *const *known_sha256,
                               json_t **manifest);

/* Set the optional fields that `meta` holds (keys as above; `files` and
 * `format` are not taken from it), then validate; `origin` names the result
 * in messages. */
sq_status sq_manifest_set_meta(json_t *manifest, json_t *meta, const char *origin);

/* Check every field (see above); `origin` (a path or URI) starts every message. */
sq_status sq_manifest_validate(json_t *manifest, const char *origin);

/* Parse and validate manifest text read from `origin`. */
sq_status sq_manifest_parse(const void *text, size_t len, const char *origin, json_t **manifest);

/* The manifest as text (sorted keys; caller frees), NULL when out of memory. */
char *sq_manifest_dump(json_t *manifest);

/* dir/manifest.json, written atomically / read and validated. */
sq_status sq_manifest_write(const char *dir, json_t *manifest);
sq_status sq_manifest_load(const char *dir, json_t **manifest);

/* The size and sha256 the manifest lists for `path` (SQ_ERR_NOT_FOUND if it lists none). */
sq_status sq_manifest_entry(json_t *manifest, const char *path, uint64_t *size, const char **sha256);

/* Whether the local file `local_path` has the size and sha256 listed for
 * `path`; a mismatch is SQ_ERR_MISMATCH naming `shown_as`. */
sq_status sq_manifest_check_file(json_t *manifest, const char *path, const char *local_path, const char *shown_as);

/* Load dir/manifest.json and check every listed file's size and sha256. */
sq_status sq_manifest_verify_dir(const char *dir, json_t **manifest);

/* The current time as the manifest's `created` ("YYYY-MM-DDTHH:MM:SSZ"). */
void sq_manifest_now(char created[21]);

/* Sum of the listed files' sizes. */
uint64_t sq_manifest_total_bytes(json_t *manifest);

#endif
