/* uri.c: parse local paths, file:// and s3:// URIs (see uri.h). */
#include "store/uri.h"

#include <stdlib.h>
#include <string.h>

static int valid_bucket(const char *b, size_t n)
{
    if (n < 3 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
            return 0;
    }
    return b[0] != '.' && b[0] != '-' && b[n - 1] != '.' && b[n - 1] != '-';
}

sq_status sq_uri_parse(sq_uri *out, const char *text)
{
    memset(out, 0, sizeof(*out));
    if (!text || !text[0])
        return sq_fail(SQ_ERR_ARG, "empty URI");
    if (!strncmp(text, "s3://", 5)) {
        const char *b = text + 5;
        const char *slash = strchr(b, '/');
        size_t n = slash ? (size_t)(slash - b) : strlen(b);
        if (n == 0)
            return sq_fail(SQ_ERR_ARG, "%s: an s3 URI must name a bucket (s3://bucket/prefix)", text);
        if (!valid_bucket(b, n))
            return sq_fail(SQ_ERR_ARG, "%s: invalid bucket name \"%.*s\" (3-63 characters of a-z, 0-9, '.', '-')",
                           text, (int)n, b);
        out->kind = SQ_URI_S3;
        out->bucket = strndup(b, n);
        out->key = strdup(slash ? slash + 1 : "");
        if (!out->bucket || !out->key) {
            sq_uri_free(out);
            return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", text);
        }
        return SQ_OK;
    }
    const char *path = text;
    if (!strncmp(text, "file://", 7)) {
        path = text + 7;
        if (path[0] != '/')
            return sq_fail(SQ_ERR_ARG, "%s: a file:// URI needs an absolute path (file:///PATH)", text);
    } else if (strstr(text, "://")) {
        return sq_fail(SQ_ERR_ARG, "%s: unsupported URI scheme (use a path, file:///PATH or s3://bucket/prefix)",
                       text);
    }
    out->kind = SQ_URI_LOCAL;
    out->path = strdup(path);
    if (!out->path)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", text);
    return SQ_OK;
}

void sq_uri_free(sq_uri *uri)
{
    free(uri->path);
    free(uri->bucket);
    free(uri->key);
    memset(uri, 0, sizeof(*uri));
}

char *sq_uri_join(const char *base, const char *name)
{
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/' && !(bl >= 5 && !strncmp(base + bl - 3, "://", 3)))
        bl--;
    while (*name == '/')
        name++;
    char *out = malloc(bl + strlen(name) + 2);
    if (!out)
        return NULL;
    memcpy(out, base, bl);
    out[bl] = '/';
    strcpy(out + bl + 1, name);
    return out;
}
