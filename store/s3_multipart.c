/* s3_multipart.c: multipart upload of a large object, parts sent by parallel threads.
 *
 * CreateMultipartUpload, then `parallel_parts` threads take parts in turn
 * (each part read from memory or with pread from a file, sent with
 * Content-MD5, its ETag checked against the part's MD5), then
 * CompleteMultipartUpload, whose ETag must be MD5(concatenated part MD5s)-N.
 * A completion whose answer was lost and whose retry is answered NoSuchUpload
 * succeeded the first time when the object has the upload's size, ETag and
 * SHA-256 (checked with a HEAD). The whole object's SHA-256 goes in as user
 * metadata (see s3_client.h). Any failure aborts the upload so that no orphan
 * parts stay billed; uploads a killed process left behind are found with
 * ListMultipartUploads and aborted by sq_s3_abort_uploads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/log.h"
#include "core/sha256.h"
#include "store/s3_client.h"
#include "store/s3_sigv4.h"

typedef struct {
    const sq_s3 *s3;
    const char *bucket, *key, *upload_id;
    const unsigned char *data;
    int fd;
    uint64_t size;
    int n_parts;
    char (*part_md5)[33];
    pthread_mutex_t lock;
    int next_part;
    sq_status status;
    char message[1024];
} upload;

static sq_status send_part(upload *u, int part, unsigned char *scratch)
{
    uint64_t begin = (uint64_t)part * u->s3->part_size;
    size_t len = (size_t)(u->size - begin < u->s3->part_size ? u->size - begin : u->s3->part_size);
    const unsigned char *body = u->data ? u->data + begin : scratch;
    if (!u->data) {
        size_t got = 0;
        while (got < len) {
            ssize_t r = pread(u->fd, scratch + got, len - got, (off_t)(begin + got));
            if (r <= 0)
                return sq_fail(SQ_ERR_IO, "s3://%s/%s: reading part %d of the source file failed", u->bucket,
                               u->key, part + 1);
            got += (size_t)r;
        }
    }
    char b64[25];
    sq_md5_hex_b64(body, len, u->part_md5[part], b64);
    char query[600];
    char *enc_id = sq_s3_uri_encode(u->upload_id, 0);
    if (!enc_id)
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", u->bucket, u->key);
    snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", part + 1, enc_id);
    free(enc_id);
    sq_s3_request req = {.method = "PUT", .bucket = u->bucket, .key = u->key, .query = query, .body = body,
                         .body_len = len};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(u->s3, &req, &resp);
    if (st != SQ_OK)
        return sq_fail_context(st, "part %d of %d", part + 1, u->n_parts);
    sq_s3_response_free(&resp);
    return SQ_OK;
}

static void *part_worker(void *arg)
{
    upload *u = arg;
    unsigned char *scratch = u->data ? NULL : malloc(u->s3->part_size);
    for (;;) {
        pthread_mutex_lock(&u->lock);
        int part = u->status == SQ_OK ? u->next_part++ : u->n_parts;
        pthread_mutex_unlock(&u->lock);
        if (part >= u->n_parts)
            break;
        sq_status st = (!u->data && !scratch) ? sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: no memory for a part buffer",
                                                        u->bucket, u->key)
                                              : send_part(u, part, scratch);
        if (st != SQ_OK) {
            pthread_mutex_lock(&u->lock);
            if (u->status == SQ_OK) {
                u->status = st;
                snprintf(u->message, sizeof(u->message), "%s", sq_last_error());
            }
            pthread_mutex_unlock(&u->lock);
        }
    }
    free(scratch);
    sq_s3_thread_cleanup();
    return NULL;
}

static void abort_upload(const sq_s3 *s3, const char *bucket, const char *key, const char *query)
{
    sq_s3_request req = {.method = "DELETE", .bucket = bucket, .key = key, .query = query};
    sq_s3_response resp;
    if (sq_s3_perform(s3, &req, &resp) == SQ_OK)
        sq_s3_response_free(&resp);
}

static char *complete_body(const upload *u)
{
    size_t cap = 64 + (size_t)u->n_parts * 96;
    char *xml = malloc(cap);
    if (!xml)
        return NULL;
    size_t o = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
    for (int i = 0; i < u->n_parts; i++)
        o += (size_t)snprintf(xml + o, cap - o, "<Part><PartNumber>%d</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
                              u->part_md5[i]);
    snprintf(xml + o, cap - o, "</CompleteMultipartUpload>");
    return xml;
}

/* The ETag S3 gives a completed multipart object: MD5 of the binary part MD5s, "-N"; 0 when out of memory. */
static int expected_etag(const upload *u, char out[48])
{
    unsigned char *bin = malloc((size_t)u->n_parts * 16);
    unsigned char md[16];
    unsigned int n = 16;
    if (!bin)
        return 0;
    for (int i = 0; i < u->n_parts; i++)
        for (int j = 0; j < 16; j++)
            sscanf(u->part_md5[i] + 2 * j, "%2hhx", &bin[i * 16 + j]);
    EVP_Digest(bin, (size_t)u->n_parts * 16, md, &n, EVP_md5(), NULL);
    free(bin);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    sprintf(out + 32, "-%d", u->n_parts);
    return 1;
}

