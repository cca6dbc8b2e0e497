/* cmd_models.c: `shardq models URI` — list the checkpoints a model store holds (from its index.json). */
#include <stdio.h>

#include "cli/cmds.h"
#include "store/model_store.h"

static const char *str_or_dash(json_t *record, const char *key)
{
    const char *s = json_string_value(json_object_get(record, key));
    return s ? s : "-";
}

int cmd_models(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: shardq models URI\n");
        return 2;
    }
    sq_store *store;
    json_t *index = NULL;
    sq_status st = sq_store_open(&store, NULL);
    if (st == SQ_OK) {
        st = sq_model_index(store, argv[1], &index);
        sq_store_close(store);
    }
    if (st != SQ_OK) {
        fprintf(stderr, "shardq models: %s\n", sq_last_error());
        return 1;
    }
    json_t *models = json_object_get(index, "models");
    if (json_array_size(models) == 0)
        printf("%s: no models\n", argv[1]);
    else
        printf("%-28s %-10s %-10s %-21s %s\n", "NAME", "VERSION", "METHOD", "CREATED", "SOURCE");
    size_t i;
    json_t *r;
    json_array_foreach(models, i, r) {
        printf("%-28s %-10s %-10s %-21s %s\n", str_or_dash(r, "name"), str_or_dash(r, "version"),
               str_or_dash(r, "method"), str_or_dash(r, "created"), str_or_dash(r, "source_model"));
    }
    json_decref(index);
    return 0;
}
