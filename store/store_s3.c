/* store_s3.c: the S3 backend of the storage API (s3:// URIs), over the S3 client (s3_client.h).
 *
 * Its settings come from the spec's storage block or the environment (see
 * store.h); objects larger than the part size go up as multipart uploads;
 * listings page through ListObjectsV2. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/fileio.h"
#include "store/s3_sigv4.h"
#include "store/store_backend.h"

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* The integer in variable `name`: `fallback` when unset; an error naming the variable
 * when it is not a whole decimal integer from `lo` to `hi` (`what` says what it sets). */
static sq_status env_long(const char *name, long lo, long hi, long fallback, const char *what, long *out)
{
    const char *v = env(name);
    *out = fallback;
    if (!v)
        return SQ_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return sq_fail(SQ_ERR_ARG, "%s='%s': must be an integer from %ld to %ld (%s)", name, v, lo, hi, what);
    *out = x;
    return SQ_OK;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void sq_s3_release(sq_s3 *s)
{
    free(s->endpoint);
    free(s->host);
    free(s->scheme);
    free(s->region);
    free(s->access_key);
    free_secret(s->secret_key);
    free_secret(s->session_token);
    memset(s, 0, sizeof(*s));
}

/* A spec value when set (`spec_value` != `unset`), else the variable `name`'s (see env_long). */
static sq_status setting(long spec_value, long unset, const char *name, long lo, long hi, long fallback,
                         const char *what, long *out)
{
    *out = spec_value;
    return spec_value != unset ? SQ_OK : env_long(name, lo, hi, fallback, what, out);
}

sq_status sq_s3_configure(sq_s3 *s, const sq_storage_options *options)
{
    static const sq_storage_options unset = SQ_STORAGE_OPTIONS_UNSET;
    const sq_storage_options *o = options ? options : &unset;
    const char *region = o->region ? o->region : env("AWS_REGION");
    if (!region)
        region = env("AWS_DEFAULT_REGION");
    s->region = strdup(region ? region : "us-east-1");
    const char *endpoint = o->endpoint ? o->endpoint : env("AWS_ENDPOINT_URL_S3");
    if (!endpoint)
        endpoint = env("AWS_ENDPOINT_URL");
    long path_style, part_mb, max_retries, parallel_parts, backoff_ms;
    SQ_TRY(setting(o->path_style, -1, "SHARDQ_S3_PATH_STYLE", 0, 1, endpoint ? 1 : 0, "1 path-style, 0 virtual-host",
                   &path_style));
    SQ_TRY(setting(o->part_size_mb, 0, "SHARDQ_S3_PART_SIZE_MB", 5, 5120, 8, "multipart part size in MB",
                   &part_mb));
    SQ_TRY(setting(o->max_retries, -1, "SHARDQ_S3_MAX_RETRIES", 0, 20, 5, "retries of a failed request",
                   &max_retries));
    SQ_TRY(env_long("SHARDQ_S3_PARALLEL_PARTS", 1, 64, 4, "parts uploaded at once", &parallel_parts));
    SQ_TRY(env_long("SHARDQ_S3_BACKOFF_MS", 0, 60000, 100, "first retry backoff in ms", &backoff_ms));
    SQ_TRY(setting(o->stall_timeout_s, 0, "SHARDQ_S3_STALL_TIMEOUT_S", 1, 86400, 30,
                   "seconds under the low speed before a request is stalled", &s->stall_timeout_s));
    SQ_TRY(setting(o->low_speed_bytes, 0, "SHARDQ_S3_LOW_SPEED_BYTES", 1, 1L << 30, 1024,
                   "slowest accepted transfer rate in bytes/s", &s->low_speed_bytes));
    SQ_TRY(setting(o->request_timeout_s, 0, "SHARDQ_S3_REQUEST_TIMEOUT_S", 1, 86400, 300,
                   "deadline of one request in seconds, plus its bytes at the low speed", &s->request_timeout_s));
    s->path_style = (int)path_style;
    s->part_size = (size_t)part_mb * 1024 * 1024;
    s->max_retries = (int)max_retries;
    s->parallel_parts = (int)parallel_parts;
    s->backoff_ms = (int)backoff_ms;
    char default_endpoint[128];
    if (!endpoint) {
        snprintf(default_endpoint, sizeof(default_endpoint), "https://s3.%s.amazonaws.com", s->region);
        endpoint = default_endpoint;
    }
    const char *sep = strstr(endpoint, "://");
    if (!sep || (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) || !sep[3])
        return sq_fail(SQ_ERR_ARG, "storage endpoint '%s': must be http://host[:port] or https://host[:port]",
                       endpoint);
    s->scheme = strndup(endpoint, (size_t)(sep - endpoint));
    s->host = strdup(sep + 3);
    if (s->host) {
        char *slash = strchr(s->host, '/');
        if (slash)
            *slash = '\0';
    }
    s->endpoint = s->scheme && s->host ? malloc(strlen(s->scheme) + strlen(s->host) + 4) : NULL;
    if (s->endpoint)
        sprintf(s->endpoint, "%s://%s", s->scheme, s->host);
    s->access_key = dup_or_null(env("AWS_ACCESS_KEY_ID"));
    s->secret_key = dup_or_null(env("AWS_SECRET_ACCESS_KEY"));
    s->session_token = dup_or_null(env("AWS_SESSION_TOKEN"));
    if (!s->region || !s->scheme || !s->host || !s->endpoint)
        return sq_fail(SQ_ERR_NOMEM, "storage: out of memory");
    if (s->access_key && !s->secret_key)
        return sq_fail(SQ_ERR_ARG, "storage: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    return SQ_OK;
}

static sq_status s3_get(const sq_s3 *s3, const sq_uri *u, uint64_t offset, uint64_t len, sq_s3_response *resp,
                        FILE *sink)
{
    sq_s3_request req = {.method = "GET", .bucket = u->bucket, .key = u->key, .range_begin = offset,
                         .range_len = len, .sink = sink};
    return sq_s3_perform(s3, &req, resp);
}

sq_status sq_s3_store_get(const sq_s3 *s3, const sq_uri *u, const char *uri, void **data, size_t *len)
{
    sq_s3_response resp;
    sq_status st = s3_get(s3, u, 0, 0, &resp, NULL);
    if (st == SQ_OK) {
        if (!resp.body)
            resp.body = calloc(1, 1);
        *data = resp.body;
        *len = resp.body_len;
        if (!resp.body)
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    }
    return st;
}

sq_status sq_s3_store_get_range(const sq_s3 *s3, const sq_uri *u, uint64_t offset, uint64_t len, void *dst)
{
    sq_s3_response resp;
    sq_status st = s3_get(s3, u, offset, len, &resp, NULL);
    if (st == SQ_OK) {
        memcpy(dst, resp.body, len);
        sq_s3_response_free(&resp);
    }
    return st;
}

sq_status sq_s3_store_get_file(const sq_s3 *s3, const sq_uri *u, const char *uri, const char *path)
{
    SQ_TRY(sq_store_make_parent_dirs(path));
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w+b");
    if (!f)
        return sq_fail(SQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    sq_s3_response resp;
    sq_status st = s3_get(s3, u, 0, 0, &resp, f);
    if (st == SQ_OK) {
        sq_s3_response_free(&resp);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
            st = sq_fail(SQ_ERR_IO, "%s: writing the download of %s failed: %s", path, uri, strerror(errno));
    }
    if (fclose(f) != 0 && st == SQ_OK)
        st = sq_fail(SQ_ERR_IO, "%s: writing the download of %s failed: %s", path, uri, strerror(errno));
    return sq_rename_into_place(tmp, path, st);
}

sq_status sq_s3_store_put(const sq_s3 *s3, const sq_uri *u, const char *uri, const void *data, size_t len)
{
    if (!u->key[0] || u->key[strlen(u->key) - 1] == '/')
        return sq_fail(SQ_ERR_ARG, "%s: an object URI needs a key that does not end in '/'", uri);
    if (len > s3->part_size)
        return sq_s3_multipart_put(s3, u->bucket, u->key, data, -1, len);
    return sq_s3_put_object(s3, u->bucket, u->key, data, len);
}

sq_status sq_s3_store_put_file(const sq_s3 *s3, const sq_uri *u, const char *uri, const char *local_path)
{
    uint64_t size = 0;
    sq_status st = sq_file_size(local_path, &size);
    if (st == SQ_OK && size > s3->part_size) {
        int fd = open(local_path, O_RDONLY);
        if (fd < 0) {
            st = sq_fail(SQ_ERR_IO, "%s: cannot open: %s", local_path, strerror(errno));
        } else {
            st = sq_s3_multipart_put(s3, u->bucket, u->key, NULL, fd, size);
            if (close(fd) != 0 && st == SQ_OK)
                st = sq_fail(SQ_ERR_IO, "%s: close failed: %s", local_path, strerror(errno));
        }
    } else if (st == SQ_OK) {
        char *buf;
        size_t len;
        st = sq_read_file(local_path, &buf, &len);
        if (st == SQ_OK) {
            st = sq_s3_store_put(s3, u, uri, buf, len);
            free(buf);
        }
    }
    return st;
}

sq_status sq_s3_store_head(const sq_s3 *s3, const sq_uri *u, const char *uri, sq_object_info *info)
{
    sq_s3_request req = {.method = "HEAD", .bucket = u->bucket, .key = u->key};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(s3, &req, &resp);
    if (st == SQ_OK) {
        if (resp.content_length < 0)
            st = sq_fail(SQ_ERR_NET, "HEAD %s: no Content-Length in the answer", uri);
        info->size = (uint64_t)(resp.content_length < 0 ? 0 : resp.content_length);
        snprintf(info->etag, sizeof(info->etag), "%s", resp.etag);
        snprintf(info->sha256, sizeof(info->sha256), "%s", resp.sha256);
        sq_s3_response_free(&resp);
    }
    return st;
}

/* The key prefix of `u` treated as a directory: its key with one '/' after it ("" stays ""). */
static char *directory_prefix(const sq_uri *u)
{
    size_t kl = strlen(u->key);
    char *prefix = malloc(kl + 2);
    if (!prefix)
        return NULL;
    strcpy(prefix, u->key);
    if (kl && prefix[kl - 1] != '/')
        strcat(prefix, "/");
    return prefix;
}

sq_status sq_s3_store_list(const sq_s3 *s3, const sq_uri *u, sq_object_list *out, int *cap)
{
    char *prefix = directory_prefix(u);
    if (!prefix)
        return sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
    size_t pl = strlen(prefix);
    char *enc_prefix = sq_s3_uri_encode(prefix, 0);
    char *token = NULL;
    sq_status st = enc_prefix ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
    for (int page = 0; st == SQ_OK; page++) {
        char *enc_token = token ? sq_s3_uri_encode(token, 0) : NULL;
        size_t ql = strlen(enc_prefix) + (enc_token ? strlen(enc_token) : 0) + 64;
        char *query = malloc(ql);
        if (!query) {
            free(enc_token);
            st = sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
            break;
        }
        if (enc_token)
            snprintf(query, ql, "continuation-token=%s&list-type=2&prefix=%s", enc_token, enc_prefix);
        else
            snprintf(query, ql, "list-type=2&prefix=%s", enc_prefix);
        free(enc_token);
        sq_s3_request req = {.method = "GET", .bucket = u->bucket, .key = "", .query = query};
        sq_s3_response resp;
        st = sq_s3_perform(s3, &req, &resp);
        free(query);
        if (st != SQ_OK)
            break;
        const char *p = resp.body ? resp.body : "";
        char *contents;
        const char *next = p;
        while (st == SQ_OK && (contents = sq_xml_tag(next, "Contents", &next))) {
            char *key = sq_xml_tag(contents, "Key", NULL);
            char *size = sq_xml_tag(contents, "Size", NULL);
            if (!key || !size || strncmp(key, prefix, pl))
                st = sq_fail(SQ_ERR_NET, "listing s3://%s/%s: malformed <Contents> entry", u->bucket, prefix);
            else if (key[pl])
                st = sq_object_list_add(out, cap, key + pl, strtoull(size, NULL, 10));
            free(key);
            free(size);
            free(contents);
        }
        char *truncated = sq_xml_tag(p, "IsTruncated", NULL);
        int more = truncated && !strcmp(truncated, "true");
        free(truncated);
        free(token);
        token = more ? sq_xml_tag(p, "NextContinuationToken", NULL) : NULL;
        sq_s3_response_free(&resp);
        if (st == SQ_OK && more && (!token || !token[0]))
            st = sq_fail(SQ_ERR_NET, "listing s3://%s/%s: the answer says IsTruncated but has no "
                         "NextContinuationToken, so the rest of the listing cannot be asked for", u->bucket, prefix);
        if (!token || st != SQ_OK)
            break;
        if (page > 100000)
            st = sq_fail(SQ_ERR_NET, "listing s3://%s/%s: too many pages", u->bucket, prefix);
    }
    free(token);
    free(enc_prefix);
    free(prefix);
    return st;
}

/* CopyObject; its answer can be an error inside a 200 response, so the body must be a CopyObjectResult. */
static sq_status s3_copy(const sq_s3 *s3, const sq_uri *src, const sq_uri *dst, const char *src_uri,
                         const char *dst_uri)
{
    char *key = sq_s3_uri_encode(src->key, 1);
    size_t len = key ? strlen(src->bucket) + strlen(key) + 3 : 0;
    char *source = key ? malloc(len) : NULL;
    if (!source) {
        free(key);
        return sq_fail(SQ_ERR_NOMEM, "copy %s: out of memory", src_uri);
    }
    snprintf(source, len, "/%s/%s", src->bucket, key);
    sq_s3_request req = {.method = "PUT", .bucket = dst->bucket, .key = dst->key, .copy_source = source,
                         .server_side_work = 1};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(s3, &req, &resp);
    if (st == SQ_OK) {
        if (!resp.body || !strstr(resp.body, "<CopyObjectResult")) {
            char *code = resp.body ? sq_xml_tag(resp.body, "Code", NULL) : NULL;
            st = sq_fail(SQ_ERR_NET, "copy %s to %s: the server answered %s", src_uri, dst_uri,
                         code ? code : "without a CopyObjectResult");
            free(code);
        }
        sq_s3_response_free(&resp);
    } else {
        sq_fail_context(st, "copy %s to %s", src_uri, dst_uri);
    }
    free(source);
    free(key);
    return st;
}

sq_status sq_s3_store_copy(const sq_s3 *s3, const sq_uri *src, const sq_uri *dst, const char *src_uri,
                           const char *dst_uri)
{
    sq_object_info info;
    memset(&info, 0, sizeof(info));
    sq_status st = sq_s3_store_head(s3, src, src_uri, &info);
    if (st == SQ_OK && info.size > SQ_STORE_MAX_COPY_BYTES)
        st = sq_fail(SQ_ERR_UNSUPPORTED, "copy %s: larger than one CopyObject allows", src_uri);
    if (st == SQ_OK)
        st = s3_copy(s3, src, dst, src_uri, dst_uri);
    return st;
}

sq_status sq_s3_store_delete(const sq_s3 *s3, const sq_uri *u)
{
    sq_s3_request req = {.method = "DELETE", .bucket = u->bucket, .key = u->key};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(s3, &req, &resp);
    if (st == SQ_OK)
        sq_s3_response_free(&resp);
    return st;
}

sq_status sq_s3_store_abort_uploads(const sq_s3 *s3, const sq_uri *u, int *n_aborted)
{
    char *prefix = directory_prefix(u);
    if (!prefix)
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", u->bucket, u->key);
    sq_status st = sq_s3_abort_uploads(s3, u->bucket, prefix, n_aborted);
    free(prefix);
    return st;
}
