/* store.c: the storage API (store.h), dispatching each URI to the local or the S3 backend. */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "core/fileio.h"
#include "store/s3_client.h"
#include "store/s3_sigv4.h"
#include "store/uri.h"

struct sq_store {
    sq_s3 s3;
};

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

static int env_int(const char *name, int fallback)
{
    const char *v = env(name);
    return v ? atoi(v) : fallback;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void sq_store_close(sq_store *store)
{
    if (!store)
        return;
    sq_s3 *s = &store->s3;
    free(s->endpoint);
    free(s->host);
    free(s->scheme);
    free(s->region);
    free(s->access_key);
    free_secret(s->secret_key);
    free_secret(s->session_token);
    free(store);
    sq_s3_thread_cleanup();
}

void sq_store_thread_done(void) { sq_s3_thread_cleanup(); }

sq_status sq_store_open(sq_store **out, const sq_storage_options *options)
{
    *out = NULL;
    sq_store *store = calloc(1, sizeof(*store));
    if (!store)
        return sq_fail(SQ_ERR_NOMEM, "storage: out of memory");
    sq_s3 *s = &store->s3;
    const char *region = options && options->region ? options->region : env("AWS_REGION");
    if (!region)
        region = env("AWS_DEFAULT_REGION");
    s->region = strdup(region ? region : "us-east-1");
    const char *endpoint = options && options->endpoint ? options->endpoint : env("AWS_ENDPOINT_URL_S3");
    if (!endpoint)
        endpoint = env("AWS_ENDPOINT_URL");
    int path_style = options ? options->path_style : -1;
    if (path_style < 0)
        path_style = env_int("SHARDQ_S3_PATH_STYLE", endpoint ? 1 : 0);
    s->path_style = path_style;
    char default_endpoint[128];
    if (!endpoint) {
        snprintf(default_endpoint, sizeof(default_endpoint), "https://s3.%s.amazonaws.com", s->region);
        endpoint = default_endpoint;
    }
    const char *sep = strstr(endpoint, "://");
    if (!sep || (strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8)) || !sep[3]) {
        sq_store_close(store);
        return sq_fail(SQ_ERR_ARG, "storage endpoint '%s': must be http://host[:port] or https://host[:port]",
                       endpoint);
    }
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
    int part_mb = options && options->part_size_mb > 0 ? options->part_size_mb : env_int("SHARDQ_S3_PART_SIZE_MB", 8);
    s->part_size = (size_t)part_mb * 1024 * 1024;
    s->max_retries = options && options->max_retries >= 0 ? options->max_retries : env_int("SHARDQ_S3_MAX_RETRIES", 5);
    s->parallel_parts = env_int("SHARDQ_S3_PARALLEL_PARTS", 4);
    s->backoff_ms = env_int("SHARDQ_S3_BACKOFF_MS", 100);
    s->timeout_s = env_int("SHARDQ_S3_TIMEOUT_S", 30);
    if (!s->region || !s->scheme || !s->host || !s->endpoint) {
        sq_store_close(store);
        return sq_fail(SQ_ERR_NOMEM, "storage: out of memory");
    }
    if (s->access_key && !s->secret_key) {
        sq_store_close(store);
        return sq_fail(SQ_ERR_ARG, "storage: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    }
    if (part_mb < 5 || part_mb > 5120 || s->max_retries < 0 || s->max_retries > 20 || s->parallel_parts < 1 ||
        s->parallel_parts > 64 || s->backoff_ms < 0 || s->timeout_s < 1) {
        sq_store_close(store);
        return sq_fail(SQ_ERR_ARG,
                       "storage: part size must be 5-5120 MB, retries 0-20, parallel parts 1-64, timeout >= 1 s");
    }
    *out = store;
    return SQ_OK;
}

/* ---- local backend ---- */

static sq_status local_get_range(const char *path, uint64_t offset, uint64_t len, void *dst)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)dst + got, (size_t)(len - got), (off_t)(offset + got));
        if (r <= 0) {
            close(fd);
            return sq_fail(SQ_ERR_IO, "%s: reading %llu bytes at offset %llu: %s", path, (unsigned long long)len,
                           (unsigned long long)offset, r == 0 ? "file is shorter" : strerror(errno));
        }
        got += (uint64_t)r;
    }
    close(fd);
    return SQ_OK;
}

