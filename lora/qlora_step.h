/* qlora_step.h: the qlora step of a job — LoRA training of a frozen quantized
 * base, data parallel over the job's ranks, journaled so that a killed job
 * resumes to the same adapter.
 *
 * One training step t (1..steps) sees global sequences k = (t-1)·G .. t·G-1,
 * G = batch_size · grad_accum, as grad_accum micro-batches of batch_size; the
 * loss is the mean over the step's loss tokens. Micro-batch j is computed by
 * rank j mod world_size; its gradient is computed alone (the same floats on any
 * rank), then the micro-batch gradients are broadcast and added in order
 * j = 0, 1, ... on every rank, so every rank applies the same AdamW update and
 * -np 1, 2, 3 give byte-identical adapters on the CPU backend.
 *
 * Every save_every steps (and when a signal asks the job to stop) rank 0
 * writes stepS/train_NNNNNN.safetensors — the adapter, both AdamW moments and
 * the step count; the data position and the dropout masks are functions of
 * (seed, step) — hashes it, publishes it and records it in the journal; a rerun
 * starts from the latest recorded checkpoint whose bytes match. */
#ifndef SQ_LORA_QLORA_STEP_H
#define SQ_LORA_QLORA_STEP_H

#include <jansson.h>

#include "jobs/journal.h"
#include "core/status.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "worker/comm.h"

typedef struct {
    const sq_job_spec *spec;
    int step; /* index of the qlora step in spec->steps */
    const sq_comm *comm;
    sq_journal *journal; /* rank 0; NULL on the others */
    const sq_model_config *cfg;
    const sq_checkpoint *ckpt; /* the base */
    const char *base_uri;      /* for adapter_config.json's base_model_name_or_path */
    const char *model_dir;     /* local directory of the base's tokenizer */
    const char *train_path;    /* rank 0: the staged training data */
    const char *eval_path;     /* rank 0: the staged held-out data, NULL when none */
    const char *output_dir;    /* rank 0: where the adapter is written */
    json_t *result;            /* rank 0: the training metrics are added here */
} sq_qlora_job;

sq_status sq_qlora_run(const sq_qlora_job *job);

#endif
