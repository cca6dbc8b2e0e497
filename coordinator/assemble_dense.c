/* assemble_dense.c: writing a checkpoint in the source's layout with replaced linears (see assemble_dense.h). */
#include "coordinator/assemble_dense.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "model/checkpoint_files.h"
#include "model/shard_writer.h"

#define DEFAULT_MAX_SHARD_BYTES (4ull << 30)
/* Shards up to 4 GiB each: one written while the next is built (model/shard_writer.h). */
#define SHARDS_IN_FLIGHT 2

/* Shard of each source tensor, cut at max_shard_bytes in the source's (sorted) order. */
static int assign_shards(const sq_dense_checkpoint_request *req, int *shard_of)
{
    uint64_t limit = req->max_shard_bytes ? req->max_shard_bytes : DEFAULT_MAX_SHARD_BYTES, in_shard = 0;
    int shard = 0, n = sq_checkpoint_tensor_count(req->source);
    for (int i = 0; i < n; i++) {
        uint64_t bytes = sq_checkpoint_tensor_at(req->source, i)->nbytes;
        if (in_shard > 0 && in_shard + bytes > limit) {
            shard++;
            in_shard = 0;
        }
        shard_of[i] = shard;
        in_shard += bytes;
    }
    return shard + 1;
}

void sq_linear_tensors_free(sq_linear_tensors *tensors)
{
    for (int k = 0; k < tensors->n; k++)
        free(tensors->t[k].data);
    memset(tensors, 0, sizeof *tensors);
}

void sq_linear_tensors_take_dense(sq_linear_tensors *tensors, sq_dense_weights *dense)
{
    *tensors = (sq_linear_tensors){.n = 1};
    tensors->t[0] = (sq_linear_tensor){.suffix = ".weight", .dtype = dense->dtype, .ndim = 2,
                                       .shape = {dense->rows, dense->cols}, .data = dense->data};
    memset(dense, 0, sizeof *dense);
}

/* The tensors replacing source tensor t (a linear's weight, or a rescaled norm); a ".weight"
 * among them must keep t's shape, and its dtype unless it holds integer codes (int-quantized). */
static sq_status linear_tensors(const sq_dense_checkpoint_request *req, const sq_st_tensor *t, int linear,
                                sq_linear_tensors *out)
{
    SQ_TRY(req->get_linear(req->ctx, req->linears[linear], out));
    for (int k = 0; k < out->n; k++) {
        const sq_linear_tensor *r = &out->t[k];
        bool same_shape = r->ndim == t->ndim && r->shape[0] == t->shape[0] && (r->ndim == 1 || r->shape[1] == t->shape[1]);
        if (strcmp(r->suffix, ".weight") == 0 &&
            (!same_shape || (r->dtype != t->dtype && sq_dtype_is_float(r->dtype))))
            return sq_fail(SQ_ERR_MISMATCH, "%s: new weights are %s [%lld, %lld], the source tensor is %s with %d dims",
                           t->name, sq_dtype_name(r->dtype), (long long)r->shape[0], (long long)r->shape[1],
                           sq_dtype_name(t->dtype), t->ndim);
    }
    return SQ_OK;
}

/* Everything a shard's entries point to, released after the shard is written. */
typedef struct {
    sq_st_entry *entries;
    char **names;
    int n_entries;
    sq_linear_tensors *replaced;
    sq_tensor_bytes *kept; /* source bytes */
    int n_items;
} shard_build;

static sq_status add_entry(shard_build *b, const char *name, const char *suffix, sq_dtype dtype, int ndim,
                           const int64_t *shape, const void *data)
{
    size_t len = strlen(name) + strlen(suffix) + 1;
    char *full = malloc(len);
    if (!full)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    snprintf(full, len, "%s%s", name, suffix);
    sq_st_entry *e = &b->entries[b->n_entries];
    b->names[b->n_entries++] = full;
    *e = (sq_st_entry){.name = full, .dtype = dtype, .ndim = ndim, .data = data};
    memcpy(e->shape, shape, (size_t)ndim * sizeof *shape);
    return SQ_OK;
}

