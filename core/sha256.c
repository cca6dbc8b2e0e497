/* sha256.c: SHA-256 through OpenSSL's EVP interface (a well-kept implementation,
 * already linked for libcurl's TLS), returned as lowercase hex. */
#include "core/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct sq_sha256_ctx {
    EVP_MD_CTX *md;
};

static void to_hex(const unsigned char *digest, char hex[SQ_SHA256_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[SQ_SHA256_HEX_LEN] = '\0';
}

sq_status sq_sha256_begin(sq_sha256_ctx **out)
{
    sq_sha256_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return sq_fail(SQ_ERR_NOMEM, "sha256: out of memory");
    ctx->md = EVP_MD_CTX_new();
    if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx->md);
        free(ctx);
        return sq_fail(SQ_ERR_NOMEM, "sha256: cannot initialise OpenSSL digest");
    }
    *out = ctx;
    return SQ_OK;
}

void sq_sha256_update(sq_sha256_ctx *ctx, const void *data, size_t len)
{
    EVP_DigestUpdate(ctx->md, data, len);
}

void sq_sha256_end(sq_sha256_ctx *ctx, char hex[SQ_SHA256_HEX_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_DigestFinal_ex(ctx->md, digest, &digest_len);
    to_hex(digest, hex);
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

void sq_sha256_hex(const void *data, size_t len, char hex[SQ_SHA256_HEX_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_Digest(data, len, digest, &digest_len, EVP_sha256(), NULL);
    to_hex(digest, hex);
}

sq_status sq_sha256_file(const char *path, char hex[SQ_SHA256_HEX_LEN + 1])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sq_fail(SQ_ERR_IO, "%s: cannot open for hashing: %s", path, strerror(errno));
    sq_sha256_ctx *ctx;
    sq_status st = sq_sha256_begin(&ctx);
    if (st != SQ_OK) {
        fclose(f);
        return st;
    }
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sq_sha256_update(ctx, buf, n);
    int failed = ferror(f);
    fclose(f);
    sq_sha256_end(ctx, hex);
    if (failed)
        return sq_fail(SQ_ERR_IO, "%s: read error while hashing", path);
    return SQ_OK;
}
