/* sha256.h: SHA-256 of buffers and files (OpenSSL's EVP), as lowercase hex. */
#ifndef SQ_SHA256_H
#define SQ_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define SQ_SHA256_HEX_LEN 64

/* hex must hold SQ_SHA256_HEX_LEN + 1 bytes. */
void sq_sha256_hex(const void *data, size_t len, char hex[SQ_SHA256_HEX_LEN + 1]);

/* Digest of a whole file, streamed. */
sq_status sq_sha256_file(const char *path, char hex[SQ_SHA256_HEX_LEN + 1]);

/* Incremental hashing for streamed bodies (e.g. downloads). */
typedef struct sq_sha256_ctx sq_sha256_ctx;
sq_status sq_sha256_begin(sq_sha256_ctx **ctx);
void sq_sha256_update(sq_sha256_ctx *ctx, const void *data, size_t len);
void sq_sha256_end(sq_sha256_ctx *ctx, char hex[SQ_SHA256_HEX_LEN + 1]); /* frees ctx */

#endif
