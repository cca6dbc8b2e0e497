/* fileio.h: small, safe local-file helpers: whole-file reads, atomic writes and copies.
 *
 * An atomic write goes to "<path>.tmp.<pid>" in the same directory, is fsynced,
 * renamed over `path`, and the directory is fsynced, so a crash leaves either
 * the old file or the new one, never a torn one. */
#ifndef SQ_FILEIO_H
#define SQ_FILEIO_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

/* Read a whole file into a new NUL-terminated buffer (caller frees). */
sq_status sq_read_file(const char *path, char **data, size_t *len);

/* Atomically replace `path` with `len` bytes of `data`. */
sq_status sq_write_file_atomic(const char *path, const void *data, size_t len);

/* The end of an atomic replacement whose temp file `tmp` (next to `path`) is written,
 * fsynced and closed: with `st` SQ_OK, rename it over `path` and fsync the directory;
 * otherwise, or when that fails, remove it. Returns the first failure. */
sq_status sq_rename_into_place(const char *tmp, const char *path, sq_status st);

/* fsync the directory holding `path`, so a rename into it is durable. */
sq_status sq_fsync_parent_dir(const char *path);

/* mkdir -p. */
sq_status sq_make_dirs(const char *path);

/* Copy a file (atomically at the destination), streamed through one buffer of
 * SQ_COPY_CHUNK_BYTES: a file of any size copies in constant memory. */
#define SQ_COPY_CHUNK_BYTES ((size_t)1 << 20)
sq_status sq_copy_file(const char *src, const char *dst);

/* Size of a file, SQ_ERR_NOT_FOUND if it does not exist. */
sq_status sq_file_size(const char *path, uint64_t *size);

/* True when `path` does not exist or is a directory with no entries. */
bool sq_dir_is_absent_or_empty(const char *path);

/* Join two path parts with '/' into a new string (caller frees). */
char *sq_path_join(const char *dir, const char *name);

#endif
