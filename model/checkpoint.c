/* checkpoint.c: one view over the tensors of a model directory, single file or sharded,
 * local (each file mmapped) or at an s3:// prefix (each file's header read by
 * ranged GETs at open, each tensor by one ranged GET when it is asked for).
 *
 * Sharded checkpoints are trusted no more than single files: the index must be a JSON object
 * whose "weight_map" maps tensor names to shard basenames in the same directory; every shard
 * must open (its header is validated by the safetensors reader), every tensor the index names
 * must be in the shard it names, and no tensor may live in two shards. */
#include "model/checkpoint.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/fileio.h"
#include "store/remote_safetensors.h"
#include "store/uri.h"

#define SINGLE_FILE "model.safetensors"
#define INDEX_FILE "model.safetensors.index.json"

typedef struct {
    const sq_st_tensor *tensor;
    int file; /* index into files[] */
} tensor_ref;

/* One weights file: mapped (local) or remote (s3://, header only). */
typedef struct {
    sq_st_file mapped;
    sq_remote_st remote;
} weights_file;

struct sq_checkpoint {
    char *dir;       /* where the model is (local directory or s3:// prefix) */
    char *local_dir; /* config.json, the index and tokenizer files */
    sq_store *store; /* s3:// models: the tensors' store (borrowed); NULL: local files */
    int n_files;
    char **file_names;
    weights_file *files;
    int n_tensors;
    tensor_ref *tensors; /* sorted by name */
};

void sq_checkpoint_close(sq_checkpoint *ckpt)
{
    if (!ckpt)
        return;
    for (int i = 0; i < ckpt->n_files; i++) {
        if (ckpt->store)
            sq_remote_st_close(&ckpt->files[i].remote);
        else
            sq_st_close(&ckpt->files[i].mapped);
        free(ckpt->file_names[i]);
    }
    free(ckpt->files);
    free(ckpt->file_names);
    free(ckpt->tensors);
    free(ckpt->dir);
    free(ckpt->local_dir);
    free(ckpt);
}

/* Open `name` in the directory unless it is open already; its position in *index. */
static sq_status open_file(sq_checkpoint *ckpt, const char *name, int *index)
{
    for (int i = 0; i < ckpt->n_files; i++) {
        if (!strcmp(ckpt->file_names[i], name)) {
            *index = i;
            return SQ_OK;
        }
    }
    int n = ckpt->n_files;
    weights_file *files = realloc(ckpt->files, (size_t)(n + 1) * sizeof *files);
    if (files)
        ckpt->files = files;
    char **names = realloc(ckpt->file_names, (size_t)(n + 1) * sizeof *names);
    if (names)
        ckpt->file_names = names;
    char *copy = strdup(name);
    char *path = ckpt->store ? sq_uri_join(ckpt->dir, name) : sq_path_join(ckpt->dir, name);
    if (!files || !names || !copy || !path) {
        free(copy);
        free(path);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", ckpt->dir);
    }
    memset(&ckpt->files[n], 0, sizeof ckpt->files[n]);
    sq_status st = ckpt->store ? sq_remote_st_open(ckpt->store, path, &ckpt->files[n].remote)
                               : sq_st_open(&ckpt->files[n].mapped, path);
    free(path);
    if (st != SQ_OK) {
        free(copy);
        return st;
    }
    ckpt->file_names[n] = copy;
    ckpt->n_files = n + 1;
    *index = n;
    return SQ_OK;
}

static const sq_st_header *header_of(const sq_checkpoint *ckpt, int file)
{
    return ckpt->store ? &ckpt->files[file].remote.header : &ckpt->files[file].mapped.header;
}

static int compare_refs(const void *a, const void *b)
{
    const tensor_ref *x = a, *y = b;
    return strcmp(x->tensor->name, y->tensor->name);
}

