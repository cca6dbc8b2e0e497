/* model_store.c: push, pull and index checkpoints in a model store (see model_store.h). */
#include "store/model_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/scratch_dir.h"
#include "store/manifest.h"
#include "store/stage.h"
#include "store/uri.h"

#define INDEX_ATTEMPTS 20

static char *join3(const char *a, const char *b, const char *c)
{
    char *ab = sq_uri_join(a, b);
    char *abc = ab ? sq_uri_join(ab, c) : NULL;
    free(ab);
    return abc;
}

static sq_status get_json(sq_store *store, const char *uri, json_t **out)
{
    void *data;
    size_t len;
    SQ_TRY(sq_store_get(store, uri, &data, &len));
    json_error_t err;
    *out = json_loadb(data, len, 0, &err);
    free(data);
    if (!*out)
        return sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON at line %d: %s", uri, err.line, err.text);
    return SQ_OK;
}

static sq_status put_json(sq_store *store, const char *uri, json_t *doc)
{
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (!text)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot serialize", uri);
    sq_status st = sq_store_put(store, uri, text, strlen(text));
    free(text);
    return st;
}

static int cmp_records(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int c = strcmp(json_string_value(json_object_get(x, "name")), json_string_value(json_object_get(y, "name")));
    return c ? c : strcmp(json_string_value(json_object_get(x, "version")),
                          json_string_value(json_object_get(y, "version")));
}

/* Index built from every entry object; `keys` gets the listed entry names. */
static sq_status build_index(sq_store *store, const char *store_uri, json_t **index, sq_object_list *keys)
{
    char *entries = sq_uri_join(store_uri, "entries");
    if (!entries)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", store_uri);
    sq_status st = sq_store_list(store, entries, keys);
    json_t **records = st == SQ_OK ? calloc((size_t)keys->n + 1, sizeof(json_t *)) : NULL;
    if (st == SQ_OK && !records)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", store_uri);
    int n = 0;
    for (int i = 0; st == SQ_OK && i < keys->n; i++) {
        char *uri = sq_uri_join(entries, keys->names[i]);
        st = uri ? get_json(store, uri, &records[n]) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", store_uri);
        if (st == SQ_OK && (!json_is_string(json_object_get(records[n], "name")) ||
                            !json_is_string(json_object_get(records[n], "version"))))
            st = sq_fail(SQ_ERR_FORMAT, "%s: a model record needs string name and version", uri);
        if (st == SQ_OK)
            n++;
        free(uri);
    }
    if (st == SQ_OK) {
        qsort(records, (size_t)n, sizeof(json_t *), cmp_records);
        json_t *models = json_array();
        for (int i = 0; i < n; i++)
            json_array_append(models, records[i]);
        *index = json_pack("{s:s,s:o}", "format", "shardq-index/1", "models", models);
    }
    for (int i = 0; i < n; i++)
        json_decref(records[i]);
    free(records);
    free(entries);
    if (st != SQ_OK)
        sq_object_list_free(keys);
    return st;
}

/* Does `index` hold a record for every listed entry "<name>/<version>.json"? */
static int index_covers(json_t *index, const sq_object_list *keys)
{
    json_t *models = json_object_get(index, "models");
    for (int i = 0; i < keys->n; i++) {
        int found = 0;
        size_t j;
        json_t *r;
        json_array_foreach(models, j, r) {
            char key[300];
            snprintf(key, sizeof(key), "%s/%s.json", json_string_value(json_object_get(r, "name")),
                     json_string_value(json_object_get(r, "version")));
            if (!strcmp(key, keys->names[i])) {
                found = 1;
                break;
            }
        }
        if (!found)
            return 0;
    }
    return 1;
}

static sq_status update_index(sq_store *store, const char *store_uri)
{
    char *index_uri = sq_uri_join(store_uri, "index.json");
    if (!index_uri)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", store_uri);
    sq_status st = SQ_OK;
    unsigned int seed = (unsigned int)getpid() ^ (unsigned int)time(NULL);
    for (int attempt = 0; attempt < INDEX_ATTEMPTS; attempt++) {
        json_t *index = NULL, *readback = NULL;
        sq_object_list keys, relisted;
        st = build_index(store, store_uri, &index, &keys);
        if (st != SQ_OK)
            break;
        sq_object_list_free(&keys);
        st = put_json(store, index_uri, index);
        json_decref(index);
        if (st == SQ_OK)
            st = get_json(store, index_uri, &readback);
        if (st == SQ_OK) {
            char *entries = sq_uri_join(store_uri, "entries");
            st = entries ? sq_store_list(store, entries, &relisted) : sq_fail(SQ_ERR_NOMEM, "out of memory");
            free(entries);
        }
        if (st != SQ_OK) {
            json_decref(readback);
            break;
        }
        int covered = index_covers(readback, &relisted);
        json_decref(readback);
        sq_object_list_free(&relisted);
        if (covered) {
            free(index_uri);
            return SQ_OK;
        }
        sq_log_info("%s: a concurrent push changed the index; rebuilding it", index_uri);
        usleep((useconds_t)(20000 + rand_r(&seed) % 80000));
    }
    if (st == SQ_OK)
        st = sq_fail(SQ_ERR_NET, "%s: the index kept changing under %d rebuilds", index_uri, INDEX_ATTEMPTS);
    free(index_uri);
    return st;
}