/* The object at bucket/key after a CompleteMultipartUpload whose retry was answered
 * NoSuchUpload: the first attempt completed it when the object there has this upload's
 * size, multipart ETag and SHA-256; anything else is an error. */
static sq_status check_completed(const upload *u, const char *want_etag, const char *sha)
{
    sq_s3_request head = {.method = "HEAD", .bucket = u->bucket, .key = u->key};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(u->s3, &head, &resp);
    if (st != SQ_OK)
        return sq_fail_context(st, "CompleteMultipartUpload was answered NoSuchUpload on a retry; checking the object");
    int same = resp.content_length >= 0 && (uint64_t)resp.content_length == u->size &&
               !strcmp(resp.etag, want_etag) && !strcmp(resp.sha256, sha);
    if (!same)
        st = sq_fail(SQ_ERR_MISMATCH,
                     "POST s3://%s/%s: CompleteMultipartUpload was answered NoSuchUpload on a retry and the object "
                     "there is not this upload (size %lld, ETag %s; expected size %llu, ETag %s)",
                     u->bucket, u->key, (long long)resp.content_length, resp.etag[0] ? resp.etag : "none",
                     (unsigned long long)u->size, want_etag);
    else
        sq_log_info("s3: s3://%s/%s: the first CompleteMultipartUpload succeeded (the retry found no upload; "
                    "size and ETag %s match)", u->bucket, u->key, want_etag);
    sq_s3_response_free(&resp);
    return st;
}

/* CompleteMultipartUpload, its answer's ETag checked against the parts' MD5s. A
 * completion lost in transit and retried is answered NoSuchUpload: see check_completed. */
static sq_status complete_upload(const upload *u, const char *query, const char *sha)
{
    char want[48];
    if (!expected_etag(u, want))
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", u->bucket, u->key);
    char *xml = complete_body(u);
    if (!xml)
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", u->bucket, u->key);
    sq_s3_request done = {.method = "POST", .bucket = u->bucket, .key = u->key, .query = query, .body = xml,
                          .body_len = strlen(xml), .server_side_work = 1};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(u->s3, &done, &resp);
    free(xml);
    if (st == SQ_ERR_NOT_FOUND && resp.attempts > 1 && !strcmp(resp.error_code, "NoSuchUpload")) {
        sq_clear_error();
        return check_completed(u, want, sha);
    }
    if (st != SQ_OK)
        return st;
    char *err = sq_xml_tag(resp.body, "Code", NULL);
    char *etag = sq_xml_tag(resp.body, "ETag", NULL);
    char got[64] = "";
    size_t o = 0;
    for (size_t i = 0; etag && etag[i] && o + 1 < sizeof(got); i++)
        if (etag[i] != '"')
            got[o++] = etag[i];
    got[o] = '\0';
    if (err)
        st = sq_fail(SQ_ERR_NET, "POST s3://%s/%s: CompleteMultipartUpload failed: %s", u->bucket, u->key, err);
    else if (strcmp(got, want))
        st = sq_fail(SQ_ERR_MISMATCH, "s3://%s/%s: multipart ETag %s, expected %s from the parts' MD5s", u->bucket,
                     u->key, got, want);
    free(err);
    free(etag);
    sq_s3_response_free(&resp);
    return st;
}

