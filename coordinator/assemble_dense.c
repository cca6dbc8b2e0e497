/* assemble_dense.c: writing the dense checkpoint of a pruning step (see assemble_dense.h). */
#include "coordinator/assemble_dense.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "model/checkpoint_files.h"

#define DEFAULT_MAX_SHARD_BYTES (4ull << 30)

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

/* The pruned weights of source tensor t, checked against its dtype and shape. */
static sq_status pruned_weights(const sq_dense_checkpoint_request *req, const sq_st_tensor *t, int linear,
                                sq_dense_weights *dense)
{
    SQ_TRY(req->get_linear(req->ctx, req->linears[linear], dense));
    if (t->ndim != 2 || dense->dtype != t->dtype || dense->rows != t->shape[0] || dense->cols != t->shape[1])
        return sq_fail(SQ_ERR_MISMATCH, "%s: pruned weights are %s [%d, %d], the source tensor is %s with %d dims",
                       t->name, sq_dtype_name(dense->dtype), dense->rows, dense->cols, sq_dtype_name(t->dtype),
                       t->ndim);
    return SQ_OK;
}

static sq_status write_shard(const sq_dense_checkpoint_request *req, const int *shard_of, int shard, const char *path)
{
    int n = sq_checkpoint_tensor_count(req->source), count = 0;
    for (int i = 0; i < n; i++)
        count += shard_of[i] == shard;
    sq_st_entry *entries = calloc((size_t)count + 1, sizeof *entries);
    sq_dense_weights *pruned = calloc((size_t)count + 1, sizeof *pruned);
    sq_tensor_bytes *kept = calloc((size_t)count + 1, sizeof *kept); /* source bytes until the shard is written */
    sq_status st = entries && pruned && kept ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %d entries", path, count);
    int k = 0;
    for (int i = 0; i < n && st == SQ_OK; i++) {
        if (shard_of[i] != shard)
            continue;
        const sq_st_tensor *t = sq_checkpoint_tensor_at(req->source, i);
        sq_st_entry *e = &entries[k];
        *e = (sq_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim};
        memcpy(e->shape, t->shape, sizeof e->shape);
        int linear = sq_checkpoint_linear_of(t->name, req->linears, req->n_linears);
        if (linear >= 0) {
            st = pruned_weights(req, t, linear, &pruned[k]);
            e->data = pruned[k].data;
        } else {
            st = sq_checkpoint_tensor_bytes(req->source, t->name, &kept[k]);
            e->data = kept[k].data;
        }
        k++;
    }
    if (st == SQ_OK) {
        json_t *meta = json_pack("{s:s}", "format", "pt");
        st = sq_st_write(path, entries, count, meta);
        json_decref(meta);
    }
    for (int j = 0; pruned && kept && j < k; j++) {
        sq_dense_weights_free(&pruned[j]);
        sq_tensor_bytes_release(&kept[j]);
    }
    free(pruned);
    free(kept);
    free(entries);
    return st;
}

static sq_status write_index(const sq_dense_checkpoint_request *req, const int *shard_of, char **shard_names,
                             const char *out_dir)
{
    json_t *map = json_object();
    uint64_t total = 0;
    for (int i = 0; i < sq_checkpoint_tensor_count(req->source); i++) {
        const sq_st_tensor *t = sq_checkpoint_tensor_at(req->source, i);
        json_object_set_new(map, t->name, json_string(shard_names[shard_of[i]]));
        total += t->nbytes;
    }
    json_t *index = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
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
    int n = sq_checkpoint_tensor_count(req->source);
    int *shard_of = calloc((size_t)n + 1, sizeof *shard_of);
    if (!shard_of)
        return sq_fail(SQ_ERR_NOMEM, "dense checkpoint %s: out of memory", out_dir);
    int n_shards = assign_shards(req, shard_of), n_files = 0;
    char **files = calloc((size_t)n_shards + 2 + SQ_COMPANION_FILES + (size_t)req->n_extra_files, sizeof *files);
    sq_status st = files ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "dense checkpoint %s: out of memory", out_dir);
    for (int s = 0; s < n_shards && st == SQ_OK; s++) {
        char name[64];
        if (n_shards == 1)
            snprintf(name, sizeof name, "model.safetensors");
        else
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        files[n_files] = strdup(name);
        char *path = files[n_files] ? sq_path_join(out_dir, files[n_files]) : NULL;
        n_files++;
        st = path ? write_shard(req, shard_of, s, path) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        if (st != SQ_OK)
            sq_fail_context(st, "writing %s/%s", out_dir, name);
        free(path);
    }
    if (st == SQ_OK && n_shards > 1) {
        st = write_index(req, shard_of, files, out_dir);
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
        st = sq_checkpoint_write_manifest(out_dir, files, n_files, NULL);
    for (int k = 0; files && k < n_files; k++)
        free(files[k]);
    free(files);
    free(shard_of);
    return st;
}
