/* mpi_session.c: start devices on every rank and end a run with one exit code (see mpi_session.h). */
#include "cli/mpi_session.h"

#include <stdio.h>

#include "core/log.h"
#include "kernels/kernels.h"
#include "worker/device_comm.h"
#include "worker/peer_watch.h"
#include "worker/signals.h"

bool sq_cli_mpi_start(sq_comm *comm, int *argc, char ***argv, const char *command)
{
    sq_signals_install();
    if (sq_comm_init(comm, argc, argv) != SQ_OK) {
        fprintf(stderr, "shardq %s: %s\n", command, sq_last_error());
        return false;
    }
    sq_log_set_rank(comm->rank, comm->world_size);
    sq_peer_watch_start(comm); /* a rank that dies unseen by the launcher still ends the others */
    return true;
}

sq_status sq_cli_devices_start(const sq_comm *comm, sq_status mine)
{
    if (mine == SQ_OK)
        mine = kn_init(comm->local_rank);
    sq_status st = sq_comm_all_ok(mine); /* every rank learns whether every rank has its spec and its device */
    if (st == SQ_OK)
        st = sq_device_comm_init(comm->rank, comm->world_size);
    return st;
}

int sq_cli_finish(sq_status st, const sq_comm *comm)
{
    int reporter;
    if (st == SQ_ERR_INTERRUPTED) {
        if (comm->rank == 0)
            sq_log_info("%s", sq_last_error()); /* a clean stop, not an error */
    } else if (st != SQ_OK && sq_comm_failure_agreed(&reporter)) {
        if (comm->rank == reporter)
            sq_log_error("%s", sq_last_error());
    } else if (st != SQ_OK) {
        sq_log_error("%s", sq_last_error());
        sq_comm_abort(1); /* ends every rank: none is left waiting in a collective */
        return 1;
    }
    sq_peer_watch_stop(); /* a clean end: this rank's goodbye, so that no other rank takes it for dead */
    sq_device_comm_finalize();
    kn_shutdown();
    sq_comm_finalize();
    return st == SQ_OK ? 0 : st == SQ_ERR_INTERRUPTED ? SQ_EXIT_INTERRUPTED : 1;
}
