/* model_store.c: push, pull and index checkpoints in a model store (see model_store.h). */
#include "store/model_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/sha256.h"
#include "store/uri.h"

#define MANIFEST "manifest.json"
#define INDEX_ATTEMPTS 20

/* A relative path safe to join under a directory: no empty, "." or ".." parts, not absolute. */
static int safe_relative_path(const char *p)
{
    if (!p[0] || p[0] == '/')
        return 0;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += n + (e ? 1 : 0);
        if (e && !*s)
            return 0;
    }
    return 1;
}

static int safe_name(const char *s)
{
    if (!s || !s[0] || strlen(s) > 128 || s[0] == '.')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
              *s == '_' || *s == '-'))
            return 0;
    return 1;
}

sq_status sq_manifest_write(const char *dir, json_t *meta)
{
    sq_store *local;
    SQ_TRY(sq_store_open(&local, NULL));
    sq_object_list list;
    sq_status st = sq_store_list(local, dir, &list);
    sq_store_close(local);
    SQ_TRY(st);
    json_t *files = json_object();
    json_t *doc = json_pack("{s:s}", "format", "shardq-manifest/1");
    for (int i = 0; st == SQ_OK && i < list.n; i++) {
        if (!strcmp(list.names[i], MANIFEST))
            continue;
        char *path = sq_path_join(dir, list.names[i]);
        char hex[SQ_SHA256_HEX_LEN + 1];
        st = path ? sq_sha256_file(path, hex) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
        if (st == SQ_OK)
            json_object_set_new(files, list.names[i],
                                json_pack("{s:I,s:s}", "size", (json_int_t)list.sizes[i], "sha256", hex));
        free(path);
    }
    sq_object_list_free(&list);
    if (st == SQ_OK && meta) {
        static const char *keys[] = {"name", "version", "source_model", "method", "metrics"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (json_object_get(meta, keys[k]))
                json_object_set(doc, keys[k], json_object_get(meta, keys[k]));
    }
    json_object_set_new(doc, "files", files);
    char *text = st == SQ_OK ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (st != SQ_OK)
        return st;
    char *path = sq_path_join(dir, MANIFEST);
    st = text && path ? sq_write_file_atomic(path, text, strlen(text)) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    free(text);
    free(path);
    return st;
}

/* Parse manifest text; check its shape. `origin` names it in messages. */
static sq_status parse_manifest(const char *origin, const char *text, size_t len, json_t **out)
{
    json_error_t err;
    json_t *doc = json_loadb(text, len, 0, &err);
    if (!doc)
        return sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON at line %d: %s", origin, err.line, err.text);
    json_t *files = json_object_get(doc, "files");
    if (!json_is_object(doc) || !json_is_object(files)) {
        json_decref(doc);
        return sq_fail(SQ_ERR_FORMAT, "%s: files: must be an object of {size, sha256}", origin);
    }
    const char *name;
    json_t *f;
    json_object_foreach(files, name, f) {
        const char *sha = json_string_value(json_object_get(f, "sha256"));
        json_t *size = json_object_get(f, "size");
        if (!safe_relative_path(name) || !strcmp(name, MANIFEST) || !sha || strlen(sha) != SQ_SHA256_HEX_LEN ||
            !json_is_integer(size) || json_integer_value(size) < 0) {
            json_decref(doc);
            return sq_fail(SQ_ERR_FORMAT, "%s: files.%s: needs a safe relative path, an integer size and a sha256",
                           origin, name);
        }
    }
    *out = doc;
    return SQ_OK;
}

sq_status sq_manifest_verify_dir(const char *dir, json_t **manifest)
{
    char *path = sq_path_join(dir, MANIFEST);
    char *text = NULL;
    size_t len = 0;
    sq_status st = path ? sq_read_file(path, &text, &len) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    json_t *doc = NULL;
    if (st == SQ_OK)
        st = parse_manifest(path, text, len, &doc);
    free(text);
    const char *name;
    json_t *f;
    if (st == SQ_OK) {
        json_object_foreach(json_object_get(doc, "files"), name, f) {
            char *fp = sq_path_join(dir, name);
            uint64_t size = 0;
            char hex[SQ_SHA256_HEX_LEN + 1];
            st = fp ? sq_file_size(fp, &size) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
            if (st == SQ_OK && size != (uint64_t)json_integer_value(json_object_get(f, "size")))
                st = sq_fail(SQ_ERR_MISMATCH, "%s: size %llu, manifest says %lld", fp, (unsigned long long)size,
                             (long long)json_integer_value(json_object_get(f, "size")));
            if (st == SQ_OK)
                st = sq_sha256_file(fp, hex);
            if (st == SQ_OK && strcmp(hex, json_string_value(json_object_get(f, "sha256"))))
                st = sq_fail(SQ_ERR_MISMATCH, "%s: sha256 %s, manifest says %s", fp, hex,
                             json_string_value(json_object_get(f, "sha256")));
            free(fp);
            if (st != SQ_OK)
                break;
        }
    }
    free(path);
    if (st != SQ_OK) {
        json_decref(doc);
        return st;
    }
    if (manifest)
        *manifest = doc;
    else
        json_decref(doc);
    return SQ_OK;
}

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

static sq_status upload_files(sq_store *store, const char *dir, const char *model_uri, json_t *manifest)
{
    const char *name;
    json_t *f;
    json_object_foreach(json_object_get(manifest, "files"), name, f) {
        char *src = sq_path_join(dir, name);
        char *dst = sq_uri_join(model_uri, name);
        sq_status st = src && dst ? sq_store_put_file(store, dst, src) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        free(src);
        free(dst);
        SQ_TRY(st);
    }
    char *src = sq_path_join(dir, MANIFEST);
    char *dst = sq_uri_join(model_uri, MANIFEST);
    sq_status st = src && dst ? sq_store_put_file(store, dst, src) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    free(src);
    free(dst);
    return st;
}

static json_t *make_record(json_t *manifest, const char *name, const char *version)
{
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_int_t bytes = 0;
    const char *fname;
    json_t *f;
    json_object_foreach(json_object_get(manifest, "files"), fname, f)
        bytes += json_integer_value(json_object_get(f, "size"));
    char rel[300];
    snprintf(rel, sizeof(rel), "%s/%s", name, version);
    json_t *record = json_pack("{s:s,s:s,s:s,s:s,s:I,s:I}", "name", name, "version", version, "uri", rel, "created",
                               created, "files", (json_int_t)json_object_size(json_object_get(manifest, "files")),
                               "bytes", bytes);
    static const char *copied[] = {"source_model", "method", "metrics"};
    for (size_t k = 0; record && k < sizeof(copied) / sizeof(copied[0]); k++)
        json_object_set(record, copied[k], json_object_get(manifest, copied[k]) ? json_object_get(manifest, copied[k])
                                                                                : json_null());
    return record;
}

sq_status sq_model_push(sq_store *store, const char *dir, const char *store_uri, const char *name,
                        const char *version, char **model_uri)
{
    json_t *manifest;
    sq_status st = sq_manifest_verify_dir(dir, &manifest);
    if (st != SQ_OK)
        return sq_fail_context(st, "push %s", dir);
    if (!name)
        name = json_string_value(json_object_get(manifest, "name"));
    if (!version)
        version = json_string_value(json_object_get(manifest, "version"));
    if (!safe_name(name) || !safe_name(version)) {
        json_decref(manifest);
        return sq_fail(SQ_ERR_ARG, "push %s: name and version (from --name/--version or the manifest) must be "
                                   "1-128 characters of A-Z a-z 0-9 . _ - (got '%s', '%s')",
                       dir, name ? name : "", version ? version : "");
    }
    char entry_name[300];
    snprintf(entry_name, sizeof(entry_name), "%s.json", version);
    char *target = join3(store_uri, name, version);
    char *entries = sq_uri_join(store_uri, "entries");
    char *entry = entries ? join3(entries, name, entry_name) : NULL;
    json_t *record = make_record(manifest, name, version);
    if (!target || !entry || !record)
        st = sq_fail(SQ_ERR_NOMEM, "push %s: out of memory", dir);
    if (st == SQ_OK) {
        sq_log_info("push %s -> %s (%d files)", dir, target, (int)json_object_size(json_object_get(manifest, "files")));
        st = upload_files(store, dir, target, manifest);
    }
    if (st == SQ_OK)
        st = put_json(store, entry, record);
    if (st == SQ_OK)
        st = update_index(store, store_uri);
    if (st == SQ_OK && model_uri) {
        *model_uri = target;
        target = NULL;
    }
    json_decref(record);
    json_decref(manifest);
    free(target);
    free(entries);
    free(entry);
    return st;
}

sq_status sq_model_pull(sq_store *store, const char *model_uri, const char *dir)
{
    char *manifest_uri = sq_uri_join(model_uri, MANIFEST);
    if (!manifest_uri)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    void *text = NULL;
    size_t len = 0;
    json_t *manifest = NULL;
    sq_status st = sq_store_get(store, manifest_uri, &text, &len);
    if (st == SQ_OK)
        st = parse_manifest(manifest_uri, text, len, &manifest);
    if (st == SQ_OK)
        st = sq_make_dirs(dir);
    const char *name;
    json_t *f;
    if (st == SQ_OK) {
        json_object_foreach(json_object_get(manifest, "files"), name, f) {
            char *src = sq_uri_join(model_uri, name);
            char *dst = sq_path_join(dir, name);
            size_t pl = dst ? strlen(dst) + 16 : 0;
            char *partial = dst ? malloc(pl) : NULL;
            char hex[SQ_SHA256_HEX_LEN + 1];
            if (!src || !dst || !partial) {
                st = sq_fail(SQ_ERR_NOMEM, "pull %s: out of memory", model_uri);
            } else {
                snprintf(partial, pl, "%s.download", dst);
                st = sq_store_get_file(store, src, partial);
                if (st == SQ_OK)
                    st = sq_sha256_file(partial, hex);
                if (st == SQ_OK && strcmp(hex, json_string_value(json_object_get(f, "sha256"))))
                    st = sq_fail(SQ_ERR_MISMATCH, "pull %s: sha256 %s, manifest says %s", src, hex,
                                 json_string_value(json_object_get(f, "sha256")));
                if (st == SQ_OK && rename(partial, dst) != 0)
                    st = sq_fail(SQ_ERR_IO, "pull: cannot rename %s to %s", partial, dst);
                if (st != SQ_OK)
                    unlink(partial);
            }
            free(src);
            free(dst);
            free(partial);
            if (st != SQ_OK)
                break;
        }
    }
    if (st == SQ_OK) {
        char *path = sq_path_join(dir, MANIFEST);
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
