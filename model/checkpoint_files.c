/* checkpoint_files.c: config, companion files and manifest of an output
 * checkpoint directory (see checkpoint_files.h). */
#include "model/checkpoint_files.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/json_file.h"
#include "core/log.h"
#include "store/manifest.h"

static const char *const companion_files[SQ_COMPANION_FILES] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"};

sq_status sq_checkpoint_write_json(const char *dir, const char *name, json_t *value)
{
    return sq_write_json_file(dir, name, value, JSON_INDENT(2));
}

sq_status sq_checkpoint_load_config_json(const char *source_dir, json_t **config)
{
    char *src_path = sq_path_join(source_dir, "config.json");
    char *text = NULL;
    size_t len = 0;
    sq_status st = src_path ? sq_read_file(src_path, &text, &len) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    *config = NULL;
    if (st == SQ_OK) {
        json_error_t err;
        *config = json_loadb(text, len, 0, &err);
        if (!json_is_object(*config)) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: line %d: %s", src_path, err.line,
                         *config ? "config is not a JSON object" : err.text);
            json_decref(*config);
            *config = NULL;
        }
    }
    free(text);
    free(src_path);
    return st;
}

sq_status sq_checkpoint_copy_companions(const char *source_dir, const char *out_dir, char **files, int *n_files)
{
    sq_status st = SQ_OK;
    for (int k = 0; k < SQ_COMPANION_FILES && st == SQ_OK; k++) {
        char *src = sq_path_join(source_dir, companion_files[k]);
        char *dst = sq_path_join(out_dir, companion_files[k]);
        uint64_t size;
        sq_status present = src && dst ? sq_file_size(src, &size) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        if (present == SQ_OK) {
            st = sq_copy_file(src, dst);
            files[*n_files] = strdup(companion_files[k]);
            if (st == SQ_OK && !files[(*n_files)++])
                st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        } else if (present == SQ_ERR_NOT_FOUND) {
            sq_clear_error();
        } else {
            st = present;
        }
        free(src), free(dst);
    }
    return st;
}

sq_status sq_checkpoint_remove_stale_index(const char *out_dir)
{
    char *stale = sq_path_join(out_dir, "model.safetensors.index.json");
    if (!stale)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    int gone = unlink(stale) == 0 || errno == ENOENT;
    free(stale);
    if (!gone)
        return sq_fail(SQ_ERR_IO, "%s: cannot remove stale model.safetensors.index.json: %s", out_dir,
                       strerror(errno));
    return SQ_OK;
}

/* "<base>.safetensors.tmp.<digits>" or "<base>.json.tmp.<digits>". */
static bool is_write_temporary(const char *name)
{
    const char *tmp = strstr(name, ".tmp.");
    if (!tmp || !tmp[5])
        return false;
    for (const char *c = tmp + 5; *c; c++)
        if (*c < '0' || *c > '9')
            return false;
    static const char *const kinds[] = {".safetensors", ".json"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        size_t len = strlen(kinds[k]);
        if ((size_t)(tmp - name) > len && !strncmp(tmp - len, kinds[k], len))
            return true;
    }
    return false;
}

sq_status sq_checkpoint_remove_stale_temporaries(const char *out_dir)
{
    DIR *dir = opendir(out_dir);
    if (!dir)
        return errno == ENOENT ? SQ_OK : sq_fail(SQ_ERR_IO, "%s: cannot list: %s", out_dir, strerror(errno));
    sq_status st = SQ_OK;
    for (struct dirent *e; st == SQ_OK && (e = readdir(dir));) {
        if (!is_write_temporary(e->d_name))
            continue;
        char *path = sq_path_join(out_dir, e->d_name);
        if (!path)
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        else if (unlink(path) != 0 && errno != ENOENT)
            st = sq_fail(SQ_ERR_IO, "%s: cannot remove a stale temporary file: %s", path, strerror(errno));
        else
            sq_log_info("%s: removed, left by a writer that did not finish", path);
        free(path);
    }
    closedir(dir);
    return st;
}

/* The manifest's summary of the checkpoint, from the config.json just written:
 * its quantization_config (or, for a "dense" output, dequantized_from) and
 * sparsity_config, and the method that made them (`method` when given, else the
 * config's quant_method or sparsity method). */
static sq_status summary_from_config(const char *out_dir, const char *method, json_t **meta)
{
    json_t *config;
    SQ_TRY(sq_checkpoint_load_config_json(out_dir, &config));
    json_t *quantization = json_object_get(config, "quantization_config");
    if (!quantization) /* a "dense" output records the quantization it was dequantized from */
        quantization = json_object_get(config, "dequantized_from");
    json_t *sparsity = json_object_get(config, "sparsity_config");
    if (!method)
        method = json_string_value(json_object_get(quantization, "quant_method"));
    if (!method)
        method = json_string_value(json_object_get(sparsity, "method"));
    *meta = json_object();
    if (json_is_object(quantization))
        json_object_set(*meta, "quantization", quantization);
    if (json_is_object(sparsity))
        json_object_set(*meta, "sparsity", sparsity);
    if (method)
        json_object_set_new(*meta, "method", json_string(method));
    json_decref(config);
    return *meta ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", out_dir);
}

sq_status sq_checkpoint_write_manifest(const char *out_dir, char **files, int n_files, const char *const *known_sha256,
                                       const char *method)
{
    json_t *manifest = NULL, *meta = NULL;
    sq_status st = sq_manifest_describe(out_dir, files, n_files, known_sha256, &manifest);
    if (st == SQ_OK)
        st = summary_from_config(out_dir, method, &meta);
    if (st == SQ_OK)
        st = sq_manifest_set_meta(manifest, meta, out_dir);
    if (st == SQ_OK)
        st = sq_manifest_write(out_dir, manifest);
    json_decref(meta);
    json_decref(manifest);
    return st;
}

const char *sq_checkpoint_layer_part(const char *tensor_name, int *layer)
{
    int consumed = 0;
    if (sscanf(tensor_name, "model.layers.%d.%n", layer, &consumed) != 1 || consumed == 0)
        return NULL;
    return tensor_name + consumed;
}

int sq_checkpoint_linear_of(const char *tensor_name, const char *const *linears, int n_linears)
{
    size_t len = strlen(tensor_name);
    if (len < 7 || strcmp(tensor_name + len - 7, ".weight") != 0)
        return -1;
    for (int k = 0; k < n_linears; k++)
        if (strlen(linears[k]) == len - 7 && strncmp(linears[k], tensor_name, len - 7) == 0)
            return k;
    return -1;
}

sq_status sq_checkpoint_output_bytes(const sq_checkpoint *source, const sq_st_tensor *t, sq_tensor_override override,
                                     void *ctx, sq_tensor_bytes *out)
{
    void *replaced = NULL;
    memset(out, 0, sizeof *out);
    if (override)
        SQ_TRY(override(ctx, t, &replaced));
    if (!replaced)
        return sq_checkpoint_tensor_bytes(source, t->name, out);
    *out = (sq_tensor_bytes){.tensor = t, .data = replaced, .owned = replaced};
    return SQ_OK;
}
