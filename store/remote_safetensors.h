/* remote_safetensors.h: read a safetensors file through the store without downloading it.
 *
 * Opening costs one HEAD (the size) and two ranged reads: the first 8 bytes
 * (the header length) and the JSON header, which core/safetensors.h validates
 * against the size. Each tensor is then one ranged read of exactly its bytes,
 * so a rank fetches only the tensors it needs. Works on any URI (s3:// by
 * ranged GET, local files by pread). */
#ifndef SQ_STORE_REMOTE_SAFETENSORS_H
#define SQ_STORE_REMOTE_SAFETENSORS_H

#include "core/safetensors.h"
#include "core/status.h"
#include "store/store.h"

typedef struct {
    char *uri;
    uint64_t file_size;
    sq_st_header header;
} sq_remote_st;

sq_status sq_remote_st_open(sq_store *store, const char *uri, sq_remote_st *file);
void sq_remote_st_close(sq_remote_st *file);

/* The tensor's stored bytes (tensor->nbytes of them) into `dst`. */
sq_status sq_remote_st_read(sq_store *store, const sq_remote_st *file, const sq_st_tensor *tensor, void *dst);

#endif
