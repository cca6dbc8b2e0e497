/* store_backend.h: the two storage backends behind store.h, and what they share.
 *
 * Internal to store/. store.c parses each URI and calls the local backend
 * (store_local.c: paths and file://) or the S3 backend (store_s3.c: s3://)
 * with the same operation; the semantics of each operation are store.h's.
 * Local functions take the filesystem path (and the URI, for messages); S3
 * functions take the client settings and the parsed URI. */
#ifndef SQ_STORE_STORE_BACKEND_H
#define SQ_STORE_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "store/s3_client.h"
#include "store/store.h"
#include "store/uri.h"

/* Shared by both backends (store.c). */
sq_status sq_store_make_parent_dirs(const char *path);
/* Append one name and size to a listing; `cap` is the arrays' capacity. */
sq_status sq_object_list_add(sq_object_list *out, int *cap, const char *name, uint64_t size);

/* Local backend (store_local.c). */
sq_status sq_local_get(const char *path, void **data, size_t *len);
sq_status sq_local_get_range(const char *path, uint64_t offset, uint64_t len, void *dst);
sq_status sq_local_get_file(const char *path, const char *local_path);
sq_status sq_local_put(const char *path, const void *data, size_t len);
sq_status sq_local_put_file(const char *path, const char *local_path);
sq_status sq_local_head(const char *path, const char *uri, sq_object_info *info);
sq_status sq_local_list(const char *path, sq_object_list *out, int *cap);
sq_status sq_local_copy(const char *src, const char *dst);
sq_status sq_local_delete(const char *path, const char *uri);

/* S3 backend (store_s3.c). sq_s3_configure fills `s3` from the spec's storage
 * options (may be NULL) and the environment; sq_s3_release frees it, wiping
 * the secrets. */
sq_status sq_s3_configure(sq_s3 *s3, const sq_storage_options *options);
void sq_s3_release(sq_s3 *s3);
sq_status sq_s3_store_get(const sq_s3 *s3, const sq_uri *u, const char *uri, void **data, size_t *len);
sq_status sq_s3_store_get_range(const sq_s3 *s3, const sq_uri *u, uint64_t offset, uint64_t len, void *dst);
sq_status sq_s3_store_get_file(const sq_s3 *s3, const sq_uri *u, const char *uri, const char *local_path);
sq_status sq_s3_store_put(const sq_s3 *s3, const sq_uri *u, const char *uri, const void *data, size_t len);
sq_status sq_s3_store_put_file(const sq_s3 *s3, const sq_uri *u, const char *uri, const char *local_path);
sq_status sq_s3_store_head(const sq_s3 *s3, const sq_uri *u, const char *uri, sq_object_info *info);
sq_status sq_s3_store_list(const sq_s3 *s3, const sq_uri *u, sq_object_list *out, int *cap);
sq_status sq_s3_store_copy(const sq_s3 *s3, const sq_uri *src, const sq_uri *dst, const char *src_uri,
                           const char *dst_uri);
sq_status sq_s3_store_delete(const sq_s3 *s3, const sq_uri *u);
sq_status sq_s3_store_abort_uploads(const sq_s3 *s3, const sq_uri *u, int *n_aborted);

#endif
