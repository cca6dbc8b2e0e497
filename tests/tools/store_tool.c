/* store_tool.c: drive the storage API (store/store.h) from the command line, for tests.
 *
 *   store_tool get URI OUT            whole object into memory, then to OUT
 *   store_tool getfile URI OUT        whole object streamed to OUT (atomic)
 *   store_tool range URI OFF LEN OUT  a byte range into OUT
 *   store_tool put URI FILE           FILE read into memory, then sq_store_put
 *   store_tool putfile URI FILE       sq_store_put_file (multipart streamed from the file)
 *   store_tool head URI               prints "SIZE ETAG SHA256" ("-" for an unknown one)
 *   store_tool list URI               prints "SIZE NAME" lines
 *   store_tool delete URI
 *   store_tool abort-uploads URI      aborts unfinished multipart uploads under URI, prints their count
 * Settings come from the environment (see store.h). On failure prints the error and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "store/store.h"

#define USAGE_VERBS "get|getfile|range|put|putfile|head|list|delete|abort-uploads"

static sq_status run(sq_store *s, int argc, char **argv)
{
    const char *verb = argv[1], *uri = argv[2];
    if (!strcmp(verb, "get") && argc == 4) {
        void *data;
        size_t len;
        SQ_TRY(sq_store_get(s, uri, &data, &len));
        sq_status st = sq_write_file_atomic(argv[3], data, len);
        free(data);
        return st;
    }
    if (!strcmp(verb, "getfile") && argc == 4)
        return sq_store_get_file(s, uri, argv[3]);
    if (!strcmp(verb, "range") && argc == 6) {
        uint64_t off = strtoull(argv[3], NULL, 10), len = strtoull(argv[4], NULL, 10);
        char *buf = malloc(len ? len : 1);
        if (!buf)
            return sq_fail(SQ_ERR_NOMEM, "out of memory");
        sq_status st = sq_store_get_range(s, uri, off, len, buf);
        if (st == SQ_OK)
            st = sq_write_file_atomic(argv[5], buf, len);
        free(buf);
        return st;
    }
    if (!strcmp(verb, "put") && argc == 4) {
        char *data;
        size_t len;
        SQ_TRY(sq_read_file(argv[3], &data, &len));
        sq_status st = sq_store_put(s, uri, data, len);
        free(data);
        return st;
    }
    if (!strcmp(verb, "putfile") && argc == 4)
        return sq_store_put_file(s, uri, argv[3]);
    if (!strcmp(verb, "head") && argc == 3) {
        sq_object_info info;
        SQ_TRY(sq_store_head(s, uri, &info));
        printf("%llu %s %s\n", (unsigned long long)info.size, info.etag[0] ? info.etag : "-",
               info.sha256[0] ? info.sha256 : "-");
        return SQ_OK;
    }
    if (!strcmp(verb, "list") && argc == 3) {
        sq_object_list list;
        SQ_TRY(sq_store_list(s, uri, &list));
        for (int i = 0; i < list.n; i++)
            printf("%llu %s\n", (unsigned long long)list.sizes[i], list.names[i]);
        sq_object_list_free(&list);
        return SQ_OK;
    }
    if (!strcmp(verb, "delete") && argc == 3)
        return sq_store_delete(s, uri);
    if (!strcmp(verb, "abort-uploads") && argc == 3) {
        int n;
        SQ_TRY(sq_store_abort_uploads(s, uri, &n));
        printf("%d\n", n);
        return SQ_OK;
    }
    return sq_fail(SQ_ERR_ARG, "usage: store_tool " USAGE_VERBS " URI [...]");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: store_tool " USAGE_VERBS " URI [...]\n");
        return 2;
    }
    sq_store *s;
    sq_status st = sq_store_open(&s, NULL);
    if (st == SQ_OK) {
        st = run(s, argc, argv);
        sq_store_close(s);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "store_tool: %s: %s\n", sq_status_name(st), sq_last_error());
        return 1;
    }
    return 0;
}
