/* safetensors.c: a distrustful reader (header validation, read-only mmap) and an
 * atomic, streaming writer for the safetensors format.
 *
 * The header parser checks every rule listed in safetensors.h before any offset
 * is used, so a pointer from sq_st_data() always lies inside the mapping. The
 * writer streams tensor bytes straight from the caller's buffers into a temporary
 * file, so writing a multi-gigabyte shard needs no extra copy in memory. */
#include "core/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"

#define METADATA_KEY "__metadata__"

uint64_t sq_st_numel(const sq_st_tensor *tensor)
{
    uint64_t n = 1;
    for (int d = 0; d < tensor->ndim; d++)
        n *= (uint64_t)tensor->shape[d];
    return n;
}

void sq_st_header_free(sq_st_header *header)
{
    for (int i = 0; i < header->n_tensors; i++)
        free(header->tensors[i].name);
    free(header->tensors);
    if (header->metadata)
        json_decref(header->metadata);
    memset(header, 0, sizeof *header);
}

static sq_status check_metadata(const char *origin, json_t *metadata)
{
    if (!json_is_object(metadata))
        return sq_fail(SQ_ERR_FORMAT, "%s: \"%s\" must be an object of strings", origin, METADATA_KEY);
    const char *key;
    json_t *value;
    json_object_foreach(metadata, key, value) {
        if (!json_is_string(value))
            return sq_fail(SQ_ERR_FORMAT, "%s: \"%s\".\"%s\" must be a string", origin, METADATA_KEY, key);
    }
    return SQ_OK;
}

/* Parse one tensor entry into `t`; `data_size` bounds its byte range. */
static sq_status parse_entry(sq_st_tensor *t, const char *origin, const char *name, json_t *entry,
                             uint64_t data_size)
{
    if (!json_is_object(entry))
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": entry must be an object", origin, name);

    json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": \"dtype\" must be a string", origin, name);
    if (sq_dtype_from_name(json_string_value(dtype), &t->dtype) != SQ_OK)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", origin, name,
                       json_string_value(dtype));

    json_t *shape = json_object_get(entry, "shape");
    if (!json_is_array(shape))
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": \"shape\" must be an array", origin, name);
    size_t ndim = json_array_size(shape);
    if (ndim > SQ_ST_MAX_DIMS)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": shape has %zu dimensions (at most %d)", origin,
                       name, ndim, SQ_ST_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t numel = 1;
    for (size_t d = 0; d < ndim; d++) {
        json_t *dim = json_array_get(shape, d);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": shape[%zu] must be a non-negative integer",
                           origin, name, d);
        uint64_t n = (uint64_t)json_integer_value(dim);
        if (n != 0 && numel > UINT64_MAX / n)
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": element count overflows", origin, name);
        numel *= n;
        t->shape[d] = (int64_t)n;
    }
    size_t elem = sq_dtype_size(t->dtype);
    if (numel > UINT64_MAX / elem)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": byte size overflows", origin, name);

    json_t *offsets = json_object_get(entry, "data_offsets");
    if (!json_is_array(offsets) || json_array_size(offsets) != 2)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end]", origin,
                       name);
    json_t *jb = json_array_get(offsets, 0), *je = json_array_get(offsets, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
        json_integer_value(je) < 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": data_offsets must be non-negative integers",
                       origin, name);
    uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
    if (begin > end)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\": data_offsets begin %llu > end %llu", origin, name,
                       (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return sq_fail(SQ_ERR_FORMAT,
                       "%s: tensor \"%s\": data_offsets end %llu is outside the data buffer (%llu bytes)",
                       origin, name, (unsigned long long)end, (unsigned long long)data_size);
    if (numel * elem != end - begin)
        return sq_fail(SQ_ERR_FORMAT,
                       "%s: tensor \"%s\": shape and dtype give %llu bytes but data_offsets span %llu",
                       origin, name, (unsigned long long)(numel * elem), (unsigned long long)(end - begin));
    t->begin = begin;
    t->nbytes = end - begin;
    t->name = strdup(name);
    if (!t->name)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    return SQ_OK;
}

