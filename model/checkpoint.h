/* checkpoint.h: the tensors of a Hugging Face model directory, wherever they live.
 *
 * A model is either one `model.safetensors` or shards listed by
 * `model.safetensors.index.json` ({"weight_map": {tensor: file}}). The index
 * opens every shard's header once, checks that every tensor the index names is
 * in the file it names (and that no tensor appears twice), and then answers
 * "which tensor, which file, what shape" and reads tensors by name. */
#ifndef SQ_MODEL_CHECKPOINT_H
#define SQ_MODEL_CHECKPOINT_H

#include <stddef.h>

#include "core/safetensors.h"
#include "core/status.h"

typedef struct sq_checkpoint sq_checkpoint;

/* Open the model directory `dir` (which holds config.json and the weights). */
sq_status sq_checkpoint_open(sq_checkpoint **out, const char *dir);
void sq_checkpoint_close(sq_checkpoint *ckpt);

/* Number of tensors and the i-th tensor's description (in a stable, sorted-by-name order). */
int sq_checkpoint_tensor_count(const sq_checkpoint *ckpt);
const sq_st_tensor *sq_checkpoint_tensor_at(const sq_checkpoint *ckpt, int index);
/* The file (basename) a tensor lives in. */
const char *sq_checkpoint_tensor_file(const sq_checkpoint *ckpt, int index);

/* Look up a tensor by name: NULL if absent. */
const sq_st_tensor *sq_checkpoint_find(const sq_checkpoint *ckpt, const char *name);

/* Pointer to a tensor's raw stored bytes (valid until close); SQ_ERR_NOT_FOUND naming it if absent. */
sq_status sq_checkpoint_raw(const sq_checkpoint *ckpt, const char *name, const sq_st_tensor **tensor,
                            const void **data);

/* Read a float tensor converted to fp32 into `dst`, which holds `count` floats;
 * SQ_ERR_MISMATCH if `count` is not the tensor's element count. */
sq_status sq_checkpoint_read_f32(const sq_checkpoint *ckpt, const char *name, float *dst, size_t count);

/* The directory it was opened from. */
const char *sq_checkpoint_dir(const sq_checkpoint *ckpt);

#endif
