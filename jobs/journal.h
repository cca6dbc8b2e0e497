/* journal.h: the record of a job's progress at state_uri, which makes a job resumable.
 *
 * state_uri/journal.json:
 *   {"format": "shardq-journal/1", "spec_sha256": "...",
 *    "steps": [{"kind": "gptq", "status": "running" | "done",
 *               "layers": [{"layer": 0, "artifact": "step0/layer_000.safetensors", "sha256": "..."}],
 *               "checkpoint": {"train_step": 100, "artifact": "step1/train_000100.safetensors",
 *                              "sha256": "..."},        (qlora: the latest training checkpoint)
 *               "result": {...},
 *               "wall_s": 12.5, "cpu_s": 20.1}],   (seconds rank 0 spent on the step in the run
 *                                                   that finished it; CPU: all its threads)
 *               "files": {"sensitivity_report": {"artifact": "...", "sha256": "..."}},  (mixed precision)
 *    "push": {"store": URI, "name": "...", "version": "...", "uri": URI,
 *             "manifest_sha256": "..."},     once the push block's push is complete
 *    "holder": {"host": "...", "pid": N, "pid_start": N}}   while a run holds the job
 *                                                          (jobs/job_holder.h)
 *
 * Rules: a journal whose spec hash differs from the job's is an error, never
 * overwritten; a layer is recorded only after its artifact was written and
 * hashed; every update rewrites journal.json atomically, so a kill at any
 * moment leaves either the previous or the next journal. Only rank 0 writes.
 * The push is recorded only after the store's index lists it, so a rerun of a
 * finished job does not push again and a job killed during its push pushes
 * again from the start (which rewrites the same objects).
 *
 * state_uri may be local or s3://. The journal goes through the store (a
 * local write is a rename, an S3 PUT replaces the object whole, so both are
 * atomic). Artifacts are files in `local_dir`: the state directory itself
 * when it is local, a scratch mirror of it for s3://, from which a finished
 * artifact is uploaded (publish) before the journal names it, and into which
 * a recorded artifact is downloaded (fetch) and checked against its sha256
 * before anything uses it. */
#ifndef SQ_JOBS_JOURNAL_H
#define SQ_JOBS_JOURNAL_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"
#include "jobs/spec.h"
#include "store/store.h"

typedef struct {
    char *state_uri;
    char *path;      /* state_uri/journal.json */
    json_t *doc;
    sq_store *store; /* where state_uri lives (borrowed) */
    char *local_dir; /* the artifacts' local files: the state directory, or a scratch mirror of s3:// state */
    json_t *written; /* artifact -> sha256 of the layers this process recorded (NULL before any) */
    bool held;       /* this process is the recorded holder */
} sq_journal;

/* Open the journal of `spec` at its state_uri, creating it (and the directory) if absent, and
 * record this process as its holder. SQ_ERR_MISMATCH if it belongs to another spec. `scratch`
 * is a local directory of this process (core/scratch_dir.h), used when state_uri is s3://. */
sq_status sq_journal_open(sq_journal *journal, const sq_job_spec *spec, sq_store *store, const char *scratch);
/* Forget the holder (the run ends: done, stopped or failed); a killed run leaves it behind. */
sq_status sq_journal_release(sq_journal *journal);
void sq_journal_close(sq_journal *journal);
/* The recorded holder, or NULL (borrowed). */
json_t *sq_journal_holder(const sq_journal *journal);

/* Open an existing journal read-only without checking the spec (for `shardq status`). */
sq_status sq_journal_read(sq_journal *journal, const char *state_uri, sq_store *store);

bool sq_journal_step_done(const sq_journal *journal, int step);
/* Number of consecutive layers 0..n-1 recorded for a step. */
int sq_journal_layers_done(const sq_journal *journal, int step);
/* The artifact name and sha256 recorded for a layer (NULL if not recorded). */
const char *sq_journal_layer_artifact(const sq_journal *journal, int step, int layer, const char **sha256);

/* Record a finished layer (its artifact already durable) / a finished step. */
sq_status sq_journal_record_layer(sq_journal *journal, int step, int layer, const char *artifact,
                                  const char *sha256);
sq_status sq_journal_record_step(sq_journal *journal, int step, json_t *result);
/* The same, with the wall and CPU seconds this run spent on the step beside the result. */
sq_status sq_journal_record_step_timed(sq_journal *journal, int step, json_t *result, double wall_s, double cpu_s);
/* The manifest sha256 of the push of `name`/`version` to `store` recorded in
 * the journal, or NULL when that push is not recorded. */
const char *sq_journal_push_recorded(const sq_journal *journal, const char *store, const char *name,
                                     const char *version);
/* Record a completed push (the store's index already lists it). */
sq_status sq_journal_record_push(sq_journal *journal, const char *store, const char *name, const char *version,
                                 const char *model_uri, const char *manifest_sha256);
/* Record a training step's checkpoint (its artifact already durable), replacing the previous one. */
sq_status sq_journal_record_checkpoint(sq_journal *journal, int step, int train_step, const char *artifact,
                                       const char *sha256);
/* The latest checkpoint of a training step: its artifact name (NULL when none), *train_step and *sha256. */
const char *sq_journal_checkpoint(const sq_journal *journal, int step, int *train_step, const char **sha256);
/* A file a step records beside its layers under `key` (mixed precision's "sensitivity_report"),
 * its artifact already durable: steps[i].files.<key> = {"artifact", "sha256"}. */
sq_status sq_journal_record_step_file(sq_journal *journal, int step, const char *key, const char *artifact,
                                      const char *sha256);
/* The artifact recorded under `key` (NULL when none) and its *sha256. */
const char *sq_journal_step_file(const sq_journal *journal, int step, const char *key, const char **sha256);
/* Forget layers >= from_layer of a step (an artifact failed its checksum). */
sq_status sq_journal_truncate_layers(sq_journal *journal, int step, int from_layer);

/* The local file of an artifact name (caller frees); write it there, then publish it. */
char *sq_journal_artifact_path(const sq_journal *journal, const char *artifact);
/* The artifact's URI under state_uri (caller frees). */
char *sq_journal_artifact_uri(const sq_journal *journal, const char *artifact);

/* Make a written artifact durable at state_uri (an upload for s3://, nothing for local state). */
sq_status sq_journal_publish_artifact(const sq_journal *journal, const char *artifact);

/* The local file of a recorded artifact whose bytes match `sha256` (downloaded first for s3://
 * unless this process already holds a matching copy). SQ_ERR_MISMATCH naming the artifact when
 * its bytes do not match; *local_path (optional; caller frees) is set only on success. An
 * artifact this process recorded itself with that sha256 (hashed as it was written) is not
 * hashed again. */
sq_status sq_journal_fetch_artifact(const sq_journal *journal, const char *artifact, const char *sha256,
                                    char **local_path);

#endif
