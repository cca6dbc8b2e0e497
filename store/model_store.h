/* model_store.h: checkpoints in a model store (any URI: local, file://, s3://).
 *
 * A checkpoint is a directory (or prefix) holding manifest.json in the one
 * format of store/manifest.h: every file's sha256 and size, and optional
 * name, version, source_model, method, quantization, sparsity, metrics and
 * created. A job's output checkpoint is one, so it is pushed as it is.
 *
 * A store at URI S holds:
 *   S/<name>/<version>/...            the files, manifest.json uploaded last
 *   S/entries/<name>/<version>.json   one record per pushed checkpoint
 *   S/index.json                      {"format": "shardq-index/1", "models": [record, ...]}
 * A record is {name, version, uri (relative to S), source_model, method,
 * metrics, created (UTC ISO 8601), files, bytes, manifest_sha256}.
 *
 * Push: the source manifest is read and validated; every file is checked
 * against it before anything is written (a local file is hashed; an s3://
 * object must have the listed size and carry the listed SHA-256 metadata,
 * else it is downloaded and hashed); files are then copied server-side for
 * s3:// to s3:// (one CopyObject each, nothing through this process), copied
 * for local to local, uploaded from a local source, or streamed once through
 * a scratch file otherwise; each copy is checked again at its destination.
 * The store's manifest — the source's with the push's fields added — goes
 * last, then the entry, then the index. Pushing the same checkpoint again
 * (e.g. after a push was killed) rewrites the same objects.
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

#include "core/sha256.h"
#include "core/status.h"
#include "store/store.h"

typedef struct {
    const char *name;    /* NULL: meta's, else the source manifest's */
    const char *version; /* likewise */
    json_t *meta;        /* manifest fields to set in the store's copy (store/manifest.h), or NULL */
} sq_push_request;

typedef struct {
    char *model_uri;                              /* STORE/<name>/<version> */
    char manifest_sha256[SQ_SHA256_HEX_LEN + 1];  /* of the manifest.json the store holds */
} sq_push_result;

/* Push the checkpoint at `source_uri` (a local directory or an s3:// prefix)
 * to the store at `store_uri` and record it in the index. `result` may be
 * NULL; otherwise free it with sq_push_result_free. */
sq_status sq_model_push(sq_store *store, const char *source_uri, const char *store_uri, const sq_push_request *req,
                        sq_push_result *result);
void sq_push_result_free(sq_push_result *result);

/* Download the checkpoint at `model_uri` into DIR, checking every file's
 * size and sha256 against its manifest; a file that fails is not kept and the
 * message names it. DIR/manifest.json is written last, byte for byte the store's. */
sq_status sq_model_pull(sq_store *store, const char *model_uri, const char *dir);

/* The store's index.json (an empty index if the store holds none). */
sq_status sq_model_index(sq_store *store, const char *store_uri, json_t **index);

#endif
