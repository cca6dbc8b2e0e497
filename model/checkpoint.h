/* checkpoint.h: the tensors of a Hugging Face model directory, wherever they live.
 *
 * A model is either one `model.safetensors` or shards listed by
 * `model.safetensors.index.json` ({"weight_map": {tensor: file}}). The index
 * opens every shard's header once, checks that every tensor the index names is
 * in the file it names (and that no tensor appears twice), and then answers
 * "which tensor, which file, what shape" and reads tensors by name.
 *
 * The model may be local (every file mmapped; a tensor's bytes are a view into
 * the mapping) or at an s3:// prefix (each file's header read by two ranged
 * GETs at open; a tensor's bytes fetched by one ranged GET when asked for, so
 * a rank downloads only the tensors it uses). Consumers see one API either way. */
#ifndef SQ_MODEL_CHECKPOINT_H
#define SQ_MODEL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/safetensors.h"
#include "core/status.h"
#include "store/store.h"

typedef struct sq_checkpoint sq_checkpoint;

/* Open the model directory `dir` (which holds config.json and the weights). */
sq_status sq_checkpoint_open(sq_checkpoint **out, const char *dir);
/* Open the model at `uri` (local path, file:// or s3://) whose small files (config.json, the shard index,
 * tokenizer files) are in the local directory `local_dir` (for a local model, the model directory itself;
 * for s3://, a staged copy: see model/model_source.h). `store` is borrowed and must outlive the checkpoint. */
sq_status sq_checkpoint_open_uri(sq_checkpoint **out, sq_store *store, const char *uri, const char *local_dir);
void sq_checkpoint_close(sq_checkpoint *ckpt);

/* Number of tensors and the i-th tensor's description (in a stable, sorted-by-name order). */
int sq_checkpoint_tensor_count(const sq_checkpoint *ckpt);
const sq_st_tensor *sq_checkpoint_tensor_at(const sq_checkpoint *ckpt, int index);
/* The file (basename) a tensor lives in. */
const char *sq_checkpoint_tensor_file(const sq_checkpoint *ckpt, int index);

/* Look up a tensor by name: NULL if absent. */
const sq_st_tensor *sq_checkpoint_find(const sq_checkpoint *ckpt, const char *name);

/* A tensor's stored bytes: a view into the mapping (local) or a buffer filled by one ranged GET
 * (s3://). Valid until sq_tensor_bytes_release, which every successful call needs. */
typedef struct {
    const sq_st_tensor *tensor;
    const void *data;
    void *owned; /* the buffer behind `data` for remote tensors, NULL for mapped ones */
} sq_tensor_bytes;

/* SQ_ERR_NOT_FOUND naming the tensor if absent. */
sq_status sq_checkpoint_tensor_bytes(const sq_checkpoint *ckpt, const char *name, sq_tensor_bytes *out);
void sq_tensor_bytes_release(sq_tensor_bytes *bytes);

/* Read a float tensor converted to fp32 into `dst`, which holds `count` floats;
 * SQ_ERR_MISMATCH if `count` is not the tensor's element count. */
sq_status sq_checkpoint_read_f32(const sq_checkpoint *ckpt, const char *name, float *dst, size_t count);

/* Where it was opened from (a directory or an s3:// prefix; for messages). */
const char *sq_checkpoint_dir(const sq_checkpoint *ckpt);
/* The local directory holding config.json and the tokenizer files. */
const char *sq_checkpoint_local_dir(const sq_checkpoint *ckpt);

/* True for a local checkpoint, whose tensors are memory-mapped: any thread may read them at
 * once (a remote one's ranged GETs share one store connection). */
bool sq_checkpoint_is_mapped(const sq_checkpoint *ckpt);

#endif
