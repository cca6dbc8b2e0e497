/* remote_st_tool.c: read tensors of a safetensors file through the store (ranged reads), for tests.
 *
 *   remote_st_tool URI                 prints "NAME DTYPE_SIZE NBYTES" per tensor
 *   remote_st_tool URI TENSOR OUT      writes the tensor's stored bytes to OUT
 * Settings come from the environment (see store/store.h). */
#include <stdio.h>
#include <stdlib.h>

#include "core/fileio.h"
#include "store/remote_safetensors.h"

static sq_status run(sq_store *store, int argc, char **argv)
{
    sq_remote_st file;
    SQ_TRY(sq_remote_st_open(store, argv[1], &file));
    sq_status st = SQ_OK;
    if (argc == 2) {
        for (int i = 0; i < file.header.n_tensors; i++)
            printf("%s %llu\n", file.header.tensors[i].name, (unsigned long long)file.header.tensors[i].nbytes);
    } else {
        const sq_st_tensor *t = sq_st_find(&file.header, argv[2]);
        void *buf = t ? malloc(t->nbytes ? t->nbytes : 1) : NULL;
        if (!t)
            st = sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor '%s'", argv[1], argv[2]);
        else if (!buf)
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        else
            st = sq_remote_st_read(store, &file, t, buf);
        if (st == SQ_OK)
            st = sq_write_file_atomic(argv[3], buf, t->nbytes);
        free(buf);
    }
    sq_remote_st_close(&file);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: remote_st_tool URI [TENSOR OUT]\n");
        return 2;
    }
    sq_store *store;
    sq_status st = sq_store_open(&store, NULL);
    if (st == SQ_OK) {
        st = run(store, argc, argv);
        sq_store_close(store);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "remote_st_tool: %s\n", sq_last_error());
        return 1;
    }
    return 0;
}
