/* gptq_checkpoint.c: assembling a GPTQ checkpoint directory from the source
 * model and the packed linears (reading them back: model/gptq_reader.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/dtype.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/checkpoint_files.h"
#include "model/gptq_reader.h"
#include "model/shard_writer.h"
#include "quant/gptq_checkpoint.h"

/* Shards of 512 MiB, written and hashed on threads of their own (model/shard_writer.h), up to 8
 * at once: a 7B model's 3.9 GB is 8 shards at once, and the assembly during the layer loop can
 * write each as soon as its layers are done (coordinator/assemble_while_calibrating.h). */
#define DEFAULT_MAX_SHARD_BYTES (512ull << 20)
#define CONVERT_CHUNK (1u << 20)
#define SHARDS_IN_FLIGHT 8

/* ---- planning ------------------------------------------------------------ */

/* What happens to one source tensor. */
typedef struct {
    int tensor;      /* index in the source checkpoint */
    int linear;      /* index in req->linears, or -1 */
    uint64_t bytes;  /* bytes it takes in the output */
    int shard;
} plan_item;

static int ngroups_for(const sq_quant_options *opt, int in)
{
    return opt->group_size > 0 ? (in + opt->group_size - 1) / opt->group_size : 1;
}

static int bits_of(const sq_gptq_checkpoint_request *req, int linear)
{
    return req->linear_bits ? req->linear_bits[linear] : req->options->bits;
}

static uint64_t packed_bytes(int out, int in, int bits, int ngroups)
{
    return (uint64_t)in * bits / 32 * out * 4 + (uint64_t)ngroups * out * bits / 32 * 4 + (uint64_t)ngroups * out * 2 +
           (uint64_t)in * 4;
}

/* A tensor's place in the output: the tensors outside the decoder layers first, then layer by
 * layer in numeric order (the source lists them by name, where layer 10 comes before layer 2),
 * by name within a layer. The shards then fill in the order the layers are calibrated, so the
 * assembly can write each as soon as its layers are done (coordinator/assemble_while_calibrating.h). */
typedef struct {
    int layer; /* -1 outside the decoder layers */
    int tensor;
} output_place;

static int compare_places(const void *a, const void *b)
{
    const output_place *x = a, *y = b;
    if (x->layer != y->layer)
        return x->layer < y->layer ? -1 : 1;
    return (x->tensor > y->tensor) - (x->tensor < y->tensor);
}

static output_place *output_order(const sq_checkpoint *src, int n)
{
    output_place *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order)
        return NULL;
    for (int i = 0; i < n; i++) {
        int layer = -1;
        if (!sq_checkpoint_layer_part(sq_checkpoint_tensor_at(src, i)->name, &layer) || layer < 0)
            layer = -1;
        order[i] = (output_place){layer, i};
    }
    qsort(order, (size_t)n, sizeof *order, compare_places);
    return order;
}