/* One push: where the checkpoint comes from and goes to. */
typedef struct {
    sq_store *store;
    const char *source_uri;
    char *source_dir; /* the local directory of a local source; NULL for s3:// */
    char *target;     /* STORE/<name>/<version> */
    char *scratch;    /* made on first use, for objects streamed through this process */
} push_job;

/* Check a source file against the manifest before anything is written. An
 * s3:// object qualifies for a server-side copy (*server_copy) when it carries
 * the listed SHA-256 as metadata; one without it is hashed when streamed. */
static sq_status check_source(push_job *p, json_t *manifest, const char *name, int *server_copy)
{
    uint64_t size;
    const char *sha256;
    SQ_TRY(sq_manifest_entry(manifest, name, &size, &sha256));
    *server_copy = 0;
    char *at = p->source_dir ? sq_path_join(p->source_dir, name) : sq_uri_join(p->source_uri, name);
    if (!at)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", p->source_uri);
    sq_status st;
    if (p->source_dir) {
        st = sq_manifest_check_file(manifest, name, at, at);
    } else {
        sq_object_info info;
        st = sq_store_head(p->store, at, &info);
        if (st == SQ_OK && info.size != size)
            st = sq_fail(SQ_ERR_MISMATCH, "%s: size %llu, the manifest says %llu", at, (unsigned long long)info.size,
                         (unsigned long long)size);
        if (st == SQ_OK && info.sha256[0] && strcmp(info.sha256, sha256))
            st = sq_fail(SQ_ERR_MISMATCH, "%s: sha256 %s (recorded at upload), the manifest says %s", at,
                         info.sha256, sha256);
        *server_copy = st == SQ_OK && sq_uri_is_s3(p->target) && info.sha256[0] && size <= SQ_STORE_MAX_COPY_BYTES;
    }
    free(at);
    return st;
}

/* A server-side copy's destination has the listed size and SHA-256. */
static sq_status check_copied(push_job *p, json_t *manifest, const char *name, const char *dst)
{
    uint64_t size;
    const char *sha256;
    sq_object_info info;
    SQ_TRY(sq_manifest_entry(manifest, name, &size, &sha256));
    SQ_TRY(sq_store_head(p->store, dst, &info));
    if (info.size != size || strcmp(info.sha256, sha256))
        return sq_fail(SQ_ERR_MISMATCH, "%s: the copy has size %llu and sha256 '%s', the manifest says %llu and %s",
                       dst, (unsigned long long)info.size, info.sha256, (unsigned long long)size, sha256);
    return SQ_OK;
}

/* An s3:// source object downloaded once into scratch, checked, uploaded. */
static sq_status stream_through_scratch(push_job *p, json_t *manifest, const char *name, const char *src,
                                        const char *dst)
{
    if (!p->scratch)
        SQ_TRY(sq_scratch_dir_create(&p->scratch));
    char *local = sq_path_join(p->scratch, "file");
    if (!local)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", src);
    sq_status st = sq_store_get_file(p->store, src, local);
    if (st == SQ_OK)
        st = sq_manifest_check_file(manifest, name, local, src);
    if (st == SQ_OK)
        st = sq_store_put_file(p->store, dst, local);
    unlink(local);
    free(local);
    return st;
}

static sq_status transfer(push_job *p, json_t *manifest, const char *name, int server_copy)
{
    char *src = p->source_dir ? sq_path_join(p->source_dir, name) : sq_uri_join(p->source_uri, name);
    char *dst = sq_uri_join(p->target, name);
    sq_status st = SQ_OK;
    if (!src || !dst)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", p->source_uri);
    else if (p->source_dir)
        st = sq_store_put_file(p->store, dst, src);
    else if (server_copy) {
        st = sq_store_copy(p->store, src, dst);
        if (st == SQ_OK)
            st = check_copied(p, manifest, name, dst);
    } else
        st = stream_through_scratch(p, manifest, name, src, dst);
    free(src);
    free(dst);
    return st;
}

