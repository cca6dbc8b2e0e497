/* fault.h: test hooks for crash-consistency tests, inert unless their
 * environment variables are set.
 *
 *   SHARDQ_FAULT=POINT:LAYER   rank 0 kills itself with SIGKILL at POINT of LAYER:
 *     mid-artifact    the layer's artifact is half written (a torn temporary file)
 *     before-journal  the artifact is durable but the journal does not list it yet
 *     after-journal   the journal lists the layer
 *     sensitivity-report (layer 0) a mixed-precision step's sensitivity report is in
 *                     the journal, no layer is quantized yet
 *     before-push-journal (layer 0) the push block's push is in the store and its
 *                     index, but the journal does not record it yet
 *     kv-cache-before-journal (layer = step) a kv_cache step's output is written, the
 *                     journal does not record the step yet
 *   SHARDQ_FAULT_ACTION=stall  instead of dying, rank 0 prints "fault injection:
 *                     stalled at POINT of layer LAYER" on stderr and waits there
 *                     forever, so that a test can kill the whole job (every rank)
 *                     at a point of the job's own progress, whatever the machine's speed
 *   SHARDQ_FAULT_ACTION=stop   instead of dying, rank 0 stops itself with SIGSTOP there: a
 *                     test acts on the job at a known point of its progress (sends it
 *                     signals, reads its status), then resumes it with SIGCONT
 *   SHARDQ_LAYER_DELAY_MS=N    every rank sleeps N ms after each layer, so that a
 *                              test can deliver real signals in the middle of a job. */
#ifndef SQ_WORKER_FAULT_H
#define SQ_WORKER_FAULT_H

#include <stdbool.h>

/* True when SHARDQ_FAULT names this point and layer. */
bool sq_fault_armed(const char *point, int layer);
/* SIGKILL this process (or stall or stop it, see SHARDQ_FAULT_ACTION) if SHARDQ_FAULT names this point and layer. */
void sq_fault_point(const char *point, int layer);
void sq_fault_layer_delay(void);

#endif
