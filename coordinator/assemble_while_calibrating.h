/* assemble_while_calibrating.h: rank 0 writes a step's output checkpoint on a thread
 * of its own while the step's layers are still being calibrated.
 *
 * The GPTQ writer builds its shards in layer order (quant/gptq_checkpoint.c) and asks
 * for each linear in turn; the packed-layer table (worker/packed_layers.h) makes it
 * wait until the background saver has kept that linear. So each shard is written,
 * hashed and synced as soon as its layers are done, overlapping the layer loop, and
 * only the last layers' shard is left when the loop ends: on a 7B model that moves
 * about 3.9 GB of writes and fsyncs (3.7 s on the bench machine) off the critical path.
 *
 * It runs only when the assembly needs nothing but the source's tensors and the packed
 * linears (sq_assemble_needs_only_packed_layers), and only into an output directory
 * that is absent or empty, so that a calibration that fails half way never leaves a
 * previous checkpoint there half overwritten. A linear that was not packed (a layer
 * replayed from the journal on resume, or beyond the memory budget) is waited for
 * until calibration ends, then read from its artifact, as the assembly after the loop
 * does: the journal is only read once nothing writes it. */
#ifndef SQ_COORDINATOR_ASSEMBLE_WHILE_CALIBRATING_H
#define SQ_COORDINATOR_ASSEMBLE_WHILE_CALIBRATING_H

#include <stdbool.h>

#include <jansson.h>

#include "core/background_task.h"
#include "jobs/journal.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "worker/packed_layers.h"

typedef struct {
    const sq_journal *journal;
    const sq_job_spec *spec;
    int step;
    const sq_model_config *cfg;
    const sq_checkpoint *source;
    const char *output_dir;
    sq_packed_layers *packed;
    json_t *result;
    bool running;
    sq_background_task task;
} sq_early_assembly;

/* Start the assembly now when the step and the output directory allow it (a->running says
 * whether it did); otherwise the caller assembles after calibration, as before. */
sq_status sq_early_assembly_start(sq_early_assembly *a);

/* After calibration ended with `calibrated`: close the packed table and wait for the assembly.
 * Returns the assembly's status when calibration succeeded; when it failed, the assembly
 * stops at the first linear it lacks and `calibrated` (with its message) is returned. */
sq_status sq_early_assembly_finish(sq_early_assembly *a, sq_status calibrated);

#endif