/* The source's manifest, read through the store and validated. */
static sq_status read_manifest(sq_store *store, const char *checkpoint_uri, json_t **manifest)
{
    char *uri = sq_uri_join(checkpoint_uri, SQ_MANIFEST_FILE);
    void *text = NULL;
    size_t len = 0;
    sq_status st = uri ? sq_store_get(store, uri, &text, &len) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = sq_manifest_parse(text, len, uri, manifest);
    free(text);
    free(uri);
    return st;
}

/* The source manifest with the request's fields, name, version and created set. */
static sq_status store_manifest(json_t *source, const sq_push_request *req, const char *origin, json_t **out)
{
    json_t *m = json_deep_copy(source);
    if (!m)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    sq_status st = req->meta ? sq_manifest_set_meta(m, req->meta, origin) : SQ_OK;
    const char *name = req->name ? req->name : json_string_value(json_object_get(m, "name"));
    const char *version = req->version ? req->version : json_string_value(json_object_get(m, "version"));
    if (st == SQ_OK && (!sq_manifest_valid_name(name) || !sq_manifest_valid_name(version)))
        st = sq_fail(SQ_ERR_ARG, "%s: name and version (from --name/--version or the manifest) must be 1-128 "
                                 "characters of A-Z a-z 0-9 . _ - (got '%s', '%s')",
                     origin, name ? name : "", version ? version : "");
    json_t *fields = st == SQ_OK ? json_pack("{s:s, s:s}", "name", name, "version", version) : NULL;
    if (fields && !json_object_get(m, "created")) {
        char created[21];
        sq_manifest_now(created);
        json_object_set_new(fields, "created", json_string(created));
    }
    if (st == SQ_OK)
        st = fields ? sq_manifest_set_meta(m, fields, origin) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    json_decref(fields);
    if (st != SQ_OK)
        json_decref(m);
    else
        *out = m;
    return st;
}

static json_t *make_record(json_t *manifest, const char *manifest_sha256)
{
    const char *name = json_string_value(json_object_get(manifest, "name"));
    const char *version = json_string_value(json_object_get(manifest, "version"));
    char rel[300];
    snprintf(rel, sizeof(rel), "%s/%s", name, version);
    json_t *record = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:s}", "name", name, "version", version, "uri", rel,
                               "created", json_string_value(json_object_get(manifest, "created")), "files",
                               (json_int_t)json_object_size(json_object_get(manifest, "files")), "bytes",
                               (json_int_t)sq_manifest_total_bytes(manifest), "manifest_sha256", manifest_sha256);
    static const char *copied[] = {"source_model", "method", "metrics"};
    for (size_t k = 0; record && k < sizeof(copied) / sizeof(copied[0]); k++)
        json_object_set(record, copied[k], json_object_get(manifest, copied[k]) ? json_object_get(manifest, copied[k])
                                                                                : json_null());
    return record;
}

/* Check, copy, then the manifest, the entry and the index. */
static sq_status push_checkpoint(push_job *p, json_t *source, json_t *manifest, const char *store_uri,
                                 sq_push_result *result)
{
    json_t *files = json_object_get(source, "files");
    size_t n = json_object_size(files), i = 0;
    int *server_copy = calloc(n, sizeof *server_copy);
    if (!server_copy)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", p->source_uri);
    sq_status st = SQ_OK;
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry) {
        if ((st = check_source(p, source, name, &server_copy[i++])) != SQ_OK)
            break;
    }
    i = 0;
    if (st == SQ_OK)
        sq_log_info("push %s -> %s (%zu files)", p->source_uri, p->target, n);
    json_object_foreach(files, name, entry) {
        if (st != SQ_OK || (st = transfer(p, source, name, server_copy[i++])) != SQ_OK)
            break;
    }
    free(server_copy);
    SQ_TRY(st);
    char *text = sq_manifest_dump(manifest);
    char *manifest_uri = sq_uri_join(p->target, SQ_MANIFEST_FILE);
    char entry_name[300];
    snprintf(entry_name, sizeof(entry_name), "%s.json", json_string_value(json_object_get(manifest, "version")));
    char *entries = sq_uri_join(store_uri, "entries");
    char *entry_uri = entries ? join3(entries, json_string_value(json_object_get(manifest, "name")), entry_name) : NULL;
    if (!text || !manifest_uri || !entry_uri)
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", p->source_uri);
    json_t *record = NULL;
    if (st == SQ_OK) {
        sq_sha256_hex(text, strlen(text), result->manifest_sha256);
        st = sq_store_put(p->store, manifest_uri, text, strlen(text));
    }
    if (st == SQ_OK && !(record = make_record(manifest, result->manifest_sha256)))
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", p->source_uri);
    if (st == SQ_OK)
        st = put_json(p->store, entry_uri, record);
    if (st == SQ_OK)
        st = update_index(p->store, store_uri);
    json_decref(record);
    free(text);
    free(manifest_uri);
    free(entries);
    free(entry_uri);
    return st;
}