static sq_status make_plan(const sq_gptq_checkpoint_request *req, plan_item **items_out, int *n_items,
                           int *n_shards)
{
    const sq_checkpoint *src = req->source;
    int n = sq_checkpoint_tensor_count(src);
    for (int k = 0; k < req->n_linears; k++) {
        char name[512];
        snprintf(name, sizeof name, "%s.weight", req->linears[k]);
        const sq_st_tensor *t = sq_checkpoint_find(src, name);
        if (!t)
            return sq_fail(SQ_ERR_NOT_FOUND, "%s: quantized linear '%s' has no tensor '%s'", sq_checkpoint_dir(src),
                           req->linears[k], name);
        if (t->ndim != 2)
            return sq_fail(SQ_ERR_MISMATCH, "%s: '%s' is not a matrix", sq_checkpoint_dir(src), name);
        SQ_TRY(sq_gptq_check_shape(req->linears[k], (int)t->shape[0], (int)t->shape[1], bits_of(req, k)));
    }
    plan_item *items = calloc((size_t)(n ? n : 1), sizeof *items);
    output_place *order = output_order(src, n);
    if (!items || !order) {
        free(items), free(order);
        return sq_fail(SQ_ERR_NOMEM, "cannot plan %d output tensors", n);
    }
    uint64_t limit = req->max_shard_bytes ? req->max_shard_bytes : DEFAULT_MAX_SHARD_BYTES, in_shard = 0;
    int shard = 0;
    for (int i = 0; i < n; i++) {
        const sq_st_tensor *t = sq_checkpoint_tensor_at(src, order[i].tensor);
        plan_item *it = &items[i];
        it->tensor = order[i].tensor;
        it->linear = sq_checkpoint_linear_of(t->name, req->linears, req->n_linears);
        if (it->linear >= 0) {
            int out = (int)t->shape[0], in = (int)t->shape[1];
            it->bytes = packed_bytes(out, in, bits_of(req, it->linear), ngroups_for(req->options, in));
        } else {
            it->bytes = sq_dtype_is_float(t->dtype) ? sq_st_numel(t) * 2 : t->nbytes;
        }
        if (in_shard > 0 && in_shard + it->bytes > limit) {
            shard++;
            in_shard = 0;
        }
        it->shard = shard;
        in_shard += it->bytes;
    }
    free(order);
    *items_out = items;
    *n_items = n;
    *n_shards = shard + 1;
    return SQ_OK;
}

/* ---- one shard ------------------------------------------------------------ */

/* Everything a shard's entries point to, released after the shard is written. */
typedef struct {
    sq_st_entry *entries;
    int n_entries;
    char **names;
    void **buffers;
    int n_buffers;
    sq_gptq_packed *packed;
    int n_packed;
} shard_build;

static void shard_build_free(shard_build *b)
{
    for (int k = 0; k < b->n_entries; k++)
        free(b->names[k]);
    for (int k = 0; k < b->n_buffers; k++)
        free(b->buffers[k]);
    for (int k = 0; k < b->n_packed; k++)
        sq_gptq_packed_free(&b->packed[k]);
    free(b->entries), free(b->names), free(b->buffers), free(b->packed);
    memset(b, 0, sizeof *b);
}

static sq_st_entry *add_entry(shard_build *b, const char *base, const char *suffix, sq_dtype dtype, int ndim,
                              int64_t d0, int64_t d1, const void *data)
{
    size_t len = strlen(base) + strlen(suffix) + 1;
    char *name = malloc(len);
    if (!name)
        return NULL;
    snprintf(name, len, "%s%s", base, suffix);
    sq_st_entry *e = &b->entries[b->n_entries];
    b->names[b->n_entries++] = name;
    *e = (sq_st_entry){.name = name, .dtype = dtype, .ndim = ndim, .data = data};
    e->shape[0] = d0;
    e->shape[1] = d1;
    return e;
}

/* fp16 copy of a float tensor, converted in chunks; F16 tensors are used in place. */
static sq_status to_f16(const sq_st_tensor *t, const void *data, shard_build *b, const void **out)
{
    if (t->dtype == SQ_DTYPE_F16) {
        *out = data;
        return SQ_OK;
    }
    uint64_t n = sq_st_numel(t);
    uint16_t *dst = malloc(n ? n * 2 : 1);
    float *chunk = malloc(CONVERT_CHUNK * sizeof(float));
    if (!dst || !chunk) {
        free(dst), free(chunk);
        return sq_fail(SQ_ERR_NOMEM, "cannot convert tensor '%s' to fp16", t->name);
    }
    size_t esize = sq_dtype_size(t->dtype);
    for (uint64_t k = 0; k < n; k += CONVERT_CHUNK) {
        size_t m = n - k < CONVERT_CHUNK ? (size_t)(n - k) : CONVERT_CHUNK;
        sq_convert_to_f32(chunk, (const uint8_t *)data + k * esize, t->dtype, m);
        sq_convert_from_f32(dst + k, SQ_DTYPE_F16, chunk, m);
    }
    free(chunk);
    b->buffers[b->n_buffers++] = dst;
    *out = dst;
    return SQ_OK;
}

