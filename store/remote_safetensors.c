/* remote_safetensors.c: safetensors header and tensors by ranged reads (see remote_safetensors.h). */
#include "store/remote_safetensors.h"

#include <stdlib.h>
#include <string.h>

sq_status sq_remote_st_open(sq_store *store, const char *uri, sq_remote_st *file)
{
    memset(file, 0, sizeof(*file));
    sq_object_info info;
    SQ_TRY(sq_store_head(store, uri, &info));
    if (info.size < 8)
        return sq_fail(SQ_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", uri,
                       (unsigned long long)info.size);
    unsigned char prefix[8];
    SQ_TRY(sq_store_get_range(store, uri, 0, 8, prefix));
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = (header_len << 8) | prefix[i];
    if (header_len > SQ_ST_MAX_HEADER || header_len > info.size - 8)
        return sq_fail(SQ_ERR_FORMAT, "%s: header length %llu exceeds the file size %llu or the %u-byte limit", uri,
                       (unsigned long long)header_len, (unsigned long long)info.size, SQ_ST_MAX_HEADER);
    char *json = malloc(header_len ? header_len : 1);
    if (!json)
        return sq_fail(SQ_ERR_NOMEM, "%s: no memory for a %llu-byte header", uri, (unsigned long long)header_len);
    sq_status st = sq_store_get_range(store, uri, 8, header_len, json);
    if (st == SQ_OK)
        st = sq_st_parse_header(&file->header, uri, json, header_len, info.size);
    free(json);
    if (st != SQ_OK)
        return st;
    file->uri = strdup(uri);
    file->file_size = info.size;
    if (!file->uri) {
        sq_st_header_free(&file->header);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
    }
    return SQ_OK;
}

void sq_remote_st_close(sq_remote_st *file)
{
    if (file->uri)
        sq_st_header_free(&file->header);
    free(file->uri);
    memset(file, 0, sizeof(*file));
}

sq_status sq_remote_st_read(sq_store *store, const sq_remote_st *file, const sq_st_tensor *tensor, void *dst)
{
    uint64_t offset = file->header.data_start + tensor->begin;
    if (offset < tensor->begin || offset + tensor->nbytes < offset || offset + tensor->nbytes > file->file_size)
        return sq_fail(SQ_ERR_FORMAT, "%s: tensor '%s' lies outside the file", file->uri, tensor->name);
    sq_status st = sq_store_get_range(store, file->uri, offset, tensor->nbytes, dst);
    return st == SQ_OK ? SQ_OK : sq_fail_context(st, "reading tensor '%s'", tensor->name);
}
