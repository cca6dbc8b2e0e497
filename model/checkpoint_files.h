/* checkpoint_files.h: what an output checkpoint directory holds besides its
 * tensors, shared by the GPTQ writer (quant/gptq_checkpoint.h) and the dense
 * writer of pruning steps (coordinator/assemble_dense.c): config.json derived
 * from the source's, the source's tokenizer and generation files copied over,
 * and manifest.json (store/manifest.h) with every file's sha256 and size and
 * the config's quantization_config / sparsity_config as its summary. Every
 * file is written atomically. */
#ifndef SQ_MODEL_CHECKPOINT_FILES_H
#define SQ_MODEL_CHECKPOINT_FILES_H

#include <jansson.h>

#include "core/status.h"
#include "model/checkpoint.h"

/* How many files sq_checkpoint_copy_companions may add at most. */
#define SQ_COMPANION_FILES 5

/* "model.layers.<N>.<rest>" -> N in *layer and a pointer to <rest> inside tensor_name; NULL for a
 * tensor outside the decoder layers. */
const char *sq_checkpoint_layer_part(const char *tensor_name, int *layer);

/* The index k of the linear whose weight tensor is `tensor_name` ("<linears[k]>.weight"), or -1. */
int sq_checkpoint_linear_of(const char *tensor_name, const char *const *linears, int n_linears);

/* Replacement values for a source tensor that is not a replaced linear (an awq step's folded
 * norms): *data receives a malloc'd buffer of the tensor's dtype and shape (the writer frees
 * it), or stays NULL to keep the source's bytes. */
typedef sq_status (*sq_tensor_override)(void *ctx, const sq_st_tensor *tensor, void **data);

/* The bytes the output holds for source tensor t: the override's (override may be NULL)
 * or the source's; release them with sq_tensor_bytes_release. */
sq_status sq_checkpoint_output_bytes(const sq_checkpoint *source, const sq_st_tensor *t, sq_tensor_override override,
                                     void *ctx, sq_tensor_bytes *out);

/* Write `value` as indented JSON to dir/name. */

sq_status sq_checkpoint_write_json(const char *dir, const char *name, json_t *value);

/* source_dir/config.json as a JSON object (a new reference in *config). */
sq_status sq_checkpoint_load_config_json(const char *source_dir, json_t **config);

/* Copy tokenizer.json, tokenizer_config.json, special_tokens_map.json, tokenizer.model
 * and generation_config.json from source_dir when present, appending each copied
 * name (allocated) to files[*n_files]; `files` has room for SQ_COMPANION_FILES more. */
sq_status sq_checkpoint_copy_companions(const char *source_dir, const char *out_dir, char **files, int *n_files);

/* Remove out_dir/model.safetensors.index.json if present: a stale index from an
 * earlier sharded write would take precedence over a single model.safetensors. */
sq_status sq_checkpoint_remove_stale_index(const char *out_dir);

/* Remove what a killed writer left in out_dir: files named "<name>.safetensors.tmp.<pid>" or
 * "<name>.json.tmp.<pid>", the temporaries of atomic writes (core/fileio.h) that never got
 * renamed into place. Other files are left alone. */
sq_status sq_checkpoint_remove_stale_temporaries(const char *out_dir);

/* Write manifest.json covering `files` (names relative to out_dir, config.json among them),
 * with the SHA-256s already known (sq_manifest_describe's known_sha256; NULL: hash them all).
 * `method` (e.g. "rtn") is the manifest's method; NULL: the config's quant_method or sparsity method. */
sq_status sq_checkpoint_write_manifest(const char *out_dir, char **files, int n_files, const char *const *known_sha256,
                                       const char *method);

#endif