static sq_status make_parent_dirs(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
    sq_status st = sq_make_dirs(dirname(copy));
    free(copy);
    return st;
}

typedef struct {
    char *name;
    uint64_t size;
} named_size;

static int cmp_named_size(const void *a, const void *b)
{
    return strcmp(((const named_size *)a)->name, ((const named_size *)b)->name);
}

/* Sort a listing by name, keeping each size with its name. */
static sq_status sort_list(sq_object_list *list)
{
    named_size *pairs = malloc(sizeof(*pairs) * (size_t)(list->n > 0 ? list->n : 1));
    if (!pairs)
        return sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
    for (int i = 0; i < list->n; i++)
        pairs[i] = (named_size){list->names[i], list->sizes[i]};
    qsort(pairs, (size_t)list->n, sizeof(*pairs), cmp_named_size);
    for (int i = 0; i < list->n; i++) {
        list->names[i] = pairs[i].name;
        list->sizes[i] = pairs[i].size;
    }
    free(pairs);
    return SQ_OK;
}

static sq_status list_add(sq_object_list *out, int *cap, const char *name, uint64_t size)
{
    if (out->n == *cap) {
        int ncap = *cap ? *cap * 2 : 16;
        char **names = realloc(out->names, sizeof(char *) * (size_t)ncap);
        if (names)
            out->names = names;
        uint64_t *sizes = realloc(out->sizes, sizeof(uint64_t) * (size_t)ncap);
        if (sizes)
            out->sizes = sizes;
        if (!names || !sizes)
            return sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
        *cap = ncap;
    }
    out->names[out->n] = strdup(name);
    if (!out->names[out->n])
        return sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
    out->sizes[out->n++] = size;
    return SQ_OK;
}

static sq_status local_walk(const char *root, const char *rel, sq_object_list *out, int *cap, int depth)
{
    if (depth > 32)
        return sq_fail(SQ_ERR_IO, "%s/%s: directory tree deeper than 32 levels", root, rel);
    char *dir = rel[0] ? sq_path_join(root, rel) : strdup(root);
    if (!dir)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", root);
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        free(dir);
        return e == ENOENT ? SQ_OK : sq_fail(SQ_ERR_IO, "%s: cannot list: %s", root, strerror(e));
    }
    sq_status st = SQ_OK;
    struct dirent *ent;
    while (st == SQ_OK && (ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..") || strstr(ent->d_name, ".tmp."))
            continue;
        char *child_rel = rel[0] ? sq_path_join(rel, ent->d_name) : strdup(ent->d_name);
        char *child = child_rel ? sq_path_join(root, child_rel) : NULL;
        struct stat sb;
        if (!child)
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", root);
        else if (stat(child, &sb) != 0)
            st = sq_fail(SQ_ERR_IO, "%s: cannot stat: %s", child, strerror(errno));
        else if (S_ISDIR(sb.st_mode))
            st = local_walk(root, child_rel, out, cap, depth + 1);
        else if (S_ISREG(sb.st_mode))
            st = list_add(out, cap, child_rel, (uint64_t)sb.st_size);
        free(child_rel);
        free(child);
    }
    closedir(d);
    free(dir);
    return st;
}

/* ---- S3 backend ---- */

static sq_status s3_get(sq_store *store, const sq_uri *u, uint64_t offset, uint64_t len, sq_s3_response *resp,
                        FILE *sink)
{
    sq_s3_request req = {.method = "GET", .bucket = u->bucket, .key = u->key, .range_begin = offset,
                         .range_len = len, .sink = sink};
    return sq_s3_perform(&store->s3, &req, resp);
}

static sq_status fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return sq_fail(SQ_ERR_IO, "%s: cannot open its directory: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? SQ_OK : sq_fail(SQ_ERR_IO, "%s: fsync of its directory failed", path);
}

static sq_status s3_get_file(sq_store *store, const sq_uri *u, const char *uri, const char *path)
{
    SQ_TRY(make_parent_dirs(path));
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w+b");
    if (!f)
        return sq_fail(SQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    sq_s3_response resp;
    sq_status st = s3_get(store, u, 0, 0, &resp, f);
    if (st == SQ_OK) {
        sq_s3_response_free(&resp);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0)
            st = sq_fail(SQ_ERR_IO, "%s: writing the download of %s failed", path, uri);
    }
    fclose(f);
    if (st == SQ_OK && rename(tmp, path) != 0)
        st = sq_fail(SQ_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != SQ_OK) {
        unlink(tmp);
        return st;
    }
    return fsync_dir_of(path);
}

