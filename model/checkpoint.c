/* checkpoint.c: one view over the tensors of a model directory, single file or sharded.
 *
 * Sharded checkpoints are trusted no more than single files: the index must be a JSON object
 * whose "weight_map" maps tensor names to shard basenames in the same directory; every shard
 * must open (its header is validated by the safetensors reader), every tensor the index names
 * must be in the shard it names, and no tensor may live in two shards. */
#include "model/checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/fileio.h"

#define SINGLE_FILE "model.safetensors"
#define INDEX_FILE "model.safetensors.index.json"

typedef struct {
    const sq_st_tensor *tensor;
    int file; /* index into files[] */
} tensor_ref;

struct sq_checkpoint {
    char *dir;
    int n_files;
    char **file_names;
    sq_st_file *files;
    int n_tensors;
    tensor_ref *tensors; /* sorted by name */
};

void sq_checkpoint_close(sq_checkpoint *ckpt)
{
    if (!ckpt)
        return;
    for (int i = 0; i < ckpt->n_files; i++) {
        sq_st_close(&ckpt->files[i]);
        free(ckpt->file_names[i]);
    }
    free(ckpt->files);
    free(ckpt->file_names);
    free(ckpt->tensors);
    free(ckpt->dir);
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
    sq_st_file *files = realloc(ckpt->files, (size_t)(n + 1) * sizeof *files);
    if (files)
        ckpt->files = files;
    char **names = realloc(ckpt->file_names, (size_t)(n + 1) * sizeof *names);
    if (names)
        ckpt->file_names = names;
    char *copy = strdup(name);
    char *path = sq_path_join(ckpt->dir, name);
    if (!files || !names || !copy || !path) {
        free(copy);
        free(path);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", ckpt->dir);
    }
    sq_status st = sq_st_open(&ckpt->files[n], path);
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
        total += ckpt->files[f].header.n_tensors;
    ckpt->tensors = calloc(total ? (size_t)total : 1, sizeof *ckpt->tensors);
    if (!ckpt->tensors)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
    for (int f = 0; f < ckpt->n_files; f++)
        for (int t = 0; t < ckpt->files[f].header.n_tensors; t++)
            ckpt->tensors[ckpt->n_tensors++] = (tensor_ref){&ckpt->files[f].header.tensors[t], f};
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
        if (!sq_st_find(&ckpt->files[f].header, name)) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: tensor \"%s\" is not in shard %s", index_path, name, shard);
            goto done;
        }
    }
    st = build_table(ckpt, index_path);
done:
    json_decref(root);
    return st;
}

sq_status sq_checkpoint_open(sq_checkpoint **out, const char *dir)
{
    *out = NULL;
    sq_checkpoint *ckpt = calloc(1, sizeof *ckpt);
    if (!ckpt || !(ckpt->dir = strdup(dir))) {
        free(ckpt);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    }
    char *index_path = sq_path_join(dir, INDEX_FILE);
    char *single_path = sq_path_join(dir, SINGLE_FILE);
    uint64_t size;
    sq_status st;
    if (!index_path || !single_path) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", dir);
    } else if (sq_file_size(index_path, &size) == SQ_OK) {
        st = open_sharded(ckpt, index_path);
    } else if (sq_file_size(single_path, &size) == SQ_OK) {
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

sq_status sq_checkpoint_raw(const sq_checkpoint *ckpt, const char *name, const sq_st_tensor **tensor,
                            const void **data)
{
    const tensor_ref *ref = lookup(ckpt, name);
    if (!ref)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor \"%s\" in the checkpoint", ckpt->dir, name);
    if (tensor)
        *tensor = ref->tensor;
    if (data)
        *data = sq_st_data(&ckpt->files[ref->file], ref->tensor);
    return SQ_OK;
}

sq_status sq_checkpoint_read_f32(const sq_checkpoint *ckpt, const char *name, float *dst, size_t count)
{
    const sq_st_tensor *t;
    const void *data;
    SQ_TRY(sq_checkpoint_raw(ckpt, name, &t, &data));
    if (sq_st_numel(t) != (uint64_t)count)
        return sq_fail(SQ_ERR_MISMATCH, "%s: tensor \"%s\" has %llu elements, caller expected %zu", ckpt->dir, name,
                       (unsigned long long)sq_st_numel(t), count);
    sq_status st = sq_convert_to_f32(dst, data, t->dtype, count);
    if (st != SQ_OK)
        return sq_fail_context(st, "%s: tensor \"%s\"", ckpt->dir, name);
    return SQ_OK;
}

const char *sq_checkpoint_dir(const sq_checkpoint *ckpt) { return ckpt->dir; }
