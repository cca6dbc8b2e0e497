/* stage.c: URIs to local files and local directories to URIs (see stage.h). */
#include "store/stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/sha256.h"
#include "store/uri.h"

#define MANIFEST "manifest.json"
#define WEIGHTS_SUFFIX ".safetensors"

int sq_uri_is_s3(const char *uri) { return strncmp(uri, "s3://", 5) == 0; }

/* The local path of a local URI ("file:///x" -> "/x"), NULL for s3://. */
static sq_status local_of(const char *uri, char **path)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    *path = NULL;
    sq_status st = SQ_OK;
    if (u.kind == SQ_URI_LOCAL && !(*path = strdup(u.path)))
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    sq_uri_free(&u);
    return st;
}

/* scratch/staged-<hash of uri>: where the objects of one URI land. */
static char *staging_dir(const char *scratch, const char *uri)
{
    char hex[SQ_SHA256_HEX_LEN + 1], name[32];
    sq_sha256_hex(uri, strlen(uri), hex);
    snprintf(name, sizeof name, "staged-%.16s", hex);
    return sq_path_join(scratch, name);
}

sq_status sq_stage_object(sq_store *store, const char *uri, const char *scratch, char **local_path)
{
    SQ_TRY(local_of(uri, local_path));
    if (*local_path)
        return SQ_OK;
    const char *slash = strrchr(uri, '/');
    const char *base = slash && slash[1] ? slash + 1 : "object";
    char *dir = staging_dir(scratch, uri);
    char *path = dir ? sq_path_join(dir, base) : NULL;
    free(dir);
    if (!path)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    sq_status st = sq_store_get_file(store, uri, path);
    if (st != SQ_OK) {
        free(path);
        return st;
    }
    *local_path = path;
    return SQ_OK;
}

static int is_weights_file(const char *name)
{
    size_t n = strlen(name), k = strlen(WEIGHTS_SUFFIX);
    return n >= k && strcmp(name + n - k, WEIGHTS_SUFFIX) == 0;
}

sq_status sq_stage_model_files(sq_store *store, const char *uri, const char *scratch, char **local_dir)
{
    SQ_TRY(local_of(uri, local_dir));
    if (*local_dir)
        return SQ_OK;
    sq_object_list list;
    SQ_TRY(sq_store_list(store, uri, &list));
    char *dir = staging_dir(scratch, uri);
    sq_status st = dir ? sq_make_dirs(dir) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    int staged = 0;
    for (int i = 0; i < list.n && st == SQ_OK; i++) {
        if (strchr(list.names[i], '/') || is_weights_file(list.names[i]))
            continue;
        char *src = sq_uri_join(uri, list.names[i]);
        char *dst = sq_path_join(dir, list.names[i]);
        st = src && dst ? sq_store_get_file(store, src, dst) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
        staged++;
        free(src);
        free(dst);
    }
    sq_object_list_free(&list);
    if (st == SQ_OK && staged == 0)
        st = sq_fail(SQ_ERR_NOT_FOUND, "%s: no model here (no config.json or other files under this prefix)", uri);
    if (st != SQ_OK) {
        free(dir);
        return st;
    }
    *local_dir = dir;
    return SQ_OK;
}

static sq_status upload_one(sq_store *store, const char *local_dir, const char *uri, const char *name)
{
    char *src = sq_path_join(local_dir, name);
    char *dst = sq_uri_join(uri, name);
    sq_status st = src && dst ? sq_store_put_file(store, dst, src) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    free(src);
    free(dst);
    return st;
}

sq_status sq_upload_dir(sq_store *store, const char *local_dir, const char *uri)
{
    sq_object_list list;
    SQ_TRY(sq_store_list(store, local_dir, &list));
    sq_status st = SQ_OK;
    int has_manifest = 0;
    for (int i = 0; i < list.n && st == SQ_OK; i++) {
        if (strcmp(list.names[i], MANIFEST) == 0)
            has_manifest = 1;
        else
            st = upload_one(store, local_dir, uri, list.names[i]);
    }
    sq_object_list_free(&list);
    if (st == SQ_OK && has_manifest)
        st = upload_one(store, local_dir, uri, MANIFEST);
    return st;
}
