/* signals.h: the stop request Slurm sends before preemption or the time limit.
 *
 * SIGTERM, SIGUSR1 and SIGINT only set a flag; the runner checks it at safe
 * points (between layers), all ranks agree to stop at the same point, the
 * journal stays consistent, and the process exits with SQ_EXIT_INTERRUPTED so
 * that a batch script knows to requeue. */
#ifndef SQ_WORKER_SIGNALS_H
#define SQ_WORKER_SIGNALS_H

#include <stdbool.h>

/* EX_TEMPFAIL from sysexits.h: "stopped by a signal, resumable; run the same command again". */
#define SQ_EXIT_INTERRUPTED 75

void sq_signals_install(void);
bool sq_stop_requested(void);
/* The signal that asked to stop (0 if none). */
int sq_stop_signal(void);

#endif
