/* st_copy.c: reads a safetensors file with shardq's reader and writes every tensor (in file order)
 * and its metadata with shardq's writer, so tests can check both against an independent
 * implementation.
 *
 *   st_copy IN.safetensors OUT.safetensors */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/safetensors.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: st_copy IN.safetensors OUT.safetensors\n");
        return 2;
    }
    sq_st_file in;
    if (sq_st_open(&in, argv[1]) != SQ_OK) {
        fprintf(stderr, "st_copy: %s\n", sq_last_error());
        return 1;
    }
    int n = in.header.n_tensors;
    sq_st_entry *entries = calloc(n ? (size_t)n : 1, sizeof *entries);
    if (!entries) {
        sq_st_close(&in);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const sq_st_tensor *t = &in.header.tensors[i];
        entries[i] = (sq_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = sq_st_data(&in, t)};
        memcpy(entries[i].shape, t->shape, sizeof t->shape);
    }
    sq_status st = sq_st_write(argv[2], entries, n, in.header.metadata);
    if (st != SQ_OK)
        fprintf(stderr, "st_copy: %s\n", sq_last_error());
    free(entries);
    sq_st_close(&in);
    return st == SQ_OK ? 0 : 1;
}
