/* store.h: the one storage API of shardq, for local paths, file:// and s3:// URIs.
 *
 * Every function takes a URI (see uri.h) and works the same on both
 * backends (store_local.c, store_s3.c, behind store_backend.h). Local writes
 * are atomic (temp file, fsync, rename, fsync dir); S3 writes are single PUTs
 * up to the part size and multipart uploads beyond, always with Content-MD5, a
 * checked ETag and the object's SHA-256 as user metadata; whole downloads are checked against Content-Length, that SHA-256
 * and, for single-part objects, the ETag's MD5. Transient S3
 * failures are retried with backoff (see s3_client.h).
 *
 * Settings (sq_store_open): the spec's storage block when given, else the
 * environment: AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3), AWS_REGION (or
 * AWS_DEFAULT_REGION), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN. Tuning without a spec: SHARDQ_S3_PATH_STYLE (0/1),
 * SHARDQ_S3_PART_SIZE_MB, SHARDQ_S3_MAX_RETRIES, SHARDQ_S3_PARALLEL_PARTS,
 * SHARDQ_S3_BACKOFF_MS, SHARDQ_S3_STALL_TIMEOUT_S, SHARDQ_S3_LOW_SPEED_BYTES,
 * SHARDQ_S3_REQUEST_TIMEOUT_S (deadlines: see s3_client.h); a value that is
 * not a whole integer in its range is an error naming the variable.
 * Path-style addressing is the default when an endpoint is set (MinIO, Ceph,
 * moto), virtual-host otherwise. */
#ifndef SQ_STORE_STORE_H
#define SQ_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* The spec's "storage" block (jobs/spec.h parses it). */
typedef struct {
    char *endpoint;  /* NULL: from AWS_ENDPOINT_URL or AWS default */
    char *region;    /* NULL: from AWS_REGION or "us-east-1" */
    int path_style;  /* -1 unset (auto), 0 virtual-host, 1 path-style */
    int part_size_mb;/* multipart part size; 0 unset (SHARDQ_S3_PART_SIZE_MB, else 8) */
    int max_retries; /* -1 unset (SHARDQ_S3_MAX_RETRIES, else 5) */
    int stall_timeout_s;   /* 0 unset (SHARDQ_S3_STALL_TIMEOUT_S, else 30) */
    int low_speed_bytes;   /* 0 unset (SHARDQ_S3_LOW_SPEED_BYTES, else 1024) */
    int request_timeout_s; /* 0 unset (SHARDQ_S3_REQUEST_TIMEOUT_S, else 300) */
} sq_storage_options;

/* Every field unset: the environment's settings, else the store's defaults. */
#define SQ_STORAGE_OPTIONS_UNSET {.path_style = -1, .max_retries = -1}

typedef struct sq_store sq_store;

/* `options` may be NULL (environment only). A store is safe to share between
 * threads; each thread keeps one reusable connection handle, which a worker
 * thread releases with sq_store_thread_done() before it exits (the thread
 * that calls sq_store_close releases its own). */
sq_status sq_store_open(sq_store **out, const sq_storage_options *options);
void sq_store_close(sq_store *store);
void sq_store_thread_done(void);

/* Whole object into a new buffer (NUL-terminated for convenience; caller frees). */
sq_status sq_store_get(sq_store *store, const char *uri, void **data, size_t *len);
/* `len` bytes at `offset` into `dst`; fails if the object is shorter. */
sq_status sq_store_get_range(sq_store *store, const char *uri, uint64_t offset, uint64_t len, void *dst);
/* Whole object to a local file, written atomically. */
sq_status sq_store_get_file(sq_store *store, const char *uri, const char *local_path);

sq_status sq_store_put(sq_store *store, const char *uri, const void *data, size_t len);
sq_status sq_store_put_file(sq_store *store, const char *uri, const char *local_path);

typedef struct {
    uint64_t size;
    char etag[128]; /* S3 ETag without quotes; "" for local files */
    char sha256[65]; /* SHA-256 recorded at upload by shardq; "" if unknown (local files, foreign objects) */
} sq_object_info;

/* SQ_ERR_NOT_FOUND (naming the URI) when the object does not exist. */
sq_status sq_store_head(sq_store *store, const char *uri, sq_object_info *info);

typedef struct {
    int n;
    char **names;    /* relative to the listed URI, '/'-separated, sorted */
    uint64_t *sizes;
} sq_object_list;

/* Every object under `uri` treated as a directory (recursive). An absent
 * directory or prefix is an empty list. */
sq_status sq_store_list(sq_store *store, const char *uri, sq_object_list *out);
void sq_object_list_free(sq_object_list *list);

/* Copy one object to another URI of the same kind without moving its bytes
 * through this process where the backend allows: a server-side CopyObject
 * (objects up to 5 GiB; the copy keeps the source's SHA-256 metadata) for
 * s3:// to s3://, a file copy for local to local. Other pairs, and larger S3
 * objects, are SQ_ERR_UNSUPPORTED: download and upload instead. */
#define SQ_STORE_MAX_COPY_BYTES (5ull << 30)
sq_status sq_store_copy(sq_store *store, const char *src_uri, const char *dst_uri);

/* Delete one object; deleting an absent object succeeds. */
sq_status sq_store_delete(sq_store *store, const char *uri);

/* Abort every unfinished multipart upload under `uri` treated as a directory:
 * the parts a killed process left behind (a job calls it for its state and
 * output when it starts, so a resumed job leaves none billed). `*n_aborted`
 * counts them; local URIs have none. Call it only when no other process is
 * uploading under `uri`. */
sq_status sq_store_abort_uploads(sq_store *store, const char *uri, int *n_aborted);

#endif
