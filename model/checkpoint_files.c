/* checkpoint_files.c: config, companion files and manifest of an output
 * checkpoint directory (see checkpoint_files.h). */
#include "model/checkpoint_files.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/sha256.h"

static const char *const companion_files[SQ_COMPANION_FILES] = {
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"};

sq_status sq_checkpoint_write_json(const char *dir, const char *name, json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2));
    char *path = sq_path_join(dir, name);
    sq_status st = text && path ? sq_write_file_atomic(path, text, strlen(text))
                                : sq_fail(SQ_ERR_NOMEM, "cannot serialise %s", name);
    free(text);
    free(path);
    return st;
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

static int by_string(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

sq_status sq_checkpoint_write_manifest(const char *out_dir, char **files, int n_files)
{
    qsort(files, (size_t)n_files, sizeof *files, by_string);
    json_t *list = json_array();
    sq_status st = SQ_OK;
    for (int k = 0; k < n_files && st == SQ_OK; k++) {
        char *path = sq_path_join(out_dir, files[k]);
        char hex[SQ_SHA256_HEX_LEN + 1];
        uint64_t size = 0;
        st = path ? sq_file_size(path, &size) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        if (st == SQ_OK)
            st = sq_sha256_file(path, hex);
        if (st == SQ_OK)
            json_array_append_new(list, json_pack("{s:s, s:I, s:s}", "path", files[k], "size", (json_int_t)size,
                                                  "sha256", hex));
        free(path);
    }
    json_t *manifest = json_pack("{s:o}", "files", list);
    if (st == SQ_OK)
        st = sq_checkpoint_write_json(out_dir, "manifest.json", manifest);
    json_decref(manifest);
    return st;
}