static void shard_build_free(shard_build *b)
{
    for (int k = 0; b->names && k < b->n_entries; k++)
        free(b->names[k]);
    for (int k = 0; b->replaced && b->kept && k < b->n_items; k++) {
        sq_linear_tensors_free(&b->replaced[k]);
        sq_tensor_bytes_release(&b->kept[k]);
    }
    free(b->entries), free(b->names), free(b->replaced), free(b->kept);
}

static void shard_build_release(void *owner)
{
    shard_build_free(owner);
    free(owner);
}

/* Builds shard `shard` (the callbacks run here) and records each tensor's file (file_name) in
 * weight_map; *out is then the writer's to write and release. */
static sq_status build_shard(const sq_dense_checkpoint_request *req, const int *shard_of, int shard, bool last,
                             const char *file_name, json_t *weight_map, uint64_t *total_bytes, shard_build **out)
{
    int n = sq_checkpoint_tensor_count(req->source), count = 0;
    for (int i = 0; i < n; i++)
        count += shard_of[i] == shard;
    size_t max_entries = (size_t)count * SQ_LINEAR_TENSORS_MAX + 1 + (size_t)req->n_extra_tensors;
    shard_build *b = calloc(1, sizeof *b);
    if (b)
        *b = (shard_build){.entries = calloc(max_entries, sizeof *b->entries),
                           .names = calloc(max_entries, sizeof *b->names),
                           .replaced = calloc((size_t)count + 1, sizeof *b->replaced),
                           .kept = calloc((size_t)count + 1, sizeof *b->kept)};
    sq_status st = b && b->entries && b->names && b->replaced && b->kept
                       ? SQ_OK
                       : sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %d entries", file_name, count);
    for (int i = 0; i < n && st == SQ_OK; i++) {
        if (shard_of[i] != shard)
            continue;
        const sq_st_tensor *t = sq_checkpoint_tensor_at(req->source, i);
        int linear = sq_checkpoint_linear_of(t->name, req->linears, req->n_linears);
        int item = b->n_items++;
        if (linear >= 0) {
            sq_linear_tensors *r = &b->replaced[item];
            st = linear_tensors(req, t, linear, r);
            for (int k = 0; k < r->n && st == SQ_OK; k++)
                st = add_entry(b, req->linears[linear], r->t[k].suffix, r->t[k].dtype, r->t[k].ndim, r->t[k].shape,
                               r->t[k].data);
        } else {
            st = sq_checkpoint_output_bytes(req->source, t, req->override_tensor, req->ctx, &b->kept[item]);
            if (st == SQ_OK)
                st = add_entry(b, t->name, "", t->dtype, t->ndim, t->shape, b->kept[item].data);
        }
    }
    for (int k = 0; last && k < req->n_extra_tensors && st == SQ_OK; k++) {
        const sq_st_entry *e = &req->extra_tensors[k];
        st = add_entry(b, e->name, "", e->dtype, e->ndim, e->shape, e->data);
    }
    for (int k = 0; st == SQ_OK && k < b->n_entries; k++) {
        const sq_st_entry *e = &b->entries[k];
        uint64_t bytes = sq_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++)
            bytes *= (uint64_t)e->shape[d];
        *total_bytes += bytes;
        json_object_set_new(weight_map, e->name, json_string(file_name));
    }
    if (st != SQ_OK) {
        if (b)
            shard_build_release(b);
        return st;
    }
    *out = b;
    return SQ_OK;
}

static sq_status write_index(json_t *weight_map, uint64_t total_bytes, const char *out_dir)
{
    json_t *index = json_pack("{s:{s:I}, s:O}", "metadata", "total_size", (json_int_t)total_bytes, "weight_map",
                              weight_map);
    sq_status st = sq_checkpoint_write_json(out_dir, "model.safetensors.index.json", index);
    json_decref(index);
    return st;
}

