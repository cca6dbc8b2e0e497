/* cmd_push.c: `shardq push CHECKPOINT URI [--name N] [--version V]` — copy a checkpoint (a local
 * directory or an s3:// prefix holding manifest.json) into a model store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmds.h"
#include "store/model_store.h"

int cmd_push(int argc, char **argv)
{
    const char *pos[2] = {NULL, NULL}, *name = NULL, *version = NULL;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else if (!strcmp(argv[i], "--version") && i + 1 < argc)
            version = argv[++i];
        else if (argv[i][0] != '-' && npos < 2)
            pos[npos++] = argv[i];
        else
            npos = 3;
    }
    if (npos != 2) {
        fprintf(stderr, "usage: shardq push CHECKPOINT STORE_URI [--name NAME] [--version VERSION]\n");
        return 2;
    }
    sq_store *store;
    sq_push_result pushed = {0};
    sq_status st = sq_store_open(&store, NULL);
    if (st == SQ_OK) {
        sq_push_request req = {.name = name, .version = version};
        st = sq_model_push(store, pos[0], pos[1], &req, &pushed);
        sq_store_close(store);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "shardq push: %s\n", sq_last_error());
        return 1;
    }
    printf("pushed %s to %s (manifest sha256 %s)\n", pos[0], pushed.model_uri, pushed.manifest_sha256);
    sq_push_result_free(&pushed);
    return 0;
}
