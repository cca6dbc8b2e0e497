/* s3_client.h: S3 requests over libcurl, signed with SigV4, with retries.
 *
 * Internal to store/: the rest of shardq uses store.h. One sq_s3 holds the
 * endpoint, addressing style, region, credentials and retry policy; requests
 * are safe to make from several threads at once (each thread keeps its own
 * curl handle, so connections are reused).
 *
 * Every request is retried, with exponential backoff and jitter, on HTTP 5xx,
 * 429, SlowDown / RequestTimeout errors, curl timeouts, connection resets and
 * truncated bodies, and on a download whose digest does not match.
 * Deadlines: an attempt that moves fewer than low_speed_bytes per second for
 * stall_timeout_s seconds is stalled, and one not done within
 * request_timeout_s plus its size at low_speed_bytes/s (the size from the body
 * sent or the Content-Length received) has passed its deadline; both are
 * retried like the other transient failures, so a server that trickles bytes
 * ends in an error naming the URI after max_retries retries. A request marked
 * server_side_work is held to its deadline only.
 * Integrity: uploads carry Content-MD5 and the returned ETag must equal the
 * MD5 we sent (per part for multipart); every object also carries its SHA-256
 * as user metadata (x-amz-meta-shardq-sha256), so a whole-object GET is
 * checked against it, multipart objects included, and against the ETag when
 * the ETag is a plain MD5. Messages name the method
 * and the s3:// URI, never a credential. */
#ifndef SQ_STORE_S3_CLIENT_H
#define SQ_STORE_S3_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef struct {
    char *endpoint;   /* "http://127.0.0.1:9000", no trailing '/' */
    char *host;       /* "127.0.0.1:9000" */
    char *scheme;     /* "http" or "https" */
    char *region;
    int path_style;
    char *access_key; /* NULL: unsigned (anonymous) requests */
    char *secret_key;
    char *session_token;
    int max_retries;
    int backoff_ms;   /* first backoff step; doubles each retry, capped at 10 s */
    long stall_timeout_s;   /* stalled: under low_speed_bytes/s for this long (also the connect timeout) */
    long low_speed_bytes;   /* the slowest transfer rate accepted, bytes per second */
    long request_timeout_s; /* deadline of one attempt: this plus its bytes at low_speed_bytes/s */
    size_t part_size;
    int parallel_parts;
} sq_s3;

typedef struct {
    const char *method;
    const char *bucket;
    const char *key;      /* raw (not encoded); "" for bucket-level requests */
    const char *query;    /* canonical query (sorted, encoded) or NULL */
    const void *body;     /* request body or NULL */
    size_t body_len;
    uint64_t range_begin; /* with range_len > 0: a ranged GET */
    uint64_t range_len;
    const char *if_match; /* If-Match header or NULL */
    const char *sha256;   /* PUT / CreateMultipartUpload: the whole object's SHA-256, kept as
                             user metadata (x-amz-meta-shardq-sha256) and checked on every GET */
    FILE *sink;           /* GET: body goes here instead of memory */
    const char *copy_source; /* PUT: CopyObject from this "/bucket/key" (key URI-encoded) */
    int server_side_work; /* the server works before it answers (CopyObject, CompleteMultipartUpload) and may
                             send only keep-alive whitespace meanwhile: held to the deadline, not the stall check */
} sq_s3_request;

typedef struct {
    long status;          /* of the last attempt; kept after a failure */
    char error_code[64];  /* S3 error code of the last attempt ("NoSuchUpload"), "" if none; kept after a failure */
    int attempts;         /* attempts made; kept after a failure */
    char *body; /* NUL-terminated; NULL when written to a sink */
    size_t body_len;
    char etag[128];       /* without quotes */
    char sha256[65];      /* x-amz-meta-shardq-sha256 of the object, "" if absent */
    int64_t content_length;
} sq_s3_response;

void sq_s3_response_free(sq_s3_response *resp);

/* Perform with retries. A non-2xx final answer is a failure whose message
 * names `method s3://bucket/key`, the HTTP status and the S3 error code; after
 * a failure `resp` holds no body, only status, error_code and attempts. */
sq_status sq_s3_perform(const sq_s3 *s3, const sq_s3_request *req, sq_s3_response *resp);

/* The URL and Host header for bucket/key under the client's addressing style
 * (path-style for bucket names with dots; exposed for tests; caller frees all three). `canonical_uri` receives the encoded path. */
sq_status sq_s3_url(const sq_s3 *s3, const char *bucket, const char *key, const char *query, char **url,
                    char **host, char **canonical_uri);

/* Free this thread's cached curl handle (call before a worker thread exits). */
void sq_s3_thread_cleanup(void);

/* MD5 of a buffer, as lowercase hex and as base64 (for Content-MD5). */
void sq_md5_hex_b64(const void *data, size_t len, char hex[33], char b64[25]);

/* The text of the first <tag>...</tag> at or after `from` (XML entities decoded;
 * caller frees), NULL if absent. `*next` (optional) points past it. */
char *sq_xml_tag(const char *from, const char *tag, const char **next);

/* Simple operations on one object. */
sq_status sq_s3_put_object(const sq_s3 *s3, const char *bucket, const char *key, const void *data, size_t len);
/* Multipart upload of `size` bytes from `data`, or from file descriptor `fd` when data is NULL. */
sq_status sq_s3_multipart_put(const sq_s3 *s3, const char *bucket, const char *key, const void *data, int fd,
                              uint64_t size);
/* Abort every unfinished multipart upload whose key starts with `prefix` (ListMultipartUploads,
 * all pages); `*n_aborted` counts them. */
sq_status sq_s3_abort_uploads(const sq_s3 *s3, const char *bucket, const char *prefix, int *n_aborted);

#endif