static int compare_by_offset(const void *a, const void *b)
{
    const sq_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

sq_status sq_st_parse_header(sq_st_header *out, const char *origin, const char *json_text,
                             uint64_t json_len, uint64_t file_size)
{
    memset(out, 0, sizeof *out);
    if (json_len > SQ_ST_MAX_HEADER)
        return sq_fail(SQ_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", origin,
                       (unsigned long long)json_len, SQ_ST_MAX_HEADER);
    if (file_size < 8 || json_len > file_size - 8)
        return sq_fail(SQ_ERR_FORMAT, "%s: header length %llu exceeds the file size (%llu bytes)", origin,
                       (unsigned long long)json_len, (unsigned long long)file_size);
    uint64_t data_size = file_size - 8 - json_len;

    json_error_t jerr;
    json_t *root = json_loadb(json_text, (size_t)json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return sq_fail(SQ_ERR_FORMAT, "%s: header is not valid JSON (line %d, column %d): %s", origin,
                       jerr.line, jerr.column, jerr.text);
    sq_status st = SQ_OK;
    if (!json_is_object(root)) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: header must be a JSON object", origin);
        goto done;
    }

    size_t capacity = json_object_size(root);
    out->tensors = calloc(capacity ? capacity : 1, sizeof *out->tensors);
    if (!out->tensors) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
        goto done;
    }
    out->data_start = 8 + json_len;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (!strcmp(key, METADATA_KEY)) {
            SQ_TRY_GOTO(st, check_metadata(origin, value), done);
            out->metadata = json_incref(value);
            continue;
        }
        SQ_TRY_GOTO(st, parse_entry(&out->tensors[out->n_tensors], origin, key, value, data_size), done);
        out->n_tensors++;
    }

    qsort(out->tensors, (size_t)out->n_tensors, sizeof *out->tensors, compare_by_offset);
    for (int i = 1; i < out->n_tensors; i++) {
        const sq_st_tensor *prev = &out->tensors[i - 1], *cur = &out->tensors[i];
        if (cur->begin < prev->begin + prev->nbytes) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\" overlaps tensor \"%s\" in the data buffer", origin,
                         cur->name, prev->name);
            goto done;
        }
    }

done:
    json_decref(root);
    if (st != SQ_OK)
        sq_st_header_free(out);
    return st;
}

const sq_st_tensor *sq_st_find(const sq_st_header *header, const char *name)
{
    for (int i = 0; i < header->n_tensors; i++)
        if (!strcmp(header->tensors[i].name, name))
            return &header->tensors[i];
    return NULL;
}

sq_status sq_st_open(sq_st_file *file, const char *path)
{
    memset(file, 0, sizeof *file);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return sq_fail(SQ_ERR_IO, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sq_fail(SQ_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return sq_fail(SQ_ERR_FORMAT, "%s: file is %llu bytes, too short for a safetensors header", path,
                       (unsigned long long)size);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED)
        return sq_fail(SQ_ERR_IO, "%s: cannot mmap: %s", path, strerror(map_errno));

    const uint8_t *bytes = map;
    uint64_t json_len = 0;
    for (int i = 7; i >= 0; i--)
        json_len = (json_len << 8) | bytes[i];
    sq_status st = sq_st_parse_header(&file->header, path, (const char *)bytes + 8, json_len, size);
    if (st == SQ_OK) {
        file->path = strdup(path);
        if (!file->path) {
            sq_st_header_free(&file->header);
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    if (st != SQ_OK) {
        munmap(map, (size_t)size);
        return st;
    }
    file->map = bytes;
    file->file_size = size;
    return SQ_OK;
}

void sq_st_close(sq_st_file *file)
{
    if (file->map)
        munmap((void *)file->map, (size_t)file->file_size);
    sq_st_header_free(&file->header);
    free(file->path);
    memset(file, 0, sizeof *file);
}

const void *sq_st_data(const sq_st_file *file, const sq_st_tensor *tensor)
{
    return file->map + file->header.data_start + tensor->begin;
}

/* ---- writer ---- */

static uint64_t entry_bytes(const sq_st_entry *e)
{
    uint64_t n = sq_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++)
        n *= (uint64_t)e->shape[d];
    return n;
}

/* The header JSON text, padded with spaces to a multiple of 8 bytes. */
static sq_status build_header(const char *path, const sq_st_entry *entries, int n, json_t *metadata,
                              char **text, size_t *len)
{
    json_t *root = json_object();
    if (!root)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
    sq_status st = SQ_OK;
    if (metadata) {
        if (check_metadata(path, metadata) != SQ_OK) {
            st = sq_fail_context(SQ_ERR_ARG, "cannot write");
            goto done;
        }
        json_object_set(root, METADATA_KEY, metadata);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const sq_st_entry *e = &entries[i];
        if (!e->name || !strcmp(e->name, METADATA_KEY) || json_object_get(root, e->name)) {
            st = sq_fail(SQ_ERR_ARG, "%s: tensor name \"%s\" is missing, reserved or repeated", path,
                         e->name ? e->name : "(null)");
            goto done;
        }
        if ((unsigned)e->dtype >= SQ_DTYPE_COUNT || e->ndim < 0 || e->ndim > SQ_ST_MAX_DIMS) {
            st = sq_fail(SQ_ERR_ARG, "%s: tensor \"%s\": invalid dtype or rank", path, e->name);
            goto done;
        }
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) {
                json_decref(shape);
                st = sq_fail(SQ_ERR_ARG, "%s: tensor \"%s\": negative dimension", path, e->name);
                goto done;
            }
            json_array_append_new(shape, json_integer(e->shape[d]));
        }
        uint64_t bytes = entry_bytes(e);
        if (bytes > 0 && !e->data) {
            json_decref(shape);
            st = sq_fail(SQ_ERR_ARG, "%s: tensor \"%s\": no data", path, e->name);
            goto done;
        }
        json_t *entry = json_pack("{s:s, s:o, s:[I,I]}", "dtype", sq_dtype_name(e->dtype), "shape", shape,
                                  "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
        if (!entry || json_object_set_new(root, e->name, entry) != 0) {
            st = sq_fail(SQ_ERR_NOMEM, "%s: cannot build header", path);
            goto done;
        }
        offset += bytes;
    }
    char *json = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!json) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: cannot serialize header", path);
        goto done;
    }
    size_t raw = strlen(json);
    size_t padded = (raw + 7) / 8 * 8;
    char *buf = realloc(json, padded + 1);
    if (!buf) {
        free(json);
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memset(buf + raw, ' ', padded - raw);
    buf[padded] = '\0';
    *text = buf;
    *len = padded;
done:
    json_decref(root);
    return st;
}