static sq_status add_linear(const sq_gptq_checkpoint_request *req, const sq_st_tensor *t, int linear, shard_build *b)
{
    const char *name = req->linears[linear];
    int out = (int)t->shape[0], in = (int)t->shape[1], bits = bits_of(req, linear);
    sq_gptq_packed *p = &b->packed[b->n_packed];
    SQ_TRY(req->get_linear(req->ctx, name, p));
    b->n_packed++;
    if (p->out != out || p->in != in || p->bits != bits || p->ngroups != ngroups_for(req->options, in))
        return sq_fail(SQ_ERR_MISMATCH,
                       "%s: packed result is [%d, %d] at %d bits with %d groups; the checkpoint and options want "
                       "[%d, %d] at %d bits with %d groups",
                       name, p->out, p->in, p->bits, p->ngroups, out, in, bits, ngroups_for(req->options, in));
    if (!add_entry(b, name, ".qweight", SQ_DTYPE_I32, 2, (int64_t)in * bits / 32, out, p->qweight) ||
        !add_entry(b, name, ".qzeros", SQ_DTYPE_I32, 2, p->ngroups, (int64_t)out * bits / 32, p->qzeros) ||
        !add_entry(b, name, ".scales", SQ_DTYPE_F16, 2, p->ngroups, out, p->scales) ||
        !add_entry(b, name, ".g_idx", SQ_DTYPE_I32, 1, in, 0, p->g_idx))
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot name packed tensors", name);
    return SQ_OK;
}

/* Gather shard `shard`'s tensors into b (the callbacks run here, on the calling thread). */
static sq_status build_shard(const sq_gptq_checkpoint_request *req, const plan_item *items, int n_items, int shard,
                             const char *path, shard_build *b_out)
{
    int count = 0;
    for (int i = 0; i < n_items; i++)
        if (items[i].shard == shard)
            count += items[i].linear >= 0 ? 4 : 1;
    shard_build b = {0};
    b.entries = calloc((size_t)count + 1, sizeof *b.entries);
    b.names = calloc((size_t)count + 1, sizeof *b.names);
    b.buffers = calloc(2 * (size_t)count + 1, sizeof *b.buffers); /* fetched bytes and their fp16 copy */
    b.packed = calloc((size_t)count + 1, sizeof *b.packed);
    sq_status st = SQ_OK;
    if (!b.entries || !b.names || !b.buffers || !b.packed) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %d entries", path, count);
        goto done;
    }
    for (int i = 0; i < n_items; i++) {
        if (items[i].shard != shard)
            continue;
        const sq_st_tensor *t = sq_checkpoint_tensor_at(req->source, items[i].tensor);
        if (items[i].linear >= 0) {
            SQ_TRY_GOTO(st, add_linear(req, t, items[i].linear, &b), done);
            continue;
        }
        sq_tensor_bytes bytes;
        SQ_TRY_GOTO(st, sq_checkpoint_output_bytes(req->source, t, req->override_tensor, req->ctx, &bytes), done);
        const void *data = bytes.data;
        if (bytes.owned)
            b.buffers[b.n_buffers++] = bytes.owned; /* kept until the shard is written */
        sq_dtype dtype = t->dtype;
        if (sq_dtype_is_float(t->dtype)) {
            SQ_TRY_GOTO(st, to_f16(t, data, &b, &data), done);
            dtype = SQ_DTYPE_F16;
        }
        sq_st_entry *e = add_entry(&b, t->name, "", dtype, t->ndim, 0, 0, data);
        if (!e) {
            st = sq_fail(SQ_ERR_NOMEM, "cannot name tensor '%s'", t->name);
            goto done;
        }
        memcpy(e->shape, t->shape, sizeof e->shape);
    }
    *b_out = b;
    return SQ_OK;
done:
    shard_build_free(&b);
    return st;
}

static void shard_build_release(void *owner)
{
    shard_build_free(owner);
    free(owner);
}

/* Every shard built in turn and handed to the shard writer as soon as it is built
 * (model/shard_writer.h: written, hashed and synced on its own thread, at most SHARDS_IN_FLIGHT
 * at once); each shard's SHA-256, computed as it was written, goes to sha256[shard] (the manifest
 * takes it instead of reading the file back). */
