/* manifest.c: build, validate, read and write manifest.json (see manifest.h). */
#include "store/manifest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fileio.h"
#include "core/json_file.h"
#include "core/sha256.h"

bool sq_manifest_valid_name(const char *s)
{
    if (!s || !s[0] || strlen(s) > 128 || s[0] == '.')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

/* A relative path safe to join under a directory: no empty, "." or ".." parts, not absolute. */
static bool safe_relative_path(const char *p)
{
    if (!p[0] || p[0] == '/')
        return false;
    for (const char *s = p; *s;) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n + (e ? 1 : 0);
        if (e && !*s)
            return false;
    }
    return true;
}

static bool is_sha256_hex(const char *s)
{
    if (!s || strlen(s) != SQ_SHA256_HEX_LEN)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* "YYYY-MM-DDTHH:MM:SSZ" with every digit where a digit belongs. */
static bool is_utc_timestamp(const char *s)
{
    static const char pattern[] = "dddd-dd-ddTdd:dd:ddZ";
    if (!s || strlen(s) != sizeof pattern - 1)
        return false;
    for (size_t i = 0; pattern[i]; i++)
        if (pattern[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != pattern[i])
            return false;
    return true;
}

/* One listed file's size and sha256, or the failure of reading it (messages are thread-local). */
typedef struct {
    uint64_t size;
    char hex[SQ_SHA256_HEX_LEN + 1];
    sq_status status;
    char message[512];
} file_digest;

static void digest_file(const char *dir, const char *file, const char *known_sha256, file_digest *d)
{
    char *path = sq_path_join(dir, file);
    d->status = path ? sq_file_size(path, &d->size) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    if (d->status == SQ_OK && known_sha256)
        snprintf(d->hex, sizeof d->hex, "%s", known_sha256);
    else if (d->status == SQ_OK)
        d->status = sq_sha256_file(path, d->hex);
    if (d->status != SQ_OK)
        snprintf(d->message, sizeof d->message, "%s", sq_last_error());
    free(path);
}

/* The files are hashed in parallel, one thread per file (a checkpoint's shards). */
sq_status sq_manifest_describe(const char *dir, char *const *files, int n_files, const char *const *known_sha256,
                               json_t **manifest)
{
    json_t *listed = json_object();
    *manifest = json_pack("{s:s, s:o}", "format", SQ_MANIFEST_FORMAT, "files", listed);
    file_digest *digests = calloc(n_files > 0 ? (size_t)n_files : 1, sizeof *digests);
    if (!*manifest || !digests) {
        json_decref(*manifest);
        *manifest = NULL;
        free(digests);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < n_files; k++)
        digest_file(dir, files[k], known_sha256 ? known_sha256[k] : NULL, &digests[k]);
    sq_status st = SQ_OK;
    for (int k = 0; k < n_files && st == SQ_OK; k++) {
        const file_digest *d = &digests[k];
        if (d->status != SQ_OK)
            st = sq_fail(d->status, "%s", d->message);
        else if (json_object_set_new(listed, files[k],
                                     json_pack("{s:s, s:I}", "sha256", d->hex, "size", (json_int_t)d->size)))
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    }
    free(digests);
    if (st == SQ_OK)
        st = sq_manifest_validate(*manifest, dir);
    if (st != SQ_OK) {
        json_decref(*manifest);
        *manifest = NULL;
    }
    return st;
}

/* The optional fields and the JSON type each must have. */
static const struct {
    const char *key;
    json_type type;
} optional_fields[] = {{"name", JSON_STRING},     {"version", JSON_STRING},   {"source_model", JSON_STRING},
                       {"method", JSON_STRING},   {"quantization", JSON_OBJECT}, {"sparsity", JSON_OBJECT},
                       {"metrics", JSON_OBJECT},  {"created", JSON_STRING}};
#define N_OPTIONAL (sizeof optional_fields / sizeof optional_fields[0])

static int optional_field(const char *key)
{
    for (size_t k = 0; k < N_OPTIONAL; k++)
        if (!strcmp(optional_fields[k].key, key))
            return (int)k;
    return -1;
}

static sq_status validate_file_entry(const char *origin, const char *path, json_t *entry)
{
    if (!safe_relative_path(path))
        return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"]: not a relative path inside the checkpoint", origin, path);
    if (!strcmp(path, SQ_MANIFEST_FILE))
        return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"]: the manifest cannot list itself", origin, path);
    if (!json_is_object(entry))
        return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"]: must be an object {sha256, size}", origin, path);
    const char *key;
    json_t *value;
    json_object_foreach(entry, key, value) {
        if (strcmp(key, "sha256") && strcmp(key, "size"))
            return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"].%s: unknown field (an entry has sha256 and size)",
                           origin, path, key);
    }
    if (!is_sha256_hex(json_string_value(json_object_get(entry, "sha256"))))
        return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"].sha256: must be 64 lowercase hex digits", origin, path);
    json_t *size = json_object_get(entry, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: files[\"%s\"].size: must be an integer >= 0", origin, path);
    return SQ_OK;
}