/* Write len bytes, adding them to `hash` first when there is one. */
static sq_status write_all(int fd, const char *tmp, const void *data, uint64_t len, sq_sha256_ctx *hash)
{
    const uint8_t *p = data;
    if (hash)
        sq_sha256_update(hash, data, (size_t)len);
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
        ssize_t w = write(fd, p, chunk);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return sq_fail(SQ_ERR_IO, "%s: write failed: %s", tmp, w < 0 ? strerror(errno) : "no progress");
        p += w;
        len -= (uint64_t)w;
    }
    return SQ_OK;
}

sq_status sq_st_write(const char *path, const sq_st_entry *entries, int n, json_t *metadata)
{
    return sq_st_write_hashed(path, entries, n, metadata, NULL);
}

sq_status sq_st_write_hashed(const char *path, const sq_st_entry *entries, int n, json_t *metadata,
                             char sha256_hex[SQ_SHA256_HEX_LEN + 1])
{
    if (n < 0 || (n > 0 && !entries))
        return sq_fail(SQ_ERR_ARG, "%s: invalid tensor list", path);
    char *header = NULL;
    size_t header_len = 0;
    SQ_TRY(build_header(path, entries, n, metadata, &header, &header_len));
    sq_sha256_ctx *hash = NULL;
    if (sha256_hex) {
        sq_status begun = sq_sha256_begin(&hash);
        if (begun != SQ_OK) {
            free(header);
            return begun;
        }
    }

    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp) {
        free(header);
        return sq_fail(SQ_ERR_ARG, "%s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        free(header);
        if (hash)
            sq_sha256_end(hash, sha256_hex); /* frees it */
        return sq_fail(SQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    uint8_t prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    sq_status st = write_all(fd, tmp, prefix, 8, hash);
    if (st == SQ_OK)
        st = write_all(fd, tmp, header, header_len, hash);
    for (int i = 0; i < n && st == SQ_OK; i++)
        st = write_all(fd, tmp, entries[i].data, entry_bytes(&entries[i]), hash);
    free(header);
    if (hash)
        sq_sha256_end(hash, sha256_hex);
    if (st == SQ_OK && fsync(fd) != 0)
        st = sq_fail(SQ_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == SQ_OK)
        st = sq_fail(SQ_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    return sq_rename_into_place(tmp, path, st);
}
