/* cmd_sweep.c: `shardq sweep SWEEP.json` — every point of a sweep (jobs/sweep_spec.h) run as a
 * job, one after another in this one MPI run; each finished point appends its record to
 * ROOT/results.jsonl (rank 0 the only writer, jobs/sweep_results.h), and a point already recorded
 * there with the same spec is skipped, so a rerun after a kill carries on: the point that was
 * running resumes from its own journal. `--point N` runs point N only (one element of a Slurm job
 * array, cluster/submit.sh --sweep); `--dry-run` lists the points, each validated, and runs
 * nothing. Exit codes as `shardq run`: 0 done, 75 stopped by a signal (run it again), 1 failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cmds.h"
#include "cli/mpi_session.h"
#include "coordinator/run_job.h"
#include "coordinator/sweep_record.h"
#include "core/log.h"
#include "jobs/sweep_results.h"
#include "jobs/sweep_spec.h"
#include "kernels/kernels.h"
#include "worker/comm.h"

static const char usage[] =
    "usage: shardq sweep SWEEP.json [--dry-run] [--point N]\n"
    "  runs the sweep's points one after another (under mpirun -np N or srun for several ranks);\n"
    "  a point recorded in ROOT/results.jsonl is skipped, an interrupted one resumes from its journal.\n"
    "  --point N   run point N only (0-based; a Slurm job array element: cluster/submit.sh --sweep)\n"
    "  --dry-run   list the points (index, name, done|todo, axes, state_uri, output_uri), each\n"
    "              validated as `shardq run` validates a spec; run nothing\n";

/* Whether results.jsonl records the point with this spec: -1 when it cannot be read. */
static int point_recorded(const sq_sweep *sweep, const sq_sweep_point *point)
{
    json_t *records;
    if (sq_sweep_results_read(sweep->results_path, &records) != SQ_OK)
        return -1;
    int found = sq_sweep_results_find(records, point->name, point->spec.sha256) != NULL;
    json_decref(records);
    return found;
}

static int dry_run(const sq_sweep *sweep, int first, int last)
{
    int failed = 0;
    printf("# sweep %s: %d points, results %s\n# point\tname\tstatus\taxes\tstate_uri\toutput_uri\n", sweep->name,
           sweep->n_points, sweep->results_path);
    for (int i = first; i <= last; i++) {
        sq_sweep_point point;
        if (sq_sweep_point_make(sweep, i, &point) != SQ_OK) {
            fprintf(stderr, "shardq sweep: %s\n", sq_last_error());
            failed = 1;
            continue;
        }
        int recorded = point_recorded(sweep, &point);
        char *axes = json_dumps(point.axes, JSON_COMPACT);
        printf("%d\t%s\t%s\t%s\t%s\t%s\n", i, point.name, recorded > 0 ? "done" : "todo", axes ? axes : "?",
               point.spec.state_uri, point.spec.output_uri);
        if (recorded < 0) {
            fprintf(stderr, "shardq sweep: %s\n", sq_last_error());
            failed = 1;
        }
        free(axes);
        sq_sweep_point_free(&point);
    }
    return fflush(stdout) == 0 ? failed : 1;
}

