/* s3_multipart.c: multipart upload of a large object, parts sent by parallel threads.
 *
 * CreateMultipartUpload, then `parallel_parts` threads take parts in turn
 * (each part read from memory or with pread from a file, sent with
 * Content-MD5, its ETag checked against the part's MD5), then
 * CompleteMultipartUpload, whose ETag must be MD5(concatenated part MD5s)-N.
 * The whole object's SHA-256 goes in as user metadata (see s3_client.h).
 * Any failure aborts the upload so that no orphan parts stay billed. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

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

/* The ETag S3 gives a completed multipart object: MD5 of the binary part MD5s, "-N". */
static void expected_etag(const upload *u, char out[48])
{
    unsigned char *bin = malloc((size_t)u->n_parts * 16);
    unsigned char md[16];
    unsigned int n = 16;
    if (!bin) {
        out[0] = '\0';
        return;
    }
    for (int i = 0; i < u->n_parts; i++)
        for (int j = 0; j < 16; j++)
            sscanf(u->part_md5[i] + 2 * j, "%2hhx", &bin[i * 16 + j]);
    EVP_Digest(bin, (size_t)u->n_parts * 16, md, &n, EVP_md5(), NULL);
    free(bin);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    sprintf(out + 32, "-%d", u->n_parts);
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
    if (st != SQ_OK) {
        sq_fail(st, "%s", u.message);
    } else {
        char *xml = complete_body(&u);
        sq_s3_request done = {.method = "POST", .bucket = bucket, .key = key, .query = query, .body = xml,
                              .body_len = xml ? strlen(xml) : 0};
        st = xml ? sq_s3_perform(s3, &done, &resp) : sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
        free(xml);
        if (st == SQ_OK) {
            char *err = sq_xml_tag(resp.body, "Code", NULL);
            char *etag = sq_xml_tag(resp.body, "ETag", NULL);
            char want[48];
            expected_etag(&u, want);
            char got[64] = "";
            size_t o = 0;
            for (size_t i = 0; etag && etag[i] && o + 1 < sizeof(got); i++)
                if (etag[i] != '"')
                    got[o++] = etag[i];
            got[o] = '\0';
            if (err)
                st = sq_fail(SQ_ERR_NET, "POST s3://%s/%s: CompleteMultipartUpload failed: %s", bucket, key, err);
            else if (strcmp(got, want))
                st = sq_fail(SQ_ERR_MISMATCH, "s3://%s/%s: multipart ETag %s, expected %s from the parts' MD5s",
                             bucket, key, got, want);
            free(err);
            free(etag);
            sq_s3_response_free(&resp);
        }
    }
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
