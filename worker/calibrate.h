/* calibrate.h: the layer-by-layer calibration of one job step on every rank,
 * in the two distribution modes of DESIGN.md. Quantization (gptq, rtn) and
 * pruning (sparsegpt, wanda, magnitude; sparsegpt may also quantize) share the
 * loop; rtn and magnitude read only the weights, the others the Hessians of
 * each linear's inputs (wanda only their diagonals). Pruning solves a layer's
 * seven linears together on the layer's inputs, as the references do.
 *
 * sequential: each rank holds its slice of the calibration samples; per layer
 *   (and, with true_sequential, per group q,k,v -> o -> gate,up -> down) the
 *   ranks collect Hessians of the linear inputs, sum them across ranks, solve
 *   each linear on its owner rank, broadcast the result, and push their
 *   samples through the quantized layer to the next one.
 * pipeline: an unquantized forward streams all samples through the layer
 *   blocks, rank to rank, so each block keeps its input; then every rank runs
 *   the sequential algorithm inside its blocks on all samples, all at once.
 *
 * Rank 0 writes each finished layer as an artifact in the job's state and
 * records it in the journal; layers already recorded (with a matching sha256)
 * are replayed instead of solved, so a rerun resumes where the job stopped. */
#ifndef SQ_WORKER_CALIBRATE_H
#define SQ_WORKER_CALIBRATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "jobs/journal.h"
#include "jobs/plan.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "quant/mixed_precision.h"
#include "worker/comm.h"
#include "worker/packed_layers.h"

typedef struct {
    const sq_job_spec *spec;
    int step;                   /* index of the step in spec->steps */
    const sq_comm *comm;
    const sq_plan *plan;
    sq_journal *journal;        /* rank 0 only (NULL on other ranks) */
    const sq_model_config *cfg;
    const sq_checkpoint *ckpt;  /* the step's input model */
    const int32_t *samples;     /* [nsamples, seqlen] token ids, identical on every rank */
    sq_packed_layers *packed;   /* rank 0, or NULL: each quantized layer also packed here for the assembly */
} sq_calibration;

/* Whether a step kind runs through sq_calibrate, and whether a step needs calibration samples
 * (gptq, sparsegpt, wanda; rtn too with avg_bits, for its sensitivities). */
bool sq_calibration_runs(sq_step_kind kind);
bool sq_calibration_needs_samples(const sq_step *step);

/* Run the step's layer loop. On success every layer is recorded in the journal
 * (rank 0). SQ_ERR_INTERRUPTED when a stop signal arrived (all ranks stop at the
 * same layer boundary, the journal is consistent). */
sq_status sq_calibrate(const sq_calibration *job);

/* A mixed-precision step's bit plan as recorded in its journal (*found false when not yet):
 * the report's errors and widths into `plan`, allocated for the model and step options. */
sq_status sq_read_sensitivity_report(const sq_journal *journal, int step, sq_bit_plan *plan, bool *found);

/* The artifact name of a layer of a step ("step0/layer_003.safetensors"). */
void sq_calibration_artifact_name(int step, int layer, char *out, size_t size);

#endif
