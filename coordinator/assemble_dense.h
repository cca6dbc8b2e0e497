/* assemble_dense.h: the output checkpoint of a pruning step that does not
 * quantize (sparsegpt with bits 0, wanda, magnitude): a dense Hugging Face
 * checkpoint with the source's tensor names, shapes and dtypes, the pruned
 * linears' weights (zeros in place) replacing theirs and every other tensor
 * copied as stored; shards of at most 4 GiB with model.safetensors.index.json
 * when one file would be larger; config.json is the source's plus the
 * caller's extra entries (the sparsity_config); tokenizer files copied;
 * manifest.json last (model/checkpoint_files.h). */
#ifndef SQ_COORDINATOR_ASSEMBLE_DENSE_H
#define SQ_COORDINATOR_ASSEMBLE_DENSE_H

#include <jansson.h>

#include "core/status.h"
#include "model/checkpoint.h"
#include "worker/layer_results.h"

/* Supplies a pruned linear's weights (name without ".weight"); the writer owns and frees *dense. */
typedef sq_status (*sq_dense_linear_source)(void *ctx, const char *linear, sq_dense_weights *dense);

typedef struct {
    const sq_checkpoint *source;
    const char *const *linears; /* the pruned linears, without ".weight" */
    int n_linears;
    sq_dense_linear_source get_linear;
    void *ctx;
    json_t *extra_config;           /* merged into config.json, or NULL */
    const char *const *extra_files; /* files the caller already wrote into out_dir, for the manifest */
    int n_extra_files;
    uint64_t max_shard_bytes;       /* 0: 4 GiB */
} sq_dense_checkpoint_request;

sq_status sq_dense_checkpoint_write(const sq_dense_checkpoint_request *req, const char *out_dir);

#endif
