/* mpi_session.h: the start and end that `shardq run` and `shardq sweep` share: MPI and the
 * device on every rank, and one exit code for a run whatever happened (see cmd_run.c's header
 * for the exit codes and how failures are reported). */
#ifndef SQ_CLI_MPI_SESSION_H
#define SQ_CLI_MPI_SESSION_H

#include <stdbool.h>

#include "core/status.h"
#include "worker/comm.h"

/* Install the stop signals' handlers, start MPI and prefix log lines with the rank; false,
 * after a message naming `command`, when MPI does not start. */
bool sq_cli_mpi_start(sq_comm *comm, int *argc, char ***argv, const char *command);

/* After MPI is up: `mine` is this rank's status so far (its spec parsed); every rank opens its
 * device, learns whether every rank got this far, and joins the device communicator. */
sq_status sq_cli_devices_start(const sq_comm *comm, sq_status mine);

/* Report `st` once, shut the device and MPI down, and return the exit code: 0 done, 75 stopped
 * by a signal with a consistent journal, 1 failed. A failure the ranks did not agree on ends
 * every rank with MPI_Abort. */
int sq_cli_finish(sq_status st, const sq_comm *comm);

#endif