/* Collect every tensor of every open file, sorted by name; a name in two files is an error. */
static sq_status build_table(sq_checkpoint *ckpt, const char *origin)
{
    int total = 0;
    for (int f = 0; f < ckpt->n_files; f++)
        total += header_of(ckpt, f)->n_tensors;
    ckpt->tensors = calloc(total ? (size_t)total : 1, sizeof *ckpt->tensors);
    if (!ckpt->tensors)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    for (int f = 0; f < ckpt->n_files; f++)
        for (int t = 0; t < header_of(ckpt, f)->n_tensors; t++)
            ckpt->tensors[ckpt->n_tensors++] = (tensor_ref){&header_of(ckpt, f)->tensors[t], f};
    qsort(ckpt->tensors, (size_t)ckpt->n_tensors, sizeof *ckpt->tensors, compare_refs);
    for (int i = 1; i < ckpt->n_tensors; i++) {
        if (!strcmp(ckpt->tensors[i].tensor->name, ckpt->tensors[i - 1].tensor->name))
            return sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\" is in two shards (%s and %s)", origin,
                           ckpt->tensors[i].tensor->name, ckpt->file_names[ckpt->tensors[i - 1].file],
                           ckpt->file_names[ckpt->tensors[i].file]);
    }
    return SQ_OK;
}

static sq_status open_sharded(sq_checkpoint *ckpt, const char *index_path)
{
    char *text;
    size_t len;
    SQ_TRY(sq_read_file(index_path, &text, &len));
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root)
        return sq_fail(SQ_ERR_FORMAT, "%s: invalid JSON (line %d, column %d): %s", index_path, err.line,
                       err.column, err.text);
    sq_status st = SQ_OK;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(map)) {
        st = sq_fail(SQ_ERR_FORMAT, "%s: \"weight_map\" must be an object", index_path);
        goto done;
    }
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        const char *shard = json_string_value(file);
        if (!shard || !*shard || strchr(shard, '/') || !strcmp(shard, "..") || !strcmp(shard, ".")) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: weight_map[\"%s\"] must be a file name in the model directory",
                         index_path, name);
            goto done;
        }
        int f;
        st = open_file(ckpt, shard, &f);
        if (st != SQ_OK) {
            sq_fail_context(st, "%s: weight_map[\"%s\"]", index_path, name);
            goto done;
        }
        if (!sq_st_find(header_of(ckpt, f), name)) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\" is not in shard %s", index_path, name, shard);
            goto done;
        }
    }
    st = build_table(ckpt, index_path);
done:
    json_decref(root);
    return st;
}

/* Open the weights named by the index in local_dir, or the single file: where a
 * local model has them (`store` NULL) or an s3:// one (`store` given). */
static sq_status open_at(sq_checkpoint **out, sq_store *store, const char *dir, const char *local_dir)
{
    *out = NULL;
    sq_checkpoint *ckpt = calloc(1, sizeof *ckpt);
    if (!ckpt || !(ckpt->dir = strdup(dir)) || !(ckpt->local_dir = strdup(local_dir))) {
        if (ckpt)
            free(ckpt->dir);
        free(ckpt);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    }
    ckpt->store = store;
    char *index_path = sq_path_join(local_dir, INDEX_FILE);
    char *single_path = store ? sq_uri_join(dir, SINGLE_FILE) : sq_path_join(dir, SINGLE_FILE);
    uint64_t size;
    sq_object_info info;
    sq_status st;
    if (!index_path || !single_path) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    } else if (sq_file_size(index_path, &size) == SQ_OK) {
        st = open_sharded(ckpt, index_path);
    } else if (store ? sq_store_head(store, single_path, &info) == SQ_OK : sq_file_size(single_path, &size) == SQ_OK) {
        int f;
        st = open_file(ckpt, SINGLE_FILE, &f);
        if (st == SQ_OK)
            st = build_table(ckpt, single_path);
    } else {
        st = sq_fail(SQ_ERR_NOT_FOUND, "%s: no %s or %s in this directory", dir, SINGLE_FILE, INDEX_FILE);
    }
    free(index_path);
    free(single_path);
    if (st != SQ_OK) {
        sq_checkpoint_close(ckpt);
        return st;
    }
    *out = ckpt;
    return SQ_OK;
}

sq_status sq_checkpoint_open(sq_checkpoint **out, const char *dir) { return open_at(out, NULL, dir, dir); }

