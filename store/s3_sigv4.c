/* s3_sigv4.c: AWS Signature Version 4 (see s3_sigv4.h), with OpenSSL HMAC and SHA-256. */
#include "store/s3_sigv4.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/sha256.h"

char *sq_s3_uri_encode(const char *s, int keep_slash)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            out[o++] = (char)c;
        } else {
            o += (size_t)sprintf(out + o, "%%%02X", c);
        }
    }
    out[o] = '\0';
    return out;
}

static int header_cmp(const void *a, const void *b)
{
    return strcmp(((const sq_http_header *)a)->name, ((const sq_http_header *)b)->name);
}

/* Sorted copy of the headers; the names joined by ';' into `signed_names`. */
static sq_http_header *sorted_headers(const sq_http_header *headers, int n, char **signed_names)
{
    sq_http_header *sorted = malloc(sizeof(*sorted) * (size_t)(n > 0 ? n : 1));
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(headers[i].name) + 1;
    *signed_names = malloc(len);
    if (!sorted || !*signed_names) {
        free(sorted);
        free(*signed_names);
        *signed_names = NULL;
        return NULL;
    }
    memcpy(sorted, headers, sizeof(*sorted) * (size_t)n);
    qsort(sorted, (size_t)n, sizeof(*sorted), header_cmp);
    (*signed_names)[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(*signed_names, ";");
        strcat(*signed_names, sorted[i].name);
    }
    return sorted;
}

/* Header value with leading/trailing spaces removed and inner runs of spaces collapsed. */
static size_t append_trimmed(char *dst, const char *v)
{
    size_t o = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    int space = 0;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = 1;
            continue;
        }
        if (space && o)
            dst[o++] = ' ';
        space = 0;
        dst[o++] = *v;
    }
    return o;
}

char *sq_sigv4_canonical_request(const char *method, const char *canonical_uri, const char *canonical_query,
                                 const sq_http_header *headers, int n_headers, const char *payload_sha256)
{
    char *signed_names = NULL;
    sq_http_header *sorted = sorted_headers(headers, n_headers, &signed_names);
    if (!sorted)
        return NULL;
    size_t len = strlen(method) + strlen(canonical_uri) + strlen(canonical_query) + strlen(signed_names) +
                 strlen(payload_sha256) + 16;
    for (int i = 0; i < n_headers; i++)
        len += strlen(sorted[i].name) + strlen(sorted[i].value) + 2;
    char *out = malloc(len);
    if (out) {
        size_t o = (size_t)sprintf(out, "%s\n%s\n%s\n", method, canonical_uri, canonical_query);
        for (int i = 0; i < n_headers; i++) {
            o += (size_t)sprintf(out + o, "%s:", sorted[i].name);
            o += append_trimmed(out + o, sorted[i].value);
            out[o++] = '\n';
        }
        sprintf(out + o, "\n%s\n%s", signed_names, payload_sha256);
    }
    free(sorted);
    free(signed_names);
    return out;
}

/* HMAC-SHA256; 0 when OpenSSL fails. */
static int hmac(const void *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int out_len = 32;
    return HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &out_len) != NULL &&
           out_len == 32;
}

char *sq_sigv4_authorization(const char *method, const char *canonical_uri, const char *canonical_query,
                             const sq_http_header *headers, int n_headers, const char *payload_sha256,
                             const char *amz_date, const char *region, const char *access_key,
                             const char *secret_key)
{
    char *canonical = sq_sigv4_canonical_request(method, canonical_uri, canonical_query, headers, n_headers,
                                                 payload_sha256);
    if (!canonical)
        return NULL;
    char canonical_hash[SQ_SHA256_HEX_LEN + 1];
    sq_sha256_hex(canonical, strlen(canonical), canonical_hash);
    OPENSSL_cleanse(canonical, strlen(canonical)); /* holds the session token, when there is one */
    free(canonical);

    char date[9];
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    char scope[128];
    snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, region);
    char to_sign[256];
    snprintf(to_sign, sizeof(to_sign), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, canonical_hash);

    size_t klen = strlen(secret_key) + 5;
    char *k_secret = malloc(klen);
    if (!k_secret)
        return NULL;
    snprintf(k_secret, klen, "AWS4%s", secret_key);
    /* The signing key chain: every intermediate key is as secret as the secret itself. */
    unsigned char k_date[32], k_region[32], k_service[32], k_signing[32], sig[32];
    int signed_ok = hmac(k_secret, strlen(k_secret), date, k_date) && hmac(k_date, 32, region, k_region) &&
                    hmac(k_region, 32, "s3", k_service) && hmac(k_service, 32, "aws4_request", k_signing) &&
                    hmac(k_signing, 32, to_sign, sig);
    OPENSSL_cleanse(k_secret, klen);
    free(k_secret);
    OPENSSL_cleanse(k_date, sizeof(k_date));
    OPENSSL_cleanse(k_region, sizeof(k_region));
    OPENSSL_cleanse(k_service, sizeof(k_service));
    OPENSSL_cleanse(k_signing, sizeof(k_signing));
    if (!signed_ok)
        return NULL;

    char sig_hex[65];
    for (int i = 0; i < 32; i++)
        sprintf(sig_hex + 2 * i, "%02x", sig[i]);

    char *signed_names = NULL;
    sq_http_header *sorted = sorted_headers(headers, n_headers, &signed_names);
    if (!sorted)
        return NULL;
    free(sorted);
    size_t len = strlen(access_key) + strlen(scope) + strlen(signed_names) + 128;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "AWS4-HMAC-SHA256 Credential=%s/%s,SignedHeaders=%s,Signature=%s", access_key, scope,
                 signed_names, sig_hex);
    free(signed_names);
    return out;
}
