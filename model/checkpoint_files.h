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

/* How many files sq_checkpoint_copy_companions may add at most. */
#define SQ_COMPANION_FILES 5

/* The index k of the linear whose weight tensor is `tensor_name` ("<linears[k]>.weight"), or -1. */
int sq_checkpoint_linear_of(const char *tensor_name, const char *const *linears, int n_linears);

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

/* Write manifest.json covering `files` (names relative to out_dir, config.json among them). */
sq_status sq_checkpoint_write_manifest(const char *out_dir, char **files, int n_files);

#endif