sq_status sq_manifest_validate(json_t *manifest, const char *origin)
{
    if (!json_is_object(manifest))
        return sq_fail(SQ_ERR_FORMAT, "%s: a manifest must be a JSON object", origin);
    const char *format = json_string_value(json_object_get(manifest, "format"));
    if (!format || strcmp(format, SQ_MANIFEST_FORMAT))
        return sq_fail(SQ_ERR_FORMAT, "%s: format: must be \"%s\" (got %s)", origin, SQ_MANIFEST_FORMAT,
                       format ? format : "none");
    json_t *files = json_object_get(manifest, "files");
    if (!json_is_object(files) || json_object_size(files) == 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: files: must be a non-empty object of path -> {sha256, size}", origin);
    const char *key;
    json_t *value;
    json_object_foreach(files, key, value) SQ_TRY(validate_file_entry(origin, key, value));
    json_object_foreach(manifest, key, value) {
        if (!strcmp(key, "format") || !strcmp(key, "files"))
            continue;
        int k = optional_field(key);
        if (k < 0)
            return sq_fail(SQ_ERR_FORMAT, "%s: %s: unknown field", origin, key);
        if (json_typeof(value) != optional_fields[k].type)
            return sq_fail(SQ_ERR_FORMAT, "%s: %s: must be a %s", origin, key,
                           optional_fields[k].type == JSON_STRING ? "string" : "JSON object");
    }
    static const char *const names[] = {"name", "version"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(manifest, names[k]);
        if (v && !sq_manifest_valid_name(json_string_value(v)))
            return sq_fail(SQ_ERR_FORMAT, "%s: %s: must be 1-128 characters of A-Z a-z 0-9 . _ - not starting with '.'",
                           origin, names[k]);
    }
    json_t *created = json_object_get(manifest, "created");
    if (created && !is_utc_timestamp(json_string_value(created)))
        return sq_fail(SQ_ERR_FORMAT, "%s: created: must be a UTC time YYYY-MM-DDTHH:MM:SSZ", origin);
    return SQ_OK;
}

sq_status sq_manifest_set_meta(json_t *manifest, json_t *meta, const char *origin)
{
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (optional_field(key) < 0)
            return sq_fail(SQ_ERR_ARG, "%s: %s: not a manifest field", origin, key);
        if (json_object_set(manifest, key, value))
            return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    }
    return sq_manifest_validate(manifest, origin);
}

sq_status sq_manifest_parse(const void *text, size_t len, const char *origin, json_t **manifest)
{
    json_error_t err;
    *manifest = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!*manifest)
        return sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON at line %d: %s", origin, err.line, err.text);
    sq_status st = sq_manifest_validate(*manifest, origin);
    if (st != SQ_OK) {
        json_decref(*manifest);
        *manifest = NULL;
    }
    return st;
}

/* Sorted keys: the same manifest is the same bytes, wherever it was built. */
#define MANIFEST_JSON_FLAGS (JSON_INDENT(2) | JSON_SORT_KEYS)

char *sq_manifest_dump(json_t *manifest) { return json_dumps(manifest, MANIFEST_JSON_FLAGS); }

sq_status sq_manifest_write(const char *dir, json_t *manifest)
{
    return sq_write_json_file(dir, SQ_MANIFEST_FILE, manifest, MANIFEST_JSON_FLAGS);
}

sq_status sq_manifest_load(const char *dir, json_t **manifest)
{
    char *path = sq_path_join(dir, SQ_MANIFEST_FILE);
    char *text = NULL;
    size_t len = 0;
    *manifest = NULL;
    sq_status st = path ? sq_read_file(path, &text, &len) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    if (st == SQ_OK)
        st = sq_manifest_parse(text, len, path, manifest);
    free(text);
    free(path);
    return st;
}

sq_status sq_manifest_entry(json_t *manifest, const char *path, uint64_t *size, const char **sha256)
{
    json_t *entry = json_object_get(json_object_get(manifest, "files"), path);
    if (!entry)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: not listed in the manifest", path);
    *size = (uint64_t)json_integer_value(json_object_get(entry, "size"));
    *sha256 = json_string_value(json_object_get(entry, "sha256"));
    return SQ_OK;
}

sq_status sq_manifest_check_file(json_t *manifest, const char *path, const char *local_path, const char *shown_as)
{
    uint64_t want_size, size = 0;
    const char *want_sha;
    char hex[SQ_SHA256_HEX_LEN + 1];
    SQ_TRY(sq_manifest_entry(manifest, path, &want_size, &want_sha));
    SQ_TRY(sq_file_size(local_path, &size));
    if (size != want_size)
        return sq_fail(SQ_ERR_MISMATCH, "%s: size %llu, the manifest says %llu", shown_as, (unsigned long long)size,
                       (unsigned long long)want_size);
    SQ_TRY(sq_sha256_file(local_path, hex));
    if (strcmp(hex, want_sha))
        return sq_fail(SQ_ERR_MISMATCH, "%s: sha256 %s, the manifest says %s", shown_as, hex, want_sha);
    return SQ_OK;
}

sq_status sq_manifest_verify_dir(const char *dir, json_t **manifest)
{
    json_t *doc;
    SQ_TRY(sq_manifest_load(dir, &doc));
    sq_status st = SQ_OK;
    const char *name;
    json_t *entry;
    json_object_foreach(json_object_get(doc, "files"), name, entry) {
        char *path = sq_path_join(dir, name);
        st = path ? sq_manifest_check_file(doc, name, path, path) : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
        free(path);
        if (st != SQ_OK)
            break;
    }
    if (st != SQ_OK || !manifest)
        json_decref(doc);
    else
        *manifest = doc;
    return st;
}

void sq_manifest_now(char created[21])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

uint64_t sq_manifest_total_bytes(json_t *manifest)
{
    uint64_t bytes = 0;
    const char *name;
    json_t *entry;
    json_object_foreach(json_object_get(manifest, "files"), name, entry)
        bytes += (uint64_t)json_integer_value(json_object_get(entry, "size"));
    return bytes;
}
