/* journal.h: the record of a job's progress at state_uri, which makes a job resumable.
 *
 * state_uri/journal.json:
 *   {"format": "shardq-journal/1", "spec_sha256": "...",
 *    "steps": [{"kind": "gptq", "status": "running" | "done",
 *               "layers": [{"layer": 0, "artifact": "step0/layer_000.safetensors", "sha256": "..."}],
 *               "result": {...}}]}
 *
 * Rules: a journal whose spec hash differs from the job's is an error, never
 * overwritten; a layer is recorded only after its artifact was written and
 * hashed; every update rewrites journal.json atomically, so a kill at any
 * moment leaves either the previous or the next journal. Only rank 0 writes. */
#ifndef SQ_COORDINATOR_JOURNAL_H
#define SQ_COORDINATOR_JOURNAL_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"
#include "jobs/spec.h"

typedef struct {
    char *state_uri;
    char *path; /* state_uri/journal.json */
    json_t *doc;
} sq_journal;

/* Open the journal of `spec` at its state_uri, creating it (and the directory) if absent.
 * SQ_ERR_MISMATCH if it belongs to another spec. */
sq_status sq_journal_open(sq_journal *journal, const sq_job_spec *spec);
void sq_journal_close(sq_journal *journal);

/* Open an existing journal read-only without checking the spec (for `shardq status`). */
sq_status sq_journal_read(sq_journal *journal, const char *state_uri);

bool sq_journal_step_done(const sq_journal *journal, int step);
/* Number of consecutive layers 0..n-1 recorded for a step. */
int sq_journal_layers_done(const sq_journal *journal, int step);
/* The artifact name and sha256 recorded for a layer (NULL if not recorded). */
const char *sq_journal_layer_artifact(const sq_journal *journal, int step, int layer, const char **sha256);

/* Record a finished layer (its artifact already durable) / a finished step. */
sq_status sq_journal_record_layer(sq_journal *journal, int step, int layer, const char *artifact,
                                  const char *sha256);
sq_status sq_journal_record_step(sq_journal *journal, int step, json_t *result);
/* Forget layers >= from_layer of a step (an artifact failed its checksum). */
sq_status sq_journal_truncate_layers(sq_journal *journal, int step, int from_layer);

/* The journal file's absolute location of an artifact name (caller frees). */
char *sq_journal_artifact_path(const sq_journal *journal, const char *artifact);

#endif