/* SHA-256 of the whole object (memory, or the file read in 1 MiB blocks). */
static sq_status whole_sha256(const unsigned char *data, int fd, uint64_t size, char hex[SQ_SHA256_HEX_LEN + 1],
                              const char *bucket, const char *key)
{
    if (data) {
        sq_sha256_hex(data, size, hex);
        return SQ_OK;
    }
    sq_sha256_ctx *ctx;
    SQ_TRY(sq_sha256_begin(&ctx));
    enum { BLOCK = 1 << 20 };
    unsigned char *buf = malloc(BLOCK);
    sq_status st = buf ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
    for (uint64_t off = 0; st == SQ_OK && off < size;) {
        ssize_t r = pread(fd, buf, size - off < BLOCK ? (size_t)(size - off) : BLOCK, (off_t)off);
        if (r <= 0)
            st = sq_fail(SQ_ERR_IO, "s3://%s/%s: reading the source file at %llu failed", bucket, key,
                         (unsigned long long)off);
        else
            sq_sha256_update(ctx, buf, (size_t)r), off += (uint64_t)r;
    }
    sq_sha256_end(ctx, hex);
    free(buf);
    return st;
}

sq_status sq_s3_multipart_put(const sq_s3 *s3, const char *bucket, const char *key, const void *data, int fd,
                              uint64_t size)
{
    if (s3->part_size < 5u * 1024 * 1024)
        return sq_fail(SQ_ERR_ARG, "s3://%s/%s: part size %zu is below S3's 5 MiB minimum", bucket, key,
                       s3->part_size);
    uint64_t n_parts = (size + s3->part_size - 1) / s3->part_size;
    if (n_parts == 0 || n_parts > 10000)
        return sq_fail(SQ_ERR_ARG, "s3://%s/%s: %llu bytes need %llu parts (1 to 10000 allowed); raise part_size_mb",
                       bucket, key, (unsigned long long)size, (unsigned long long)n_parts);

    char sha[SQ_SHA256_HEX_LEN + 1];
    SQ_TRY(whole_sha256(data, fd, size, sha, bucket, key));
    sq_s3_request create = {.method = "POST", .bucket = bucket, .key = key, .query = "uploads=", .sha256 = sha};
    sq_s3_response resp;
    SQ_TRY(sq_s3_perform(s3, &create, &resp));
    char *upload_id = sq_xml_tag(resp.body, "UploadId", NULL);
    sq_s3_response_free(&resp);
    if (!upload_id)
        return sq_fail(SQ_ERR_NET, "POST s3://%s/%s: CreateMultipartUpload answer has no UploadId", bucket, key);
    char *enc_id = sq_s3_uri_encode(upload_id, 0);
    char query[600];
    snprintf(query, sizeof(query), "uploadId=%s", enc_id ? enc_id : "");
    free(enc_id);

    upload u = {.s3 = s3, .bucket = bucket, .key = key, .upload_id = upload_id, .data = data, .fd = fd,
                .size = size, .n_parts = (int)n_parts, .status = SQ_OK};
    u.part_md5 = calloc(n_parts, sizeof(*u.part_md5));
    pthread_mutex_init(&u.lock, NULL);
    int n_threads = s3->parallel_parts < 1 ? 1 : s3->parallel_parts;
    if (n_threads > u.n_parts)
        n_threads = u.n_parts;
    pthread_t threads[64];
    if (n_threads > 64)
        n_threads = 64;
    int started = 0;
    if (!u.part_md5) {
        u.status = sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
        snprintf(u.message, sizeof(u.message), "%s", sq_last_error());
    }
    for (; u.part_md5 && started < n_threads; started++)
        if (pthread_create(&threads[started], NULL, part_worker, &u) != 0)
            break;
    if (u.part_md5 && started == 0)
        part_worker(&u);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&u.lock);

    sq_status st = u.status;
    if (st != SQ_OK)
        sq_fail(st, "%s", u.message);
    else
        st = complete_upload(&u, query, sha);
    if (st != SQ_OK) {
        char saved[1024];
        snprintf(saved, sizeof(saved), "%s", sq_last_error());
        abort_upload(s3, bucket, key, query);
        sq_fail(st, "multipart upload aborted: %s", saved);
    }
    free(u.part_md5);
    free(upload_id);
    return st;
}

