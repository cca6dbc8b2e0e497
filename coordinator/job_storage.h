/* job_storage.h: where a job's bytes come from and go to, on every rank.
 *
 * One store (configured by the spec's storage block, the AWS_* variables as
 * fallback) and one private scratch directory per process, made on first use
 * (only s3:// locations and the push need one) and removed when the job ends,
 * whatever the outcome. Everything a job reads or writes by URI
 * goes through here, so a job runs the same on local paths and on s3://:
 *   - a model: its small files staged locally, its tensors read in place
 *     (mmap, or one ranged GET per tensor for s3://);
 *   - a data file: staged locally (a whole-object GET for s3://);
 *   - an output checkpoint: assembled into a local directory (the target
 *     itself when local, scratch for s3://), then uploaded, manifest last;
 *   - the model-store push after the job: the checkpoint at output_uri is
 *     pushed as it is (server-side copies from s3://), once per journal. */
#ifndef SQ_COORDINATOR_JOB_STORAGE_H
#define SQ_COORDINATOR_JOB_STORAGE_H

#include "core/status.h"
#include "jobs/journal.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "store/store.h"

typedef struct {
    sq_store *store;
    char *scratch;
} sq_job_storage;

sq_status sq_job_storage_open(sq_job_storage *io, const sq_job_spec *spec);
void sq_job_storage_close(sq_job_storage *io);

/* The scratch directory, created on the first call. */
sq_status sq_job_scratch(sq_job_storage *io, const char **dir);

/* A model at `uri`: its config, the local directory with its tokenizer files
 * (caller frees) and its checkpoint (sq_checkpoint_close). */
typedef struct {
    sq_model_config cfg;
    char *local_dir;
    sq_checkpoint *ckpt;
} sq_job_model;

sq_status sq_job_model_open(sq_job_storage *io, const char *uri, sq_job_model *model);
void sq_job_model_close(sq_job_model *model);

/* A local path holding the data file at `uri` (caller frees). */
sq_status sq_job_stage_data(sq_job_storage *io, const char *uri, char **local_path);

/* The local directory a checkpoint for `uri` is written into (caller frees);
 * then sq_job_publish_output makes it appear at `uri`. */
sq_status sq_job_output_dir(sq_job_storage *io, const char *uri, char **local_dir);
sq_status sq_job_publish_output(sq_job_storage *io, const char *local_dir, const char *uri);

/* Rank 0, when the job starts (after the journal is opened, before anything
 * is written): abort the multipart uploads a killed run left unfinished under
 * state_uri and output_uri, so their parts stop being billed. A store that
 * refuses (no permission to list uploads) gets a warning, not a failed job. */
void sq_job_abort_unfinished_uploads(sq_job_storage *io, const sq_job_spec *spec);

/* Rank 0, after the last step: push the checkpoint at spec->output_uri to the
 * model store of spec->push, its store manifest and record carrying the job's
 * name, version, source model, method and last eval metrics; then record the
 * push in the journal. Nothing is pushed when the journal already records it. */
sq_status sq_job_push(sq_job_storage *io, const sq_job_spec *spec, sq_journal *journal);

#endif
