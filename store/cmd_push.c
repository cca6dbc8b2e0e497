/* cmd_push.c: `shardq push DIR URI [--name N] [--version V]` — upload a checkpoint to a model store. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
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
        fprintf(stderr, "usage: shardq push DIR URI [--name NAME] [--version VERSION]\n");
        return 2;
    }
    sq_store *store;
    char *model_uri = NULL;
    sq_status st = sq_store_open(&store, NULL);
    if (st == SQ_OK) {
        st = sq_model_push(store, pos[0], pos[1], name, version, &model_uri);
        sq_store_close(store);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "shardq push: %s\n", sq_last_error());
        return 1;
    }
    printf("pushed %s to %s\n", pos[0], model_uri);
    free(model_uri);
    return 0;
}
