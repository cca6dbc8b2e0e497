/* s3_client.c: signed S3 requests over libcurl with retries (see s3_client.h). */
#include "store/s3_client.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "core/log.h"
#include "core/sha256.h"
#include "store/s3_sigv4.h"

static __thread CURL *thread_curl;

void sq_s3_thread_cleanup(void)
{
    if (thread_curl)
        curl_easy_cleanup(thread_curl);
    thread_curl = NULL;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

void sq_s3_response_free(sq_s3_response *resp)
{
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

void sq_md5_hex_b64(const void *data, size_t len, char hex[33], char b64[25])
{
    unsigned char md[16];
    unsigned int n = 16;
    EVP_Digest(data, len, md, &n, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    EVP_EncodeBlock((unsigned char *)b64, md, 16);
}

char *sq_xml_tag(const char *from, const char *tag, const char **next)
{
    char open[80], close[80];
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    const char *a = from ? strstr(from, open) : NULL;
    if (!a)
        return NULL;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b)
        return NULL;
    if (next)
        *next = b + strlen(close);
    char *out = malloc((size_t)(b - a) + 1);
    if (!out)
        return NULL;
    static const struct { const char *ent; char c; } ents[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t o = 0;
    for (const char *p = a; p < b;) {
        int matched = 0;
        for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
            size_t el = strlen(ents[e].ent);
            if ((size_t)(b - p) >= el && !strncmp(p, ents[e].ent, el)) {
                out[o++] = ents[e].c;
                p += el;
                matched = 1;
                break;
            }
        }
        if (!matched)
            out[o++] = *p++;
    }
    out[o] = '\0';
    return out;
}

sq_status sq_s3_url(const sq_s3 *s3, const char *bucket, const char *key, const char *query, char **url,
                    char **host, char **canonical_uri)
{
    char *enc_key = sq_s3_uri_encode(key, 1);
    if (!enc_key)
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
    size_t n = strlen(s3->endpoint) + strlen(bucket) + strlen(enc_key) + (query ? strlen(query) : 0) + 8;
    *url = malloc(n);
    *host = malloc(strlen(s3->host) + strlen(bucket) + 2);
    *canonical_uri = malloc(strlen(bucket) + strlen(enc_key) + 4);
    if (!*url || !*host || !*canonical_uri) {
        free(enc_key);
        free(*url);
        free(*host);
        free(*canonical_uri);
        return sq_fail(SQ_ERR_NOMEM, "s3://%s/%s: out of memory", bucket, key);
    }
    /* A dotted bucket name cannot be a TLS-valid subdomain, so it always goes path-style. */
    if (s3->path_style || strchr(bucket, '.')) {
        strcpy(*host, s3->host);
        if (enc_key[0])
            sprintf(*canonical_uri, "/%s/%s", bucket, enc_key);
        else
            sprintf(*canonical_uri, "/%s", bucket);
    } else {
        sprintf(*host, "%s.%s", bucket, s3->host);
        sprintf(*canonical_uri, "/%s", enc_key);
    }
    sprintf(*url, "%s://%s%s%s%s", s3->scheme, *host, *canonical_uri, query && query[0] ? "?" : "",
            query ? query : "");
    free(enc_key);
    return SQ_OK;
}

/* State shared with the curl callbacks for one attempt. */
typedef struct {
    sq_s3_response *resp;
    size_t cap;
    FILE *sink;
    EVP_MD_CTX *md5;
    EVP_MD_CTX *sha256;
    int write_failed;
    int bad_header;      /* a malformed ETag, SHA-256 or Content-Length header */
    CURL *curl;
    const sq_s3 *s3;
    double started;      /* monotonic seconds */
    double allowed_s;    /* the deadline last computed, for the message */
    int deadline_passed;
} transfer;

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
    int success = status >= 200 && status < 300;
    if (t->md5 && success)
        EVP_DigestUpdate(t->md5, data, n);
    if (t->sha256 && success)
        EVP_DigestUpdate(t->sha256, data, n);
    if (t->sink && success) { /* an error answer's XML goes to memory, to be reported */
        if (fwrite(data, 1, n, t->sink) != n) {
            t->write_failed = 1;
            return 0;
        }
        t->resp->body_len += n;
        return n;
    }
    sq_s3_response *r = t->resp;
    if (r->body_len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown) {
            t->write_failed = 1;
            return 0;
        }
        r->body = grown;
        t->cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

/* When the header line `data` (n bytes, not NUL-terminated) is header `name`, its value
 * without surrounding blanks and CR/LF, copied NUL-terminated into `out`; 1 if it is
 * that header, 0 if not. A value too long for `out` is cut short, and `*too_long` set. */
static int header_value(const char *data, size_t n, const char *name, char *out, size_t out_size, int *too_long)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(data, name, nl) || data[nl] != ':')
        return 0;
    const char *v = data + nl + 1, *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t len = (size_t)(end - v);
    *too_long = len >= out_size;
    if (*too_long)
        len = out_size - 1;
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

/* A Content-Length value: decimal digits only, at most 18 of them; -1 if malformed. */
static int64_t parse_content_length(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 18)
        return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *user)
{
    transfer *t = user;
    size_t n = size * nmemb;
    sq_s3_response *r = t->resp;
    char value[160];
    int too_long = 0;
    if (header_value(data, n, "ETag", value, sizeof(value), &too_long)) {
        size_t o = 0;
        for (const char *v = value; *v && o + 1 < sizeof(r->etag); v++)
            if (*v != '"')
                r->etag[o++] = *v;
        r->etag[o] = '\0';
        t->bad_header |= too_long;
    } else if (header_value(data, n, "x-amz-meta-shardq-sha256", r->sha256, sizeof(r->sha256), &too_long)) {
        t->bad_header |= too_long || strlen(r->sha256) != SQ_SHA256_HEX_LEN;
    } else if (header_value(data, n, "Content-Length", value, sizeof(value), &too_long)) {
        r->content_length = too_long ? -1 : parse_content_length(value);
        t->bad_header |= r->content_length < 0;
    }
    return n;
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The attempt's deadline (see s3_client.h), checked by curl at least once a second, moving or not. */
static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dlnow;
    (void)ulnow;
    transfer *t = user;
    curl_off_t bytes = dltotal > ultotal ? dltotal : ultotal;
    t->allowed_s = (double)t->s3->request_timeout_s + (double)bytes / (double)t->s3->low_speed_bytes;
    if (monotonic_seconds() - t->started > t->allowed_s) {
        t->deadline_passed = 1;
        return 1;
    }
    return 0;
}

