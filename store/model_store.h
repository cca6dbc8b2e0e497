/* model_store.h: checkpoints in a model store (any URI: local, file://, s3://).
 *
 * A checkpoint directory holds manifest.json:
 *   {"format": "shardq-manifest/1",
 *    "files": {"config.json": {"size": 712, "sha256": "<hex>"}, ...},
 *    optional "name", "version", "source_model", "method", "metrics": {...}}
 * listing every file (relative '/'-separated paths) except manifest.json.
 *
 * A store at URI S holds:
 *   S/<name>/<version>/...            the files, manifest.json uploaded last
 *   S/entries/<name>/<version>.json   one record per pushed checkpoint
 *   S/index.json                      {"format": "shardq-index/1", "models": [record, ...]}
 * A record is {name, version, uri (relative to S), source_model, method,
 * metrics, created (UTC ISO 8601), files, bytes}.
 *
 * Concurrent pushes: each push writes its own entry object (no two writers
 * share a key), then rebuilds index.json from the entry listing, writes it,
 * reads it back and re-lists; while the index misses a listed entry (a
 * concurrent writer replaced it with an older view) it rebuilds again. The
 * last writer therefore always leaves an index holding every entry. This
 * needs no conditional writes, so it works on every S3-compatible server. */
#ifndef SQ_STORE_MODEL_STORE_H
#define SQ_STORE_MODEL_STORE_H

#include <jansson.h>

#include "core/status.h"
#include "store/store.h"

/* Write DIR/manifest.json for every regular file under DIR (except the
 * manifest); `meta` (may be NULL) adds name/version/source_model/method/metrics. */
sq_status sq_manifest_write(const char *dir, json_t *meta);

/* Read DIR/manifest.json and check every listed file's size and sha256. */
sq_status sq_manifest_verify_dir(const char *dir, json_t **manifest);

/* Upload DIR to STORE/<name>/<version> and record it in STORE/index.json.
 * name/version NULL: taken from the manifest. `model_uri` (optional) gets the
 * checkpoint's URI (caller frees). */
sq_status sq_model_push(sq_store *store, const char *dir, const char *store_uri, const char *name,
                        const char *version, char **model_uri);

/* Download the checkpoint at `model_uri` into DIR, verifying every file's sha256. */
sq_status sq_model_pull(sq_store *store, const char *model_uri, const char *dir);

/* The store's index.json (an empty index if the store holds none). */
sq_status sq_model_index(sq_store *store, const char *store_uri, json_t **index);

#endif
