/* peer_watch.h: every rank ends when another rank of the job has died, even where the launcher
 * never learns of it.
 *
 * MPI does not report a peer that has gone: Open MPI's TCP transport closes the connection and the
 * ranks waiting for that peer in a collective (or NCCL on the GPU) wait forever. The launcher
 * normally ends them (mpirun sees its child die; srun hears from the node's slurmstepd), but when a
 * node's slurmstepd itself is killed its ranks die with it and nothing tells srun (cluster/README.md,
 * "Several nodes"): the other nodes' ranks would wait until the time limit.
 *
 * So each rank other than 0 holds a plain TCP connection to rank 0 (a "lifeline"), watched by a
 * thread on both ends. The kernel closes a process's sockets whatever ends it (SIGKILL included),
 * so a connection that closes without a goodbye byte means the process at its other end is gone:
 * rank 0 then ends itself, which closes every other lifeline and ends every other rank. A clean end
 * says goodbye first (sq_peer_watch_stop). There is no timer: a rank busy for hours (rank 0
 * assembling a large model while the others wait) is never taken for dead. A node that loses power
 * closes nothing; that case is the cluster's (slurmctld declares the node down, mpirun loses its
 * daemon). Where a rank cannot reach rank 0 (a firewall), it says so and runs unwatched. */
#ifndef SQ_WORKER_PEER_WATCH_H
#define SQ_WORKER_PEER_WATCH_H

#include "worker/comm.h"

/* Collective over all ranks (after MPI is up); nothing with one rank. */
void sq_peer_watch_start(const sq_comm *comm);
/* A clean end (done, stopped or an agreed failure): goodbye to the watched ranks, thread stopped. */
void sq_peer_watch_stop(void);

#endif