static sq_status s3_list(sq_store *store, const sq_uri *u, sq_object_list *out)
{
    size_t kl = strlen(u->key);
    char *prefix = malloc(kl + 2);
    if (!prefix)
        return sq_fail(SQ_ERR_NOMEM, "listing: out of memory");
    strcpy(prefix, u->key);
    if (kl && prefix[kl - 1] != '/')
        strcat(prefix, "/");
    size_t pl = strlen(prefix);
    char *enc_prefix = sq_s3_uri_encode(prefix, 0);
    char *token = NULL;
    int cap = 0;
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
        st = sq_s3_perform(&store->s3, &req, &resp);
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
                st = list_add(out, &cap, key + pl, strtoull(size, NULL, 10));
            free(key);
            free(size);
            free(contents);
        }
        char *truncated = sq_xml_tag(p, "IsTruncated", NULL);
        free(token);
        token = truncated && !strcmp(truncated, "true") ? sq_xml_tag(p, "NextContinuationToken", NULL) : NULL;
        free(truncated);
        sq_s3_response_free(&resp);
        if (!token)
            break;
        if (page > 100000)
            st = sq_fail(SQ_ERR_NET, "listing s3://%s/%s: too many pages", u->bucket, prefix);
    }
    free(token);
    free(enc_prefix);
    free(prefix);
    return st;
}

/* ---- the API ---- */

sq_status sq_store_get(sq_store *store, const char *uri, void **data, size_t *len)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    *data = NULL;
    *len = 0;
    if (u.kind == SQ_URI_LOCAL) {
        char *buf;
        st = sq_read_file(u.path, &buf, len);
        if (st == SQ_OK)
            *data = buf;
    } else {
        sq_s3_response resp;
        st = s3_get(store, &u, 0, 0, &resp, NULL);
        if (st == SQ_OK) {
            if (!resp.body)
                resp.body = calloc(1, 1);
            *data = resp.body;
            *len = resp.body_len;
            if (!resp.body)
                st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
        }
    }
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_get_range(sq_store *store, const char *uri, uint64_t offset, uint64_t len, void *dst)
{
    if (len == 0)
        return SQ_OK;
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL) {
        st = local_get_range(u.path, offset, len, dst);
    } else {
        sq_s3_response resp;
        st = s3_get(store, &u, offset, len, &resp, NULL);
        if (st == SQ_OK) {
            memcpy(dst, resp.body, len);
            sq_s3_response_free(&resp);
        }
    }
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_get_file(sq_store *store, const char *uri, const char *local_path)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL) {
        st = make_parent_dirs(local_path);
        if (st == SQ_OK)
            st = sq_copy_file(u.path, local_path);
    } else
        st = s3_get_file(store, &u, uri, local_path);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_put(sq_store *store, const char *uri, const void *data, size_t len)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL) {
        st = make_parent_dirs(u.path);
        if (st == SQ_OK)
            st = sq_write_file_atomic(u.path, data, len);
    } else if (!u.key[0] || u.key[strlen(u.key) - 1] == '/') {
        st = sq_fail(SQ_ERR_ARG, "%s: an object URI needs a key that does not end in '/'", uri);
    } else if (len > store->s3.part_size) {
        st = sq_s3_multipart_put(&store->s3, u.bucket, u.key, data, -1, len);
    } else {
        st = sq_s3_put_object(&store->s3, u.bucket, u.key, data, len);
    }
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_put_file(sq_store *store, const char *uri, const char *local_path)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL) {
        st = make_parent_dirs(u.path);
        if (st == SQ_OK)
            st = sq_copy_file(local_path, u.path);
        sq_uri_free(&u);
        return st;
    }
    uint64_t size = 0;
    st = sq_file_size(local_path, &size);
    if (st == SQ_OK && size > store->s3.part_size) {
        int fd = open(local_path, O_RDONLY);
        if (fd < 0) {
            st = sq_fail(SQ_ERR_IO, "%s: cannot open: %s", local_path, strerror(errno));
        } else {
            st = sq_s3_multipart_put(&store->s3, u.bucket, u.key, NULL, fd, size);
            close(fd);
        }
    } else if (st == SQ_OK) {
        char *buf;
        size_t len;
        st = sq_read_file(local_path, &buf, &len);
        if (st == SQ_OK) {
            st = sq_store_put(store, uri, buf, len);
            free(buf);
        }
    }
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_head(sq_store *store, const char *uri, sq_object_info *info)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    memset(info, 0, sizeof(*info));
    if (u.kind == SQ_URI_LOCAL) {
        struct stat sb;
        if (stat(u.path, &sb) != 0 || !S_ISREG(sb.st_mode))
            st = sq_fail(SQ_ERR_NOT_FOUND, "%s: no such file", uri);
        else
            info->size = (uint64_t)sb.st_size;
    } else {
        sq_s3_request req = {.method = "HEAD", .bucket = u.bucket, .key = u.key};
        sq_s3_response resp;
        st = sq_s3_perform(&store->s3, &req, &resp);
        if (st == SQ_OK) {
            if (resp.content_length < 0)
                st = sq_fail(SQ_ERR_NET, "HEAD %s: no Content-Length in the answer", uri);
            info->size = (uint64_t)(resp.content_length < 0 ? 0 : resp.content_length);
            snprintf(info->etag, sizeof(info->etag), "%s", resp.etag);
            snprintf(info->sha256, sizeof(info->sha256), "%s", resp.sha256);
            sq_s3_response_free(&resp);
        }
    }
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_list(sq_store *store, const char *uri, sq_object_list *out)
{
    memset(out, 0, sizeof(*out));
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    int cap = 0;
    if (u.kind == SQ_URI_LOCAL)
        st = local_walk(u.path, "", out, &cap, 0);
    else
        st = s3_list(store, &u, out);
    sq_uri_free(&u);
    if (st == SQ_OK)
        st = sort_list(out);
    if (st != SQ_OK) {
        sq_object_list_free(out);
        return sq_fail_context(st, "listing %s", uri);
    }
    return SQ_OK;
}

