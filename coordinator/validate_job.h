/* validate_job.h: every check a job allows before anything is written.
 *
 * The spec parser checks the spec alone; what depends on the model — can the
 * output format (gptq, dense, compressed-tensors: quant/output_format.h) hold
 * every linear (a group_size need not divide a linear's inputs: the last group
 * is then shorter), does an N:M pattern fit, is the sequence length within the
 * model's positions, do the weights in the safetensors headers have the
 * shapes config.json implies, can the layers be cut into the pipeline's
 * blocks, does the eval data exist, does a qlora adapter fit the model and its
 * base_quant the input model — is checked here from config.json, the
 * safetensors headers and the store, so
 * that a job that cannot finish is refused before its journal exists and the
 * corrected spec runs without deleting anything by hand. (The calibration
 * windows are drawn before the journal too, coordinator/run_job.c, which
 * refuses calibration data too short for them.) */
#ifndef SQ_COORDINATOR_VALIDATE_JOB_H
#define SQ_COORDINATOR_VALIDATE_JOB_H

#include "coordinator/job_storage.h"
#include "jobs/spec.h"

/* Check `spec` against the model it names (and that eval data exists), for a job of `world_size` ranks.
 * Errors name the spec's JSON path and the linear or tensor at fault. */
sq_status sq_validate_job(sq_job_storage *io, const sq_job_spec *spec, int world_size);

#endif
