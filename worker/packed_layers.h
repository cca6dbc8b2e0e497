/* packed_layers.h: rank 0's GPTQ-packed linears of the layers it quantized in this
 * process, kept in host memory from calibration to the output checkpoint. The
 * background saver packs each layer right after writing its artifact, off the
 * device's critical path; the assembly then takes them as they are instead of
 * reading the artifacts back and packing them again. Layers replayed from the
 * journal, or beyond the memory budget, are not held: the assembly reads those
 * from their artifacts, as before.
 *
 * The assembly may run on a thread of its own while the layers are still being
 * calibrated (coordinator/run_job.c): sq_packed_layers_wait_take then blocks until
 * the saver has kept the linear or calibration has ended (sq_packed_layers_close),
 * so the checkpoint's shards are written as their layers finish. One mutex guards
 * the table; keep and take may be called from any thread. */
#ifndef SQ_WORKER_PACKED_LAYERS_H
#define SQ_WORKER_PACKED_LAYERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "quant/gptq_pack.h"
#include "worker/layer_results.h"

typedef struct {
    int num_layers;
    size_t budget; /* host bytes it may hold */
    size_t bytes;  /* host bytes it holds */
    sq_gptq_packed *linears; /* [num_layers * SQ_LINEAR_COUNT] */
    bool *held;              /* [num_layers * SQ_LINEAR_COUNT] */
    bool closed;             /* no more layers will be kept */
    sq_status outcome;       /* calibration's status, given at close */
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a linear kept, or closed */
} sq_packed_layers;

sq_status sq_packed_layers_init(sq_packed_layers *p, int num_layers, size_t budget);
void sq_packed_layers_free(sq_packed_layers *p);

/* Pack and hold the quantized results of `layer` while the budget allows (a linear that
 * cannot be packed is left to the assembly, which reports why). */
void sq_packed_layers_keep(sq_packed_layers *p, int layer, const sq_layer_results *results);

/* Hand a held linear over to the caller, who frees it (sq_gptq_packed_free); false if not held. */
bool sq_packed_layers_take(sq_packed_layers *p, int layer, int linear, sq_gptq_packed *out);

/* Calibration is over with `outcome`: nothing more will be kept; waiters wake. */
void sq_packed_layers_close(sq_packed_layers *p, sq_status outcome);

/* sq_packed_layers_take, waiting while the linear is not held and the table is open. SQ_OK with
 * *taken set; SQ_OK with *taken false once closed after a successful calibration without it (the
 * caller reads the artifact); the failure, if calibration failed. */
sq_status sq_packed_layers_wait_take(sq_packed_layers *p, int layer, int linear, sq_gptq_packed *out, bool *taken);

#endif
