/* cmd_status.c: `shardq status JOB.json` — a job's progress, read from its journal. */
#include <stdio.h>
#include <string.h>

#include "jobs/journal.h"
#include "jobs/spec.h"
#include "store/store.h"

int cmd_status(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: shardq status JOB.json\n");
        return 2;
    }
    sq_job_spec spec;
    if (sq_job_spec_load(&spec, argv[1]) != SQ_OK) {
        fprintf(stderr, "shardq status: %s\n", sq_last_error());
        return 1;
    }
    sq_journal journal;
    sq_store *store = NULL;
    sq_status st = sq_store_open(&store, &spec.storage);
    if (st == SQ_OK)
        st = sq_journal_read(&journal, spec.state_uri, store);
    else
        memset(&journal, 0, sizeof journal);
    if (st == SQ_ERR_NOT_FOUND) {
        printf("%s: not started (no journal at %s)\n", spec.name, spec.state_uri);
        sq_job_spec_free(&spec);
        sq_journal_close(&journal);
        sq_store_close(store);
        return 0;
    }
    if (st != SQ_OK) {
        fprintf(stderr, "shardq status: %s\n", sq_last_error());
        sq_job_spec_free(&spec);
        sq_journal_close(&journal);
        sq_store_close(store);
        return 1;
    }
    const char *hash = json_string_value(json_object_get(journal.doc, "spec_sha256"));
    printf("job %s (state %s)%s\n", spec.name, spec.state_uri,
           strcmp(hash, spec.sha256) == 0 ? "" : "  WARNING: the journal belongs to a different spec");
    json_t *steps = json_object_get(journal.doc, "steps");
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step) {
        const char *status = json_string_value(json_object_get(step, "status"));
        printf("  step %zu %-10s %-8s %d layers done\n", i, json_string_value(json_object_get(step, "kind")),
               status ? status : "?", sq_journal_layers_done(&journal, (int)i));
    }
    sq_journal_close(&journal);
    sq_store_close(store);
    sq_job_spec_free(&spec);
    return 0;
}