sq_status sq_checkpoint_open_uri(sq_checkpoint **out, sq_store *store, const char *uri, const char *local_dir)
{
    sq_uri parsed;
    SQ_TRY(sq_uri_parse(&parsed, uri));
    bool remote = parsed.kind == SQ_URI_S3;
    sq_uri_free(&parsed);
    return open_at(out, remote ? store : NULL, remote ? uri : local_dir, local_dir);
}

int sq_checkpoint_tensor_count(const sq_checkpoint *ckpt) { return ckpt->n_tensors; }

const sq_st_tensor *sq_checkpoint_tensor_at(const sq_checkpoint *ckpt, int index)
{
    return index >= 0 && index < ckpt->n_tensors ? ckpt->tensors[index].tensor : NULL;
}

const char *sq_checkpoint_tensor_file(const sq_checkpoint *ckpt, int index)
{
    return index >= 0 && index < ckpt->n_tensors ? ckpt->file_names[ckpt->tensors[index].file] : NULL;
}

static const tensor_ref *lookup(const sq_checkpoint *ckpt, const char *name)
{
    int lo = 0, hi = ckpt->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(ckpt->tensors[mid].tensor->name, name);
        if (c == 0)
            return &ckpt->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const sq_st_tensor *sq_checkpoint_find(const sq_checkpoint *ckpt, const char *name)
{
    const tensor_ref *ref = lookup(ckpt, name);
    return ref ? ref->tensor : NULL;
}

sq_status sq_checkpoint_tensor_bytes(const sq_checkpoint *ckpt, const char *name, sq_tensor_bytes *out)
{
    memset(out, 0, sizeof *out);
    const tensor_ref *ref = lookup(ckpt, name);
    if (!ref)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor \"%s\" in the checkpoint", ckpt->dir, name);
    out->tensor = ref->tensor;
    if (!ckpt->store) {
        out->data = sq_st_data(&ckpt->files[ref->file].mapped, ref->tensor);
        return SQ_OK;
    }
    out->owned = malloc(ref->tensor->nbytes ? ref->tensor->nbytes : 1);
    if (!out->owned)
        return sq_fail(SQ_ERR_NOMEM, "%s: no memory for the %llu bytes of tensor \"%s\"", ckpt->dir,
                       (unsigned long long)ref->tensor->nbytes, name);
    sq_status st = sq_remote_st_read(ckpt->store, &ckpt->files[ref->file].remote, ref->tensor, out->owned);
    if (st != SQ_OK) {
        sq_tensor_bytes_release(out);
        return st;
    }
    out->data = out->owned;
    return SQ_OK;
}

void sq_tensor_bytes_release(sq_tensor_bytes *bytes)
{
    free(bytes->owned);
    memset(bytes, 0, sizeof *bytes);
}

sq_status sq_checkpoint_read_f32(const sq_checkpoint *ckpt, const char *name, float *dst, size_t count)
{
    const sq_st_tensor *t = sq_checkpoint_find(ckpt, name);
    if (t && sq_st_numel(t) != (uint64_t)count)
        return sq_fail(SQ_ERR_MISMATCH, "%s: tensor \"%s\" has %llu elements, caller expected %zu", ckpt->dir, name,
                       (unsigned long long)sq_st_numel(t), count);
    sq_tensor_bytes bytes;
    SQ_TRY(sq_checkpoint_tensor_bytes(ckpt, name, &bytes));
    sq_status st = sq_convert_to_f32(dst, bytes.data, t->dtype, count);
    sq_tensor_bytes_release(&bytes);
    if (st != SQ_OK)
        return sq_fail_context(st, "%s: tensor \"%s\"", ckpt->dir, name);
    return SQ_OK;
}

const char *sq_checkpoint_dir(const sq_checkpoint *ckpt) { return ckpt->dir; }

const char *sq_checkpoint_local_dir(const sq_checkpoint *ckpt) { return ckpt->local_dir; }

bool sq_checkpoint_is_mapped(const sq_checkpoint *ckpt) { return ckpt->store == NULL; }