static sq_status write_shards(const sq_gptq_checkpoint_request *req, const plan_item *items, int n_items,
                              int n_shards, char **names, const char *out_dir, char **sha256)
{
    sq_shard_writer *w;
    SQ_TRY(sq_shard_writer_open(&w, out_dir, n_shards, SHARDS_IN_FLIGHT));
    sq_status st = SQ_OK;
    for (int s = 0; s < n_shards && st == SQ_OK; s++) {
        shard_build *b = calloc(1, sizeof *b);
        char *path = sq_path_join(out_dir, names[s]);
        st = b && path ? build_shard(req, items, n_items, s, path, b)
                       : sq_fail(SQ_ERR_NOMEM, "gptq checkpoint %s: out of memory", out_dir);
        free(path);
        if (st == SQ_OK) {
            st = sq_shard_writer_submit(w, s, names[s], b->entries, b->n_entries, b, shard_build_release);
        } else {
            sq_fail_context(st, "writing %s/%s", out_dir, names[s]);
            free(b); /* build_shard freed what it had built */
        }
    }
    sq_status written = sq_shard_writer_close(w, st == SQ_OK ? sha256 : NULL);
    return st != SQ_OK ? st : written;
}

/* ---- config, index, manifest --------------------------------------------- */

json_t *sq_gptq_quantization_config(const sq_quant_options *opt)
{
    return json_pack("{s:s, s:i, s:i, s:b, s:b, s:f, s:b, s:b, s:s}", "quant_method", "gptq", "bits", opt->bits,
                     "group_size", opt->group_size, "desc_act", opt->desc_act, "sym", opt->sym, "damp_percent",
                     opt->damp_percent, "static_groups", opt->static_groups, "true_sequential",
                     opt->true_sequential, "checkpoint_format", "gptq");
}

json_t *sq_gptq_dynamic(const sq_quant_options *opt, const char *const *linears, const int *bits, int n)
{
    json_t *dynamic = json_object();
    for (int k = 0; k < n; k++) {
        if (bits[k] == opt->bits)
            continue;
        char key[1024] = "+:^";
        size_t used = strlen(key);
        for (const char *c = linears[k]; *c && used + 3 < sizeof key; c++) {
            if (*c == '.')
                key[used++] = '\\';
            key[used++] = *c;
        }
        key[used++] = '$';
        key[used] = '\0';
        json_object_set_new(dynamic, key, json_pack("{s:i}", "bits", bits[k]));
    }
    return dynamic;
}

static sq_status write_configs(const sq_gptq_checkpoint_request *req, const char *out_dir)
{
    json_t *config = NULL, *qc = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, sq_checkpoint_load_config_json(sq_checkpoint_local_dir(req->source), &config), done);
    qc = sq_gptq_quantization_config(req->options);
    if (req->linear_bits)
        json_object_set_new(qc, "dynamic", sq_gptq_dynamic(req->options, req->linears, req->linear_bits, req->n_linears));
    json_object_set(config, "quantization_config", qc);
    /* The tensors are fp16 now: say so under the key(s) the input used ("dtype" from transformers 5). */
    bool has_dtype = json_object_get(config, "dtype") != NULL;
    if (!has_dtype || json_object_get(config, "torch_dtype"))
        json_object_set_new(config, "torch_dtype", json_string("float16"));
    if (has_dtype)
        json_object_set_new(config, "dtype", json_string("float16"));
    if (req->extra_config)
        json_object_update(config, req->extra_config);
    SQ_TRY_GOTO(st, sq_checkpoint_write_json(out_dir, "config.json", config), done);
    st = sq_checkpoint_write_json(out_dir, "quantize_config.json", qc);
done:
    json_decref(qc);
    json_decref(config);
    return st;
}

