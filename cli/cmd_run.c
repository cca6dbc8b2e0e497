/* cmd_run.c: `shardq run JOB.json` — every rank parses the spec, rank 0 opens
 * the journal, and the steps run in order (see coordinator/run_job.h).
 * Exit codes: 0 done; 75 stopped by SIGTERM/SIGUSR1 with a consistent journal
 * (run the same command again to resume); 1 failed (all ranks are ended). */
#include <stdio.h>
#include <string.h>

#include "coordinator/run_job.h"
#include "core/log.h"
#include "jobs/spec.h"
#include "kernels/kernels.h"
#include "worker/comm.h"
#include "worker/device_comm.h"
#include "worker/signals.h"

int cmd_run(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: shardq run JOB.json   (under mpirun -np N or srun for several ranks)\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: shardq run JOB.json   (under mpirun -np N or srun for several ranks)\n");
        return 2;
    }
    sq_signals_install();
    sq_comm comm;
    if (sq_comm_init(&comm, &argc, &argv) != SQ_OK) {
        fprintf(stderr, "shardq run: %s\n", sq_last_error());
        return 1;
    }
    sq_log_set_rank(comm.rank, comm.world_size);
    sq_job_spec spec;
    sq_status st = sq_job_spec_load(&spec, argv[1]);
    if (st == SQ_OK) {
        st = kn_init(comm.local_rank);
        if (st == SQ_OK)
            st = sq_device_comm_init(comm.rank, comm.world_size);
        if (st == SQ_OK) {
            if (comm.rank == 0)
                sq_log_info("job %s: %d rank(s), backend %s (%s)", spec.name, comm.world_size, kn_backend_name(),
                            kn_device_description());
            st = sq_run_job(&spec, &comm);
        }
        sq_job_spec_free(&spec);
    }
    if (st == SQ_ERR_INTERRUPTED) {
        if (comm.rank == 0)
            sq_log_error("%s", sq_last_error());
        sq_device_comm_finalize();
        kn_shutdown();
        sq_comm_finalize();
        return SQ_EXIT_INTERRUPTED;
    }
    if (st != SQ_OK) {
        sq_log_error("%s", sq_last_error());
        sq_comm_abort(1); /* ends every rank: none is left waiting in a collective */
        return 1;
    }
    sq_device_comm_finalize();
    kn_shutdown();
    sq_comm_finalize();
    return 0;
}
