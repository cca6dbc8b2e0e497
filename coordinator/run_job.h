/* run_job.h: the steps of a job, in order, on every rank.
 *
 * The model each step reads is the previous step's output (the job's input
 * model for the first). Calibration steps (gptq, rtn) run the layer loop of
 * worker/calibrate.h on all ranks; rank 0 then assembles the checkpoint at
 * output_uri. eval runs on rank 0 and records its metrics. Steps the journal
 * marks done are skipped, so a rerun continues where the job stopped. */
#ifndef SQ_COORDINATOR_RUN_JOB_H
#define SQ_COORDINATOR_RUN_JOB_H

#include "core/status.h"
#include "jobs/spec.h"
#include "worker/comm.h"

sq_status sq_run_job(const sq_job_spec *spec, const sq_comm *comm);

#endif