static sq_status write_config(const sq_dense_checkpoint_request *req, const char *out_dir)
{
    json_t *config;
    SQ_TRY(sq_checkpoint_load_config_json(sq_checkpoint_local_dir(req->source), &config));
    if (req->extra_config)
        json_object_update(config, req->extra_config);
    sq_status st = sq_checkpoint_write_json(out_dir, "config.json", config);
    json_decref(config);
    return st;
}

sq_status sq_dense_checkpoint_write(const sq_dense_checkpoint_request *req, const char *out_dir)
{
    if (!req->source || !req->get_linear || (req->n_linears > 0 && !req->linears))
        return sq_fail(SQ_ERR_ARG, "dense checkpoint %s: incomplete request", out_dir);
    SQ_TRY(sq_make_dirs(out_dir));
    SQ_TRY(sq_checkpoint_remove_stale_temporaries(out_dir));
    int n = sq_checkpoint_tensor_count(req->source);
    int *shard_of = calloc((size_t)n + 1, sizeof *shard_of);
    if (!shard_of)
        return sq_fail(SQ_ERR_NOMEM, "dense checkpoint %s: out of memory", out_dir);
    int n_shards = assign_shards(req, shard_of), n_files = 0;
    json_t *weight_map = json_object();
    uint64_t total_bytes = 0;
    size_t max_files = (size_t)n_shards + 2 + SQ_COMPANION_FILES + (size_t)req->n_extra_files;
    char **files = calloc(max_files, sizeof *files);
    char **known_sha256 = calloc(max_files, sizeof *known_sha256); /* the shards', hashed as written */
    sq_shard_writer *writer = NULL;
    sq_status st = files && known_sha256 && weight_map
                       ? sq_shard_writer_open(&writer, out_dir, n_shards, SHARDS_IN_FLIGHT)
                       : sq_fail(SQ_ERR_NOMEM, "dense checkpoint %s: out of memory", out_dir);
    for (int s = 0; s < n_shards && st == SQ_OK; s++) {
        char name[64];
        sq_shard_file_name(s, n_shards, name);
        shard_build *b = NULL;
        files[n_files++] = strdup(name);
        st = files[n_files - 1] ? build_shard(req, shard_of, s, s == n_shards - 1, name, weight_map, &total_bytes, &b)
                                : sq_fail(SQ_ERR_NOMEM, "out of memory");
        if (st == SQ_OK)
            st = sq_shard_writer_submit(writer, s, name, b->entries, b->n_entries, b, shard_build_release);
        else
            sq_fail_context(st, "writing %s/%s", out_dir, name);
    }
    if (writer) {
        sq_status written = sq_shard_writer_close(writer, st == SQ_OK ? known_sha256 : NULL);
        if (st == SQ_OK)
            st = written;
    }
    if (st == SQ_OK && n_shards > 1) {
        st = write_index(weight_map, total_bytes, out_dir);
        files[n_files++] = strdup("model.safetensors.index.json");
    } else if (st == SQ_OK) {
        st = sq_checkpoint_remove_stale_index(out_dir);
    }
    if (st == SQ_OK) {
        st = write_config(req, out_dir);
        files[n_files++] = strdup("config.json");
    }
    if (st == SQ_OK)
        st = sq_checkpoint_copy_companions(sq_checkpoint_local_dir(req->source), out_dir, files, &n_files);
    for (int k = 0; st == SQ_OK && k < req->n_extra_files; k++)
        files[n_files++] = strdup(req->extra_files[k]);
    for (int k = 0; st == SQ_OK && k < n_files; k++)
        if (!files[k])
            st = sq_fail(SQ_ERR_NOMEM, "dense checkpoint %s: out of memory", out_dir);
    if (st == SQ_OK)
        st = sq_checkpoint_write_manifest(out_dir, files, n_files, (const char *const *)known_sha256, NULL);
    for (size_t k = 0; k < max_files; k++) {
        if (files)
            free(files[k]);
        if (known_sha256)
            free(known_sha256[k]);
    }
    free(files);
    free(known_sha256);
    free(shard_of);
    json_decref(weight_map);
    return st;
}
