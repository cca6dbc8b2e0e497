/* assemble_dense.h: an output checkpoint that keeps the source's layout: every
 * source tensor copied as stored, except each listed linear's weight, which
 * the caller replaces by the tensors it supplies (in any dtype and shape):
 *  - pruning steps (sparsegpt with bits 0, wanda, magnitude) and the "dense"
 *    output format supply "<linear>.weight" in the source's dtype and shape
 *    (pruned, or dequantized from a quantized result);
 *  - the "compressed-tensors" output format supplies weight_packed,
 *    weight_scale, weight_shape and weight_zero_point
 *    (coordinator/assemble_compressed.h).
 * A linear's name may also name a norm (smoothquant's rescaled norms, "<norm>.weight" 1-D).
 * Shards of at most 4 GiB (by source size) with model.safetensors.index.json
 * when one file would be larger; config.json is the source's plus the caller's
 * extra entries (sparsity_config, quantization records); tokenizer files
 * copied; manifest.json last (model/checkpoint_files.h). */
#ifndef SQ_COORDINATOR_ASSEMBLE_DENSE_H
#define SQ_COORDINATOR_ASSEMBLE_DENSE_H

#include <jansson.h>

#include "core/status.h"
#include "model/checkpoint.h"
#include "worker/layer_results.h"

/* One tensor a linear's weight becomes: "<linear><suffix>". */
typedef struct {
    const char *suffix; /* ".weight", ".weight_packed", ... (a string literal) */
    sq_dtype dtype;
    int ndim;           /* 1 or 2 */
    int64_t shape[2];
    void *data;         /* malloc'd; the writer frees it */
} sq_linear_tensor;

#define SQ_LINEAR_TENSORS_MAX 4

typedef struct {
    int n;
    sq_linear_tensor t[SQ_LINEAR_TENSORS_MAX];
} sq_linear_tensors;

void sq_linear_tensors_free(sq_linear_tensors *tensors);
/* tensors = one "<linear>.weight" holding dense's data, whose ownership moves over (dense is emptied). */
void sq_linear_tensors_take_dense(sq_linear_tensors *tensors, sq_dense_weights *dense);

/* Supplies the tensors of a linear (name without ".weight"); the writer frees them.
 * A ".weight" must have the source tensor's dtype and shape. */
typedef sq_status (*sq_linear_tensors_source)(void *ctx, const char *linear, sq_linear_tensors *tensors);

typedef struct {
    const sq_checkpoint *source;
    const char *const *linears; /* the replaced linears, without ".weight" */
    int n_linears;
    sq_linear_tensors_source get_linear;
    void *ctx;
    json_t *extra_config;           /* merged into config.json, or NULL */
    const char *const *extra_files; /* files the caller already wrote into out_dir, for the manifest */
    int n_extra_files;
    uint64_t max_shard_bytes;       /* 0: 4 GiB */
    const sq_st_entry *extra_tensors; /* added to the last shard (a kv_cache step's scales), or NULL */
    int n_extra_tensors;
} sq_dense_checkpoint_request;

sq_status sq_dense_checkpoint_write(const sq_dense_checkpoint_request *req, const char *out_dir);

#endif