void sq_object_list_free(sq_object_list *list)
{
    for (int i = 0; i < list->n; i++)
        free(list->names[i]);
    free(list->names);
    free(list->sizes);
    memset(list, 0, sizeof(*list));
}

/* CopyObject; its answer can be an error inside a 200 response, so the body must be a CopyObjectResult. */
static sq_status s3_copy(sq_store *store, const sq_uri *src, const sq_uri *dst, const char *src_uri,
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
    sq_s3_request req = {.method = "PUT", .bucket = dst->bucket, .key = dst->key, .copy_source = source};
    sq_s3_response resp;
    sq_status st = sq_s3_perform(&store->s3, &req, &resp);
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

sq_status sq_store_copy(sq_store *store, const char *src_uri, const char *dst_uri)
{
    sq_uri src, dst;
    SQ_TRY(sq_uri_parse(&src, src_uri));
    sq_status st = sq_uri_parse(&dst, dst_uri);
    if (st != SQ_OK) {
        sq_uri_free(&src);
        return st;
    }
    if (src.kind != dst.kind) {
        st = sq_fail(SQ_ERR_UNSUPPORTED, "copy %s to %s: not the same kind of storage", src_uri, dst_uri);
    } else if (src.kind == SQ_URI_LOCAL) {
        st = make_parent_dirs(dst.path);
        if (st == SQ_OK)
            st = sq_copy_file(src.path, dst.path);
    } else {
        sq_object_info info;
        st = sq_store_head(store, src_uri, &info);
        if (st == SQ_OK && info.size > SQ_STORE_MAX_COPY_BYTES)
            st = sq_fail(SQ_ERR_UNSUPPORTED, "copy %s: larger than one CopyObject allows", src_uri);
        if (st == SQ_OK)
            st = s3_copy(store, &src, &dst, src_uri, dst_uri);
    }
    sq_uri_free(&src);
    sq_uri_free(&dst);
    return st;
}

sq_status sq_store_delete(sq_store *store, const char *uri)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL) {
        if (unlink(u.path) != 0 && errno != ENOENT)
            st = sq_fail(SQ_ERR_IO, "%s: cannot delete: %s", uri, strerror(errno));
    } else {
        sq_s3_request req = {.method = "DELETE", .bucket = u.bucket, .key = u.key};
        sq_s3_response resp;
        st = sq_s3_perform(&store->s3, &req, &resp);
        if (st == SQ_OK)
            sq_s3_response_free(&resp);
    }
    sq_uri_free(&u);
    return st;
}