sq_status sq_model_push(sq_store *store, const char *source_uri, const char *store_uri, const sq_push_request *req,
                        sq_push_result *result)
{
    static const sq_push_request no_request;
    sq_push_result mine = {0};
    push_job p = {.store = store, .source_uri = source_uri};
    json_t *source = NULL, *manifest = NULL;
    sq_uri u;
    sq_status st = sq_uri_parse(&u, source_uri);
    if (st == SQ_OK) {
        if (u.kind == SQ_URI_LOCAL && !(p.source_dir = strdup(u.path)))
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        sq_uri_free(&u);
    }
    if (st == SQ_OK)
        st = read_manifest(store, source_uri, &source);
    if (st == SQ_OK)
        st = store_manifest(source, req ? req : &no_request, source_uri, &manifest);
    if (st == SQ_OK && !(p.target = join3(store_uri, json_string_value(json_object_get(manifest, "name")),
                                          json_string_value(json_object_get(manifest, "version")))))
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = push_checkpoint(&p, source, manifest, store_uri, &mine);
    if (p.scratch && sq_scratch_dir_remove(p.scratch) != SQ_OK)
        sq_log_info("%s", sq_last_error());
    if (st == SQ_OK && result) {
        *result = mine;
        result->model_uri = p.target;
        p.target = NULL;
    }
    if (st != SQ_OK)
        sq_fail_context(st, "push %s", source_uri);
    json_decref(source);
    json_decref(manifest);
    free(p.source_dir);
    free(p.target);
    free(p.scratch);
    return st;
}

void sq_push_result_free(sq_push_result *result)
{
    free(result->model_uri);
    memset(result, 0, sizeof *result);
}

/* Download one listed file next to its destination, check it, move it into place. */
static sq_status pull_file(sq_store *store, json_t *manifest, const char *model_uri, const char *dir,
                           const char *name)
{
    char *src = sq_uri_join(model_uri, name);
    char *dst = sq_path_join(dir, name);
    size_t pl = dst ? strlen(dst) + 16 : 0;
    char *partial = dst ? malloc(pl) : NULL;
    sq_status st = SQ_OK;
    if (!src || !dst || !partial) {
        st = sq_fail(SQ_ERR_NOMEM, "pull %s: out of memory", model_uri);
    } else {
        snprintf(partial, pl, "%s.download", dst);
        st = sq_store_get_file(store, src, partial);
        if (st == SQ_OK)
            st = sq_manifest_check_file(manifest, name, partial, src);
        if (st == SQ_OK && rename(partial, dst) != 0)
            st = sq_fail(SQ_ERR_IO, "pull: cannot rename %s to %s", partial, dst);
        if (st != SQ_OK)
            unlink(partial);
    }
    free(src);
    free(dst);
    free(partial);
    return st;
}

sq_status sq_model_pull(sq_store *store, const char *model_uri, const char *dir)
{
    char *manifest_uri = sq_uri_join(model_uri, SQ_MANIFEST_FILE);
    if (!manifest_uri)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    void *text = NULL;
    size_t len = 0;
    json_t *manifest = NULL;
    sq_status st = sq_store_get(store, manifest_uri, &text, &len);
    if (st == SQ_OK)
        st = sq_manifest_parse(text, len, manifest_uri, &manifest);
    if (st == SQ_OK)
        st = sq_make_dirs(dir);
    const char *name;
    json_t *f;
    json_object_foreach(json_object_get(manifest, "files"), name, f) {
        if (st != SQ_OK || (st = pull_file(store, manifest, model_uri, dir, name)) != SQ_OK)
            break;
    }
    if (st == SQ_OK) {
        char *path = sq_path_join(dir, SQ_MANIFEST_FILE);
        st = path ? sq_write_file_atomic(path, text, len) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        free(path);
    }
    json_decref(manifest);
    free(text);
    free(manifest_uri);
    return st;
}

sq_status sq_model_index(sq_store *store, const char *store_uri, json_t **index)
{
    char *uri = sq_uri_join(store_uri, "index.json");
    if (!uri)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = get_json(store, uri, index);
    if (st == SQ_ERR_NOT_FOUND) {
        sq_clear_error();
        *index = json_pack("{s:s,s:[]}", "format", "shardq-index/1", "models");
        st = SQ_OK;
    } else if (st == SQ_OK && !json_is_array(json_object_get(*index, "models"))) {
        json_decref(*index);
        st = sq_fail(SQ_ERR_FORMAT, "%s: models: must be an array", uri);
    }
    free(uri);
    return st;
}
