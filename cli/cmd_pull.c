/* cmd_pull.c: `shardq pull URI DIR` — download a checkpoint, verifying every file's sha256. */
#include <stdio.h>

#include "cli/cmds.h"
#include "store/model_store.h"

int cmd_pull(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: shardq pull URI DIR   (URI: a checkpoint, e.g. s3://bucket/store/NAME/VERSION)\n");
        return 2;
    }
    sq_store *store;
    sq_status st = sq_store_open(&store, NULL);
    if (st == SQ_OK) {
        st = sq_model_pull(store, argv[1], argv[2]);
        sq_store_close(store);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "shardq pull: %s\n", sq_last_error());
        return 1;
    }
    printf("pulled %s to %s (every file's sha256 verified)\n", argv[1], argv[2]);
    return 0;
}
