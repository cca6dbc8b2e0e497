/* uri.h: the three kinds of location shardq reads and writes.
 *
 *   /abs/or/relative/path      a local path
 *   file:///abs/path           a local path (file:// prefix removed)
 *   s3://bucket/key/prefix     an S3 object or prefix
 *
 * Parsing checks the bucket name (3-63 chars of a-z 0-9 . -) and rejects empty
 * URIs and unknown schemes; every error message names the URI. */
#ifndef SQ_STORE_URI_H
#define SQ_STORE_URI_H

#include "core/status.h"

typedef enum { SQ_URI_LOCAL, SQ_URI_S3 } sq_uri_kind;

typedef struct {
    sq_uri_kind kind;
    char *path;   /* local: the filesystem path */
    char *bucket; /* s3: the bucket */
    char *key;    /* s3: the key, without a leading '/', possibly "" */
} sq_uri;

sq_status sq_uri_parse(sq_uri *out, const char *text);
void sq_uri_free(sq_uri *uri);

/* base + "/" + name with exactly one '/' between them (caller frees). */
char *sq_uri_join(const char *base, const char *name);

#endif