static CURL *thread_handle(void)
{
    pthread_once(&curl_once, curl_init_once);
    if (!thread_curl)
        thread_curl = curl_easy_init();
    else
        curl_easy_reset(thread_curl);
    return thread_curl;
}

static int is_plain_md5(const char *etag)
{
    if (strlen(etag) != 32)
        return 0;
    for (int i = 0; i < 32; i++)
        if (!((etag[i] >= '0' && etag[i] <= '9') || (etag[i] >= 'a' && etag[i] <= 'f')))
            return 0;
    return 1;
}

/* Append "name: value" to a curl header list; 0 when out of memory (the list is kept). */
static int add_header(struct curl_slist **list, char *line, size_t line_size, const char *name, const char *value)
{
    if ((size_t)snprintf(line, line_size, value[0] ? "%s: %s" : "%s:", name, value) >= line_size)
        return 0;
    struct curl_slist *grown = curl_slist_append(*list, line);
    if (!grown)
        return 0;
    *list = grown;
    return 1;
}

typedef enum { ATTEMPT_OK, ATTEMPT_RETRY, ATTEMPT_FAIL } attempt_result;

/* One try. On failure `why` says what happened (no credentials, no URL query). */
static attempt_result attempt(const sq_s3 *s3, const sq_s3_request *req, sq_s3_response *resp, char *why,
                              size_t why_size, sq_status *code)
{
    char *url = NULL, *host = NULL, *canonical_uri = NULL, *auth = NULL;
    struct curl_slist *hl = NULL;
    attempt_result result = ATTEMPT_FAIL;
    EVP_MD_CTX *md5 = NULL, *sha256 = NULL;
    *code = SQ_ERR_NET;
    if (sq_s3_url(s3, req->bucket, req->key, req->query, &url, &host, &canonical_uri) != SQ_OK) {
        snprintf(why, why_size, "out of memory");
        *code = SQ_ERR_NOMEM;
        return ATTEMPT_FAIL;
    }
    char payload_hash[SQ_SHA256_HEX_LEN + 1];
    sq_sha256_hex(req->body ? req->body : "", req->body ? req->body_len : 0, payload_hash);
    char amz_date[17];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
    char range[64] = "", md5_hex[33], md5_b64[25] = "";
    if (req->range_len > 0)
        snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)req->range_begin,
                 (unsigned long long)(req->range_begin + req->range_len - 1));
    if (req->body)
        sq_md5_hex_b64(req->body, req->body_len, md5_hex, md5_b64);

    sq_http_header h[10];
    int nh = 0;
    h[nh++] = (sq_http_header){"host", host};
    h[nh++] = (sq_http_header){"x-amz-content-sha256", payload_hash};
    h[nh++] = (sq_http_header){"x-amz-date", amz_date};
    if (s3->session_token)
        h[nh++] = (sq_http_header){"x-amz-security-token", s3->session_token};
    if (range[0])
        h[nh++] = (sq_http_header){"range", range};
    if (md5_b64[0])
        h[nh++] = (sq_http_header){"content-md5", md5_b64};
    if (req->if_match)
        h[nh++] = (sq_http_header){"if-match", req->if_match};
    if (req->sha256)
        h[nh++] = (sq_http_header){"x-amz-meta-shardq-sha256", req->sha256};
    if (req->copy_source)
        h[nh++] = (sq_http_header){"x-amz-copy-source", req->copy_source};
    if (s3->access_key) {
        auth = sq_sigv4_authorization(req->method, canonical_uri, req->query ? req->query : "", h, nh,
                                      payload_hash, amz_date, s3->region, s3->access_key, s3->secret_key);
        if (!auth) {
            snprintf(why, why_size, "cannot sign the request (out of memory or an OpenSSL failure)");
            *code = SQ_ERR_NOMEM;
            goto done;
        }
    }
    char line[4096];
    int headers_ok = 1;
    for (int i = 0; i < nh && headers_ok; i++) {
        if (strcmp(h[i].name, "host"))
            headers_ok = add_header(&hl, line, sizeof(line), h[i].name, h[i].value);
    }
    if (headers_ok && auth)
        headers_ok = add_header(&hl, line, sizeof(line), "Authorization", auth);
    if (headers_ok)
        headers_ok = add_header(&hl, line, sizeof(line), "Expect", "") && add_header(&hl, line, sizeof(line),
                                                                                     "Content-Type", "");
    OPENSSL_cleanse(line, sizeof(line));
    if (!headers_ok) {
        snprintf(why, why_size, "cannot build the request headers (out of memory, or one over 4 KiB)");
        *code = SQ_ERR_NOMEM;
        goto done;
    }

    CURL *c = thread_handle();
    if (!c) {
        snprintf(why, why_size, "cannot create a curl handle");
        goto done;
    }
    if (!strcmp(req->method, "GET") && req->range_len == 0) {
        md5 = EVP_MD_CTX_new();
        sha256 = EVP_MD_CTX_new();
        if (!md5 || !sha256 || !EVP_DigestInit_ex(md5, EVP_md5(), NULL) ||
            !EVP_DigestInit_ex(sha256, EVP_sha256(), NULL)) {
            snprintf(why, why_size, "cannot set up digests");
            *code = SQ_ERR_NOMEM;
            goto done;
        }
    }
    transfer t = {.resp = resp, .sink = req->sink, .md5 = md5, .sha256 = sha256, .curl = c, .s3 = s3,
                  .started = monotonic_seconds()};
    char curl_error[CURL_ERROR_SIZE] = "";
    resp->content_length = -1;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_error);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, s3->stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, req->server_side_work ? 0L : s3->low_speed_bytes);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, s3->stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
    if (!strcmp(req->method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (req->body || !strcmp(req->method, "POST") || !strcmp(req->method, "PUT")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    if (t.write_failed) {
        snprintf(why, why_size, "cannot store the response body");
        *code = req->sink ? SQ_ERR_IO : SQ_ERR_NOMEM;
        goto done;
    }
    if (t.deadline_passed) {
        snprintf(why, why_size, "not done within its deadline of %.0f s (request_timeout_s %ld plus its bytes at "
                 "low_speed_bytes %ld per second)", t.allowed_s, s3->request_timeout_s, s3->low_speed_bytes);
        result = ATTEMPT_RETRY;
        goto done;
    }
    if (cc == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, why_size, "stalled: %s (limits: low_speed_bytes %ld, stall_timeout_s %ld)",
                 curl_error[0] ? curl_error : curl_easy_strerror(cc), s3->low_speed_bytes, s3->stall_timeout_s);
        result = ATTEMPT_RETRY;
        goto done;
    }
    if (cc != CURLE_OK) {
        snprintf(why, why_size, "%s", curl_easy_strerror(cc));
        result = (cc == CURLE_URL_MALFORMAT || cc == CURLE_UNSUPPORTED_PROTOCOL) ? ATTEMPT_FAIL : ATTEMPT_RETRY;
        goto done;
    }
    if (t.bad_header) {
        snprintf(why, why_size, "malformed ETag, Content-Length or x-amz-meta-shardq-sha256 header in the answer");
        result = ATTEMPT_RETRY;
        goto done;
    }
    if (resp->status < 200 || resp->status >= 300) {
        char *err_code = resp->body ? sq_xml_tag(resp->body, "Code", NULL) : NULL;
        snprintf(resp->error_code, sizeof(resp->error_code), "%s", err_code ? err_code : "");
        char *err_msg = resp->body ? sq_xml_tag(resp->body, "Message", NULL) : NULL;
        snprintf(why, why_size, "HTTP %ld%s%s%s%s", resp->status, err_code ? " " : "",
                 err_code ? err_code
                 : resp->status == 404 ? " (no such object)"
                 : resp->status == 403 ? " (access denied: check the credentials and the region)"
                                       : "",
                 err_msg ? ": " : "",
                 err_msg ? err_msg : "");
        /* Throttling, server trouble and a body damaged in transit are worth another try. */
        static const char *const transient[] = {"SlowDown", "RequestTimeout", "InternalError", "BadDigest",
                                                "XAmzContentSHA256Mismatch", "ServiceUnavailable"};
        int slow = 0;
        for (size_t i = 0; err_code && i < sizeof(transient) / sizeof(transient[0]); i++)
            slow |= !strcmp(err_code, transient[i]);
        free(err_code);
        free(err_msg);
        result = (resp->status >= 500 || resp->status == 429 || resp->status == 0 || slow) ? ATTEMPT_RETRY
                                                                                            : ATTEMPT_FAIL;
        *code = resp->status == 404 ? SQ_ERR_NOT_FOUND : resp->status == 412 ? SQ_ERR_MISMATCH : SQ_ERR_NET;
        goto done;
    }
    if (resp->content_length >= 0 && strcmp(req->method, "HEAD") &&
        (uint64_t)resp->content_length != (uint64_t)resp->body_len) {
        snprintf(why, why_size, "body has %zu bytes, Content-Length says %lld", resp->body_len,
                 (long long)resp->content_length);
        result = ATTEMPT_RETRY;
        goto done;
    }
    if (req->range_len > 0 && resp->body_len != req->range_len) {
        snprintf(why, why_size, "ranged read returned %zu bytes, expected %llu", resp->body_len,
                 (unsigned long long)req->range_len);
        result = ATTEMPT_RETRY;
        goto done;
    }
    if (md5 && is_plain_md5(resp->etag)) {
        unsigned char d[16];
        unsigned int dn = 16;
        char hex[33];
        EVP_DigestFinal_ex(md5, d, &dn);
        for (int i = 0; i < 16; i++)
            sprintf(hex + 2 * i, "%02x", d[i]);
        if (strcmp(hex, resp->etag)) {
            snprintf(why, why_size, "downloaded body's MD5 %s does not match ETag %s", hex, resp->etag);
            *code = SQ_ERR_MISMATCH;
            result = ATTEMPT_RETRY;
            goto done;
        }
    }
    if (sha256 && resp->sha256[0]) {
        unsigned char d[32];
        unsigned int dn = 32;
        char hex[SQ_SHA256_HEX_LEN + 1];
        EVP_DigestFinal_ex(sha256, d, &dn);
        for (int i = 0; i < 32; i++)
            sprintf(hex + 2 * i, "%02x", d[i]);
        if (strcmp(hex, resp->sha256)) {
            snprintf(why, why_size, "downloaded body's SHA-256 %s does not match the object's %s", hex, resp->sha256);
            *code = SQ_ERR_MISMATCH;
            result = ATTEMPT_RETRY;
            goto done;
        }
    }
    if (req->body && !strcmp(req->method, "PUT") && resp->etag[0] && strcmp(resp->etag, md5_hex)) {
        snprintf(why, why_size, "server ETag %s differs from the uploaded body's MD5 %s", resp->etag, md5_hex);
        *code = SQ_ERR_MISMATCH;
        result = ATTEMPT_RETRY;
        goto done;
    }
    result = ATTEMPT_OK;
done:
    EVP_MD_CTX_free(md5);
    EVP_MD_CTX_free(sha256);
    for (struct curl_slist *item = hl; item; item = item->next) /* the token and the signature */
        OPENSSL_cleanse(item->data, strlen(item->data));
    curl_slist_free_all(hl);
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    free(url);
    free(host);
    free(canonical_uri);
    return result;
}

static void backoff_sleep(const sq_s3 *s3, int retry)
{
    static __thread unsigned int seed;
    if (!seed)
        seed = (unsigned int)time(NULL) ^ (unsigned int)(uintptr_t)&seed ^ (unsigned int)getpid();
    double step = (double)s3->backoff_ms;
    for (int i = 0; i < retry && step < 10000.0; i++)
        step *= 2.0;
    if (step > 10000.0)
        step = 10000.0;
    double ms = step * (0.5 + 0.5 * (double)rand_r(&seed) / (double)RAND_MAX);
    struct timespec ts = {(time_t)(ms / 1000.0), (long)((ms - 1000.0 * (double)(long)(ms / 1000.0)) * 1e6)};
    nanosleep(&ts, NULL);
}

sq_status sq_s3_perform(const sq_s3 *s3, const sq_s3_request *req, sq_s3_response *resp)
{
    char why[512] = "";
    sq_status code = SQ_ERR_NET;
    memset(resp, 0, sizeof(*resp));
    for (int retry = 0;; retry++) {
        if (req->sink) {
            rewind(req->sink);
            if (ftruncate(fileno(req->sink), 0) != 0)
                return sq_fail(SQ_ERR_IO, "%s s3://%s/%s: cannot truncate the download file", req->method,
                               req->bucket, req->key);
        }
        attempt_result r = attempt(s3, req, resp, why, sizeof(why), &code);
        resp->attempts = retry + 1;
        if (r == ATTEMPT_OK)
            return SQ_OK;
        if (r == ATTEMPT_FAIL || retry >= s3->max_retries) {
            sq_status st = sq_fail(code, "%s s3://%s/%s: %s%s", req->method, req->bucket, req->key, why,
                                   r == ATTEMPT_RETRY ? " (gave up after retries)" : "");
            free(resp->body);
            resp->body = NULL;
            resp->body_len = 0;
            return st;
        }
        sq_log_info("s3: %s s3://%s/%s: %s; retry %d of %d", req->method, req->bucket, req->key, why, retry + 1,
                    s3->max_retries);
        sq_s3_response_free(resp);
        backoff_sleep(s3, retry);
    }
}

sq_status sq_s3_put_object(const sq_s3 *s3, const char *bucket, const char *key, const void *data, size_t len)
{
    char sha[SQ_SHA256_HEX_LEN + 1];
    sq_sha256_hex(data ? data : "", len, sha);
    sq_s3_request req = {.method = "PUT", .bucket = bucket, .key = key, .body = data ? data : "", .body_len = len,
                         .sha256 = sha};
    sq_s3_response resp;
    SQ_TRY(sq_s3_perform(s3, &req, &resp));
    sq_s3_response_free(&resp);
    return SQ_OK;
}