/* One page of ListMultipartUploads: abort each upload listed, then say where the next page starts. */
static sq_status abort_listed(const sq_s3 *s3, const char *bucket, const char *body, int *n_aborted,
                              char **next_key, char **next_id)
{
    sq_status st = SQ_OK;
    char *entry;
    const char *next = body;
    while (st == SQ_OK && (entry = sq_xml_tag(next, "Upload", &next))) {
        char *key = sq_xml_tag(entry, "Key", NULL);
        char *id = sq_xml_tag(entry, "UploadId", NULL);
        char *enc_id = id ? sq_s3_uri_encode(id, 0) : NULL;
        size_t ql = enc_id ? strlen(enc_id) + 16 : 0;
        char *query = enc_id ? malloc(ql) : NULL;
        if (!key || !id)
            st = sq_fail(SQ_ERR_NET, "listing the uploads of s3://%s: an <Upload> without Key or UploadId", bucket);
        else if (!query)
            st = sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
        if (st == SQ_OK) {
            snprintf(query, ql, "uploadId=%s", enc_id);
            sq_s3_request req = {.method = "DELETE", .bucket = bucket, .key = key, .query = query};
            sq_s3_response resp;
            st = sq_s3_perform(s3, &req, &resp);
            if (st == SQ_OK) {
                sq_s3_response_free(&resp);
                sq_log_info("s3: aborted the unfinished multipart upload of s3://%s/%s", bucket, key);
                (*n_aborted)++;
            } else if (st == SQ_ERR_NOT_FOUND) { /* finished or aborted meanwhile */
                sq_clear_error();
                st = SQ_OK;
            }
        }
        free(query);
        free(enc_id);
        free(id);
        free(key);
        free(entry);
    }
    char *truncated = sq_xml_tag(body, "IsTruncated", NULL);
    if (st == SQ_OK && truncated && !strcmp(truncated, "true")) {
        *next_key = sq_xml_tag(body, "NextKeyMarker", NULL);
        *next_id = sq_xml_tag(body, "NextUploadIdMarker", NULL);
        if (!*next_key || !*next_key[0])
            st = sq_fail(SQ_ERR_NET, "listing the uploads of s3://%s: IsTruncated without a NextKeyMarker", bucket);
    }
    free(truncated);
    return st;
}

sq_status sq_s3_abort_uploads(const sq_s3 *s3, const char *bucket, const char *prefix, int *n_aborted)
{
    *n_aborted = 0;
    char *enc_prefix = sq_s3_uri_encode(prefix, 0);
    char *key_marker = NULL, *id_marker = NULL;
    sq_status st = enc_prefix ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, prefix);
    for (int page = 0; st == SQ_OK; page++) {
        char *enc_key = key_marker ? sq_s3_uri_encode(key_marker, 0) : NULL;
        char *enc_id = id_marker ? sq_s3_uri_encode(id_marker, 0) : NULL;
        size_t ql = strlen(enc_prefix) + (enc_key ? strlen(enc_key) : 0) + (enc_id ? strlen(enc_id) : 0) + 64;
        char *query = malloc(ql);
        if (!query || (key_marker && !enc_key) || (id_marker && !enc_id))
            st = sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, prefix);
        else if (key_marker)
            snprintf(query, ql, "key-marker=%s&prefix=%s&upload-id-marker=%s&uploads=", enc_key, enc_prefix,
                     enc_id ? enc_id : "");
        else
            snprintf(query, ql, "prefix=%s&uploads=", enc_prefix);
        free(enc_key);
        free(enc_id);
        free(key_marker);
        free(id_marker);
        key_marker = id_marker = NULL;
        sq_s3_response resp;
        if (st == SQ_OK) {
            sq_s3_request req = {.method = "GET", .bucket = bucket, .key = "", .query = query};
            st = sq_s3_perform(s3, &req, &resp);
        }
        free(query);
        if (st != SQ_OK)
            break;
        st = abort_listed(s3, bucket, resp.body ? resp.body : "", n_aborted, &key_marker, &id_marker);
        sq_s3_response_free(&resp);
        if (!key_marker)
            break;
        if (page > 100000)
            st = sq_fail(SQ_ERR_NET, "listing the uploads of s3://%s/%s: too many pages", bucket, prefix);
    }
    free(key_marker);
    free(id_marker);
    free(enc_prefix);
    return st;
}
