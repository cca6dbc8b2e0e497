/* store.c: the storage API (store.h): each URI is parsed and dispatched by its scheme to the local
 * backend (store_local.c) or the S3 backend (store_s3.c); listings are sorted here for both. */
#include "store/store.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "store/store_backend.h"

struct sq_store {
    sq_s3 s3;
};

void sq_store_close(sq_store *store)
{
    if (!store)
        return;
    sq_s3_release(&store->s3);
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
    sq_status st = sq_s3_configure(&store->s3, options);
    if (st != SQ_OK) {
        sq_store_close(store);
        return st;
    }
    *out = store;
    return SQ_OK;
}

sq_status sq_store_make_parent_dirs(const char *path)
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

sq_status sq_object_list_add(sq_object_list *out, int *cap, const char *name, uint64_t size)
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

sq_status sq_store_get(sq_store *store, const char *uri, void **data, size_t *len)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    *data = NULL;
    *len = 0;
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_get(u.path, data, len)
                                          : sq_s3_store_get(&store->s3, &u, uri, data, len);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_get_range(sq_store *store, const char *uri, uint64_t offset, uint64_t len, void *dst)
{
    if (len == 0)
        return SQ_OK;
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_get_range(u.path, offset, len, dst)
                                          : sq_s3_store_get_range(&store->s3, &u, offset, len, dst);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_get_file(sq_store *store, const char *uri, const char *local_path)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_get_file(u.path, local_path)
                                          : sq_s3_store_get_file(&store->s3, &u, uri, local_path);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_put(sq_store *store, const char *uri, const void *data, size_t len)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_put(u.path, data, len)
                                          : sq_s3_store_put(&store->s3, &u, uri, data, len);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_put_file(sq_store *store, const char *uri, const char *local_path)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_put_file(u.path, local_path)
                                          : sq_s3_store_put_file(&store->s3, &u, uri, local_path);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_head(sq_store *store, const char *uri, sq_object_info *info)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    memset(info, 0, sizeof(*info));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_head(u.path, uri, info)
                                          : sq_s3_store_head(&store->s3, &u, uri, info);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_list(sq_store *store, const char *uri, sq_object_list *out)
{
    memset(out, 0, sizeof(*out));
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    int cap = 0;
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_list(u.path, out, &cap)
                                          : sq_s3_store_list(&store->s3, &u, out, &cap);
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

sq_status sq_store_copy(sq_store *store, const char *src_uri, const char *dst_uri)
{
    sq_uri src, dst;
    SQ_TRY(sq_uri_parse(&src, src_uri));
    sq_status st = sq_uri_parse(&dst, dst_uri);
    if (st != SQ_OK) {
        sq_uri_free(&src);
        return st;
    }
    if (src.kind != dst.kind)
        st = sq_fail(SQ_ERR_UNSUPPORTED, "copy %s to %s: not the same kind of storage", src_uri, dst_uri);
    else if (src.kind == SQ_URI_LOCAL)
        st = sq_local_copy(src.path, dst.path);
    else
        st = sq_s3_store_copy(&store->s3, &src, &dst, src_uri, dst_uri);
    sq_uri_free(&src);
    sq_uri_free(&dst);
    return st;
}

sq_status sq_store_delete(sq_store *store, const char *uri)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    sq_status st = u.kind == SQ_URI_LOCAL ? sq_local_delete(u.path, uri) : sq_s3_store_delete(&store->s3, &u);
    sq_uri_free(&u);
    return st;
}

sq_status sq_store_abort_uploads(sq_store *store, const char *uri, int *n_aborted)
{
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, uri));
    *n_aborted = 0;
    sq_status st = u.kind == SQ_URI_LOCAL ? SQ_OK : sq_s3_store_abort_uploads(&store->s3, &u, n_aborted);
    sq_uri_free(&u);
    return st == SQ_OK ? SQ_OK : sq_fail_context(st, "aborting unfinished uploads under %s", uri);
}
