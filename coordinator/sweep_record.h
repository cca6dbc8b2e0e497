/* sweep_record.h: what a finished job adds to its sweep's results.jsonl (jobs/sweep_results.h).
 *
 * Read after the job, from what it left behind — its journal, its output checkpoint and the
 * config.json of the model it ends with — so a point finished by an earlier run (a rerun after a
 * kill between the last step and the append) gets the same record:
 *
 *   {"format": "shardq-sweep-record/1", "spec_sha256", "state_uri", "output_uri",
 *    "method": "sparsegpt+gptq" (the model-producing steps, "+"-joined; "none" for eval only),
 *    "bits": 4 | null, "group_size": 128 | null (the quantizing step's; bits null with mixed
 *    precision, whose widths per linear come from the output's sensitivity_report.json),
 *    "avg_bits": bits per linear weight as the method represents it: the codes plus an fp16
 *                scale and a bits-wide zero per group (per-channel: one group per row); the source
 *                dtype's width when nothing quantized,
 *    "sparsity": the achieved fraction of zeros in the linears (0 when nothing pruned),
 *    "output_bytes": bytes of every file of the output checkpoint (of the input model when no
 *                    step produces one),
 *    "evals": [{"step", "data", "seqlen", "windows", "tokens", "nll", "ppl", "kv_cache_bits", "act_bits"}],
 *    "phases": [{"step", "kind", "wall_s", "cpu_s"}]  (seconds of the run that finished the
 *               step; CPU time is rank 0's process, all threads; on the CUDA backend the wall
 *               time is the GPU-bound time: kernels are not timed separately),
 *    "wall_s", "cpu_s" (sums over the phases),
 *    "layers": [{"layer", "bits", "sparsity"}]  (per decoder layer)}
 *
 * The sweep adds "sweep", "point", "name", "axes", "backend", "ranks" and "finished". */
#ifndef SQ_COORDINATOR_SWEEP_RECORD_H
#define SQ_COORDINATOR_SWEEP_RECORD_H

#include <jansson.h>

#include "core/status.h"
#include "jobs/spec.h"

/* The record of `spec`'s finished job (rank 0; every step done in its journal). */
sq_status sq_sweep_record_build(const sq_job_spec *spec, json_t **record);

#endif
