/* s3_sigv4.h: AWS Signature Version 4 for S3 requests (header-based).
 *
 * The signature covers the method, the URI-encoded path, the canonical query
 * string, the signed headers (lowercase names, sorted, values trimmed) and the
 * hex SHA-256 of the payload (the x-amz-content-sha256 header). The signing key
 * is derived from the secret by HMAC-SHA256 over date, region, "s3" and
 * "aws4_request". Callers sign a session token by including
 * x-amz-security-token among the headers. */
#ifndef SQ_STORE_S3_SIGV4_H
#define SQ_STORE_S3_SIGV4_H

#include <stddef.h>

#include "core/status.h"

typedef struct {
    const char *name;  /* lowercase */
    const char *value;
} sq_http_header;

/* The Authorization header value ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=...,Signature=...") as a new string (caller frees).
 * `amz_date` is "YYYYMMDDTHHMMSSZ"; `canonical_uri` is already encoded
 * (see sq_s3_uri_encode); `canonical_query` is sorted and encoded ("" if none).
 * NULL when out of memory or OpenSSL fails. The derived keys and the canonical
 * request (which holds any session token) are wiped before it returns. */
char *sq_sigv4_authorization(const char *method, const char *canonical_uri, const char *canonical_query,
                             const sq_http_header *headers, int n_headers, const char *payload_sha256,
                             const char *amz_date, const char *region, const char *access_key,
                             const char *secret_key);

/* The canonical request (exposed for tests; caller frees). */
char *sq_sigv4_canonical_request(const char *method, const char *canonical_uri, const char *canonical_query,
                                 const sq_http_header *headers, int n_headers, const char *payload_sha256);

/* Percent-encode `s` as SigV4 requires: unreserved A-Z a-z 0-9 - . _ ~ kept,
 * '/' kept when `keep_slash`, everything else %XX uppercase (caller frees). */
char *sq_s3_uri_encode(const char *s, int keep_slash);

#endif