static sq_status write_index(const sq_gptq_checkpoint_request *req, const plan_item *items, int n_items,
                             char **shard_names, const char *out_dir)
{
    json_t *map = json_object();
    uint64_t total = 0;
    static const char *const suffixes[] = {".qweight", ".qzeros", ".scales", ".g_idx"};
    char name[600];
    for (int i = 0; i < n_items; i++) {
        const sq_st_tensor *t = sq_checkpoint_tensor_at(req->source, items[i].tensor);
        json_t *file = json_string(shard_names[items[i].shard]);
        total += items[i].bytes;
        if (items[i].linear < 0) {
            json_object_set(map, t->name, file);
        } else {
            for (int s = 0; s < 4; s++) {
                snprintf(name, sizeof name, "%s%s", req->linears[items[i].linear], suffixes[s]);
                json_object_set(map, name, file);
            }
        }
        json_decref(file);
    }
    json_t *index = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
    sq_status st = sq_checkpoint_write_json(out_dir, "model.safetensors.index.json", index);
    json_decref(index);
    return st;
}

sq_status sq_gptq_checkpoint_write(const sq_gptq_checkpoint_request *req, const char *out_dir)
{
    if (!req->source || !req->get_linear || !req->options || (req->n_linears > 0 && !req->linears))
        return sq_fail(SQ_ERR_ARG, "gptq checkpoint %s: incomplete request", out_dir);
    SQ_TRY(sq_make_dirs(out_dir));
    SQ_TRY(sq_checkpoint_remove_stale_temporaries(out_dir));
    plan_item *items = NULL;
    int n_items = 0, n_shards = 0, n_files = 0;
    SQ_TRY(make_plan(req, &items, &n_items, &n_shards));
    int max_files = n_shards + 3 + SQ_COMPANION_FILES + req->n_extra_files;
    char **files = calloc((size_t)max_files, sizeof *files);
    char **known_sha256 = calloc((size_t)max_files, sizeof *known_sha256); /* the shards' */
    sq_status st = SQ_OK;
    if (!files || !known_sha256) {
        st = sq_fail(SQ_ERR_NOMEM, "gptq checkpoint %s: out of memory", out_dir);
        goto done;
    }
    for (int s = 0; s < n_shards; s++) {
        char name[64];
        sq_shard_file_name(s, n_shards, name);
        files[n_files++] = strdup(name);
    }
    for (int s = 0; s < n_shards; s++)
        if (!files[s]) {
            st = sq_fail(SQ_ERR_NOMEM, "gptq checkpoint %s: out of memory", out_dir);
            goto done;
        }
    SQ_TRY_GOTO(st, write_shards(req, items, n_items, n_shards, files, out_dir, known_sha256), done);
    if (n_shards > 1) {
        SQ_TRY_GOTO(st, write_index(req, items, n_items, files, out_dir), done);
        files[n_files++] = strdup("model.safetensors.index.json");
    } else {
        SQ_TRY_GOTO(st, sq_checkpoint_remove_stale_index(out_dir), done);
    }
    SQ_TRY_GOTO(st, write_configs(req, out_dir), done);
    files[n_files++] = strdup("config.json");
    files[n_files++] = strdup("quantize_config.json");
    SQ_TRY_GOTO(st, sq_checkpoint_copy_companions(sq_checkpoint_local_dir(req->source), out_dir, files, &n_files), done);
    for (int k = 0; k < req->n_extra_files; k++)
        files[n_files++] = strdup(req->extra_files[k]);
    for (int k = 0; k < n_files; k++)
        if (!files[k]) {
            st = sq_fail(SQ_ERR_NOMEM, "gptq checkpoint %s: out of memory", out_dir);
            goto done;
        }
    double t0 = sq_now_seconds();
    st = sq_checkpoint_write_manifest(out_dir, files, n_files, (const char *const *)known_sha256, req->method);
    sq_log_info("%s: manifest of %d files (sha256; the %d shards' hashed as they were written) in %.2fs", out_dir,
                n_files, n_shards, sq_now_seconds() - t0);
done:
    for (int k = 0; files && k < max_files; k++)
        free(files[k]);
    for (int k = 0; known_sha256 && k < max_files; k++)
        free(known_sha256[k]);
    free(files), free(known_sha256);
    free(items);
    return st;
}