/* Rank 0: the point's record, with the sweep's own fields, appended to results.jsonl. */
static sq_status append_record(const sq_sweep *sweep, const sq_sweep_point *point, const sq_comm *comm)
{
    json_t *record;
    SQ_TRY(sq_sweep_record_build(&point->spec, &record));
    char finished[32];
    time_t now = time(NULL);
    strftime(finished, sizeof finished, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(record, "sweep", json_string(sweep->name));
    json_object_set_new(record, "point", json_integer(point->index));
    json_object_set_new(record, "name", json_string(point->name));
    json_object_set(record, "axes", point->axes);
    json_object_set_new(record, "backend", json_string(kn_backend_name()));
    json_object_set_new(record, "ranks", json_integer(comm->world_size));
    json_object_set_new(record, "finished", json_string(finished));
    sq_status st = sq_sweep_results_append(sweep->results_path, record);
    json_decref(record);
    return st;
}

static sq_status run_point(const sq_sweep *sweep, int index, const sq_comm *comm)
{
    sq_sweep_point point;
    SQ_TRY(sq_comm_all_ok(sq_sweep_point_make(sweep, index, &point)));
    int recorded = comm->rank == 0 ? point_recorded(sweep, &point) : 0;
    sq_status st = sq_comm_all_ok(recorded < 0 ? SQ_ERR_FORMAT : SQ_OK);
    if (st == SQ_OK)
        st = sq_comm_bcast_host(&recorded, sizeof recorded, 0);
    if (st == SQ_OK && recorded) {
        if (comm->rank == 0)
            sq_log_info("sweep %s: point %d (0..%d) %s: in %s, skipped", sweep->name, index, sweep->n_points - 1, point.name,
                        sweep->results_path);
    } else if (st == SQ_OK) {
        if (comm->rank == 0)
            sq_log_info("sweep %s: point %d (0..%d) %s", sweep->name, index, sweep->n_points - 1, point.name);
        st = sq_run_job(&point.spec, comm);
        if (st == SQ_OK)
            st = sq_comm_all_ok(comm->rank == 0 ? append_record(sweep, &point, comm) : SQ_OK);
    }
    sq_sweep_point_free(&point);
    return st;
}

/* Options after SWEEP.json; -1 to go on, else an exit code. */
static int parse_options(int argc, char **argv, bool *dry, int *point)
{
    if (sq_cmd_help_requested(argc, argv))
        return sq_cmd_help(usage);
    if (argc < 2 || argv[1][0] == '-')
        return sq_cmd_usage_error(usage);
    for (int i = 2; i < argc; i++) {
        char *end = NULL;
        if (!strcmp(argv[i], "--dry-run"))
            *dry = true;
        else if (!strcmp(argv[i], "--point") && i + 1 < argc && (*point = (int)strtol(argv[++i], &end, 10)) >= 0 &&
                 end != argv[i] && *end == '\0')
            continue;
        else
            return sq_cmd_usage_error(usage);
    }
    return -1;
}

int cmd_sweep(int argc, char **argv)
{
    bool dry = false;
    int only = -1;
    int exit_code = parse_options(argc, argv, &dry, &only);
    if (exit_code >= 0)
        return exit_code;
    sq_sweep sweep;
    if (dry) {
        if (sq_sweep_load(&sweep, argv[1]) != SQ_OK) {
            fprintf(stderr, "shardq sweep: %s\n", sq_last_error());
            return 1;
        }
        if (only >= sweep.n_points) {
            fprintf(stderr, "shardq sweep: %s: no point %d (the sweep has %d)\n", argv[1], only, sweep.n_points);
            sq_sweep_free(&sweep);
            return 1;
        }
        exit_code = dry_run(&sweep, only >= 0 ? only : 0, only >= 0 ? only : sweep.n_points - 1);
        sq_sweep_free(&sweep);
        return exit_code;
    }
    sq_comm comm;
    if (!sq_cli_mpi_start(&comm, &argc, &argv, "sweep"))
        return 1;
    sq_status st = sq_sweep_load(&sweep, argv[1]);
    bool loaded = st == SQ_OK;
    if (st == SQ_OK && only >= sweep.n_points)
        st = sq_fail(SQ_ERR_ARG, "%s: no point %d (the sweep has %d, 0..%d)", argv[1], only, sweep.n_points,
                     sweep.n_points - 1);
    st = sq_cli_devices_start(&comm, st);
    if (st == SQ_OK && comm.rank == 0)
        sq_log_info("sweep %s: %d point(s)%s, %d rank(s), backend %s; results %s", sweep.name, sweep.n_points,
                    only >= 0 ? " (this run: one)" : "", comm.world_size, kn_backend_name(), sweep.results_path);
    for (int i = only >= 0 ? only : 0; st == SQ_OK && i <= (only >= 0 ? only : sweep.n_points - 1); i++)
        st = run_point(&sweep, i, &comm);
    if (st == SQ_OK && comm.rank == 0)
        sq_log_info("sweep %s: done; results in %s", sweep.name, sweep.results_path);
    if (loaded)
        sq_sweep_free(&sweep);
    return sq_cli_finish(st, &comm);
}
