/* safetensors.h: read and write the safetensors format (Hugging Face).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"k": "v"}}, then the data buffer. Offsets are relative to
 * the start of the data buffer.
 *
 * The reader trusts nothing: header length bounded by the file size and by
 * SQ_ST_MAX_HEADER, JSON valid and an object, every dtype known, every shape
 * non-negative and its element count times the dtype size equal to the byte
 * range, every range inside the data buffer, ranges not overlapping. Every
 * violation is SQ_ERR_FORMAT with a message naming the file and the tensor.
 *
 * The writer is atomic: it writes a temporary file beside the target, fsyncs
 * it, renames it over the target and fsyncs the directory. */
#ifndef SQ_SAFETENSORS_H
#define SQ_SAFETENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "core/dtype.h"
#include "core/sha256.h"
#include "core/status.h"

#define SQ_ST_MAX_DIMS 8
#define SQ_ST_MAX_HEADER (100u * 1024u * 1024u) /* 100 MB, as the reference implementation */

typedef struct {
    char *name;
    sq_dtype dtype;
    int ndim;
    int64_t shape[SQ_ST_MAX_DIMS];
    uint64_t begin;  /* offset in the data buffer */
    uint64_t nbytes; /* end - begin */
} sq_st_tensor;

/* The parsed, validated header. Tensors are in file order (by data offset). */
typedef struct {
    uint64_t data_start; /* 8 + header length: where the data buffer starts in the file */
    int n_tensors;
    sq_st_tensor *tensors;
    json_t *metadata; /* the "__metadata__" object or NULL */
} sq_st_header;

/* Validate and parse a header. `origin` names the file/URI in messages; `json_text`
 * has `json_len` bytes (not NUL-terminated); `file_size` is the whole file's size. */
sq_status sq_st_parse_header(sq_st_header *out, const char *origin, const char *json_text,
                             uint64_t json_len, uint64_t file_size);
void sq_st_header_free(sq_st_header *header);

/* The tensor called `name`, or NULL. */
const sq_st_tensor *sq_st_find(const sq_st_header *header, const char *name);

/* Number of elements of a tensor (product of its shape). */
uint64_t sq_st_numel(const sq_st_tensor *tensor);

/* A local file, memory-mapped read-only. */
typedef struct {
    char *path;
    uint64_t file_size;
    const uint8_t *map;
    sq_st_header header;
} sq_st_file;

sq_status sq_st_open(sq_st_file *file, const char *path);
void sq_st_close(sq_st_file *file);

/* Pointer to a tensor's bytes inside the mapping. */
const void *sq_st_data(const sq_st_file *file, const sq_st_tensor *tensor);

/* One tensor to write. `data` holds numel * dtype size bytes. */
typedef struct {
    const char *name;
    sq_dtype dtype;
    int ndim;
    int64_t shape[SQ_ST_MAX_DIMS];
    const void *data;
} sq_st_entry;

/* Write `n` tensors (in the given order) and optional string->string metadata
 * (may be NULL) to `path`, atomically. Names must be unique. */
sq_status sq_st_write(const char *path, const sq_st_entry *entries, int n, json_t *metadata);
/* sq_st_write, and the SHA-256 of the file's bytes in sha256_hex, computed as they are
 * written (no read back: a manifest or a journal record can take it as it is). */
sq_status sq_st_write_hashed(const char *path, const sq_st_entry *entries, int n, json_t *metadata,
                             char sha256_hex[SQ_SHA256_HEX_LEN + 1]);

#endif
