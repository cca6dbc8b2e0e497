/* shard_writer.h: a checkpoint's safetensors shards written, hashed and synced on threads
 * of their own while the caller builds the next ones.
 *
 * Both checkpoint writers (quant/gptq_checkpoint.c, coordinator/assemble_dense.c) hand each
 * shard over as soon as it is built: its write and fsync overlap the building of the next
 * shards and one another (a 7B GPTQ output's 8 shards: 3.3 s one after another, 1.7-2.0 s
 * this way), at most `in_flight` at once, which bounds the memory held (a shard's tensors
 * stay until it is written). Each shard's SHA-256 is computed as its bytes are written
 * (sq_st_write_hashed), so the manifest takes it instead of reading the file back. */
#ifndef SQ_MODEL_SHARD_WRITER_H
#define SQ_MODEL_SHARD_WRITER_H

#include "core/safetensors.h"
#include "core/sha256.h"
#include "core/status.h"

/* Frees what a shard's entries point to, once the shard is written (or will not be). */
typedef void (*sq_shard_release)(void *owner);

/* The file name of shard `index` of n_shards, as transformers writes them: "model.safetensors" alone,
 * else "model-00001-of-00008.safetensors" (with model.safetensors.index.json beside them). */
void sq_shard_file_name(int index, int n_shards, char name[64]);

typedef struct sq_shard_writer sq_shard_writer;

/* Ready for n_shards shards under out_dir, at most in_flight (>= 1) written at once. */
sq_status sq_shard_writer_open(sq_shard_writer **w, const char *out_dir, int n_shards, int in_flight);

/* Write shard `index` as out_dir/name from entries[0..n) on a thread of its own (with metadata
 * {"format": "pt"}), first waiting for the oldest shard in flight when in_flight are. The
 * entries and what they point to must stay until release(owner), which the writer calls once
 * the shard is written, or at once when this fails. */
sq_status sq_shard_writer_submit(sq_shard_writer *w, int index, const char *name, const sq_st_entry *entries, int n,
                                 void *owner, sq_shard_release release);

/* Wait for every shard and free the writer. sha256[index] (the caller frees each) gets the hex
 * SHA-256 of every shard written, when sha256 is not NULL and all succeeded; otherwise the first
 * failure, naming its file. */
sq_status sq_shard_writer_close(sq_shard_writer *w, char **sha256);

#endif
