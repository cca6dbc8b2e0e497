/* cmd_run.c: `shardq run JOB.json` — every rank parses the spec, rank 0 opens
 * the journal, and the steps run in order (see coordinator/run_job.h).
 *
 * Exit codes: 0 done; 75 stopped by a stop signal (worker/signals.h) with a
 * consistent journal (run the same command again to resume); 1 failed; 2 usage.
 * A failure that every rank has agreed on (a bad spec, unreadable data, a
 * journal of another spec, ...) is printed once, by the rank that found it,
 * and every rank leaves through MPI_Finalize; only a failure the other ranks
 * cannot know about (they may be waiting in a collective) ends the job with
 * MPI_Abort, which kills every rank. */
#include <stdio.h>
#include <string.h>

#include "cli/cmds.h"
#include "cli/mpi_session.h"
#include "coordinator/run_job.h"
#include "core/log.h"
#include "jobs/spec.h"
#include "kernels/kernels.h"
#include "worker/comm.h"

int cmd_run(int argc, char **argv)
{
    static const char usage[] = "usage: shardq run JOB.json   (under mpirun -np N or srun for several ranks)\n";
    int exit_code = sq_cmd_plain_args(argc, argv, 1, usage);
    if (exit_code >= 0)
        return exit_code;
    sq_comm comm;
    if (!sq_cli_mpi_start(&comm, &argc, &argv, "run"))
        return 1;
    sq_job_spec spec;
    sq_status st = sq_job_spec_load(&spec, argv[1]);
    bool loaded = st == SQ_OK;
    st = sq_cli_devices_start(&comm, st);
    if (st == SQ_OK) {
        if (comm.rank == 0)
            sq_log_info("job %s: %d rank(s), backend %s (%s)", spec.name, comm.world_size, kn_backend_name(),
                        kn_device_description());
        st = sq_run_job(&spec, &comm);
    }
    if (loaded)
        sq_job_spec_free(&spec);
    return sq_cli_finish(st, &comm);
}
