/* signals.h: the stop request Slurm sends before preemption or the time limit.
 *
 * SIGTERM, SIGUSR1 and SIGINT only set a flag; the runner checks it at safe
 * points (between layers), all ranks agree to stop at the same point, the
 * journal stays consistent, and the process exits with SQ_EXIT_INTERRUPTED so
 * that a batch script knows to requeue.
 *
 * Which of them reach the ranks depends on the launcher (README, "Stopping a
 * job"). Open MPI 4.1's mpirun forwards SIGUSR1 and SIGUSR2 to every rank; on
 * SIGTERM, SIGINT or SIGHUP it sends the ranks SIGCONT, then SIGTERM
 * odls_base_sigkill_timeout (1 s) later, then SIGKILL as long again after
 * that, and exits 1 whatever the ranks return: too soon to finish a layer, so
 * under mpirun only SIGUSR1 gives a clean stop (exit 75). */
#ifndef SQ_WORKER_SIGNALS_H
#define SQ_WORKER_SIGNALS_H

#include <stdbool.h>

/* EX_TEMPFAIL from sysexits.h: "stopped by a signal, resumable; run the same command again". */
#define SQ_EXIT_INTERRUPTED 75

void sq_signals_install(void);
bool sq_stop_requested(void);
/* The name of the signal that asked to stop ("SIGTERM"), NULL if none. */
const char *sq_stop_signal_name(void);

#endif
