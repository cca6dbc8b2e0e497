/* cmd_status.c: `shardq status JOB.json` — a job's progress, read from its journal: whether a
 * process runs it (the journal's holder, jobs/job_holder.h), and each step's layers.
 * A job that is not done and that no process holds any more (killed, stopped, failed) is
 * "interrupted": the same `shardq run` resumes it. */
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"
#include "jobs/job_holder.h"
#include "jobs/journal.h"
#include "jobs/spec.h"
#include "store/store.h"

int cmd_status(int argc, char **argv)
{
    static const char usage[] = "usage: shardq status JOB.json   (a job's progress, read from its journal)\n";
    int exit_code = sq_cmd_plain_args(argc, argv, 1, usage);
    if (exit_code >= 0)
        return exit_code;
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
    bool all_done = true;
    for (size_t i = 0; i < json_array_size(steps); i++)
        all_done = all_done && sq_journal_step_done(&journal, (int)i);
    json_t *holder = sq_journal_holder(&journal);
    sq_holder_state held = sq_holder_check(holder);
    long long pid = json_integer_value(json_object_get(holder, "pid"));
    const char *host = json_string_value(json_object_get(holder, "host"));
    if (held == SQ_HOLDER_RUNNING)
        printf("  running (rank 0 is pid %lld on %s)\n", pid, host);
    else if (held == SQ_HOLDER_ELSEWHERE)
        printf("  running on %s (rank 0 is pid %lld there; if it is gone, the job was interrupted: resume with "
               "the same command)\n", host, pid);
    else if (all_done)
        printf("  done\n");
    else
        printf("  interrupted (resume with the same command)\n");
    const char *not_running = held == SQ_HOLDER_NONE || held == SQ_HOLDER_GONE ? "interrupted" : NULL;
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step) {
        const char *status = json_string_value(json_object_get(step, "status"));
        if (status && !strcmp(status, "running") && not_running)
            status = not_running;
        printf("  step %zu %-10s %-11s %d layers done\n", i, json_string_value(json_object_get(step, "kind")),
               status ? status : "?", sq_journal_layers_done(&journal, (int)i));
    }
    sq_journal_close(&journal);
    sq_store_close(store);
    sq_job_spec_free(&spec);
    return 0;
}
