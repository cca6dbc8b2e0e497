/* assemble.h: the final checkpoint of a calibration step, built by rank 0 from
 * the layer artifacts the journal lists and the untouched tensors of the
 * step's input model, written so that a crash leaves no half-written file:
 *  - gptq, rtn, awq, sparsegpt with bits > 0: in `format` (the spec's output.format):
 *    GPTQ (qweight/qzeros/scales/g_idx per linear, other tensors fp16,
 *    quantization_config in config.json, tokenizer files, manifest.json;
 *    quant/gptq_checkpoint.h), or "dense" / "compressed-tensors"
 *    (coordinator/assemble_formats.h) / "awq" (coordinator/assemble_awq.h),
 *    written by assemble_dense.h; an awq step's folded norms and v bias (in its
 *    artifacts) replace the source's in every format;
 *  - sparsegpt with bits 0, wanda, magnitude: a dense checkpoint with the
 *    source's names and dtypes, zeros in place (coordinator/assemble_dense.h).
 * Pruning steps also write sparsity_report.json (zeros per layer and linear,
 * counted from the artifacts; a code at its grid's zero point is a zero), record
 * {"sparsity_config": {"method", "sparsity", "pattern", "global_sparsity",
 * "targets", "format"}} in config.json, and add "sparsity" (achieved) and
 * "sparsity_report" to the step's journal result.
 * rtn and gptq on a pruned input (its config.json has a sparsity_config) carry
 * that sparsity_config with global_sparsity recounted and write the report too,
 * with "input_zeros" (the input's zeros, read from the input model) and
 * "input_zeros_kept" (those still zero: all of them) — when the step kept the
 * zeros: rtn always, gptq with preserve_sparsity. A gptq without it writes
 * "sparsity_config": null, as its output is no longer sparse. */
#ifndef SQ_COORDINATOR_ASSEMBLE_H
#define SQ_COORDINATOR_ASSEMBLE_H

#include <stdbool.h>

#include <jansson.h>

#include "core/status.h"
#include "jobs/journal.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "worker/packed_layers.h"

/* Whether the step's checkpoint is made of the source's tensors and the packed linears alone,
 * with no artifact or journal record read unless a linear was not packed: the GPTQ format of a
 * gptq or rtn step at one width, on a dense, local (memory-mapped) input. Such an assembly may
 * run while the layers are calibrated (coordinator/assemble_while_calibrating.h). */
bool sq_assemble_needs_only_packed_layers(const sq_job_spec *spec, int step, const sq_checkpoint *source);

/* packed (may be NULL): linears packed during calibration, taken instead of their artifacts; while
 * it is open, the assembly waits for each linear in turn (worker/packed_layers.h). */
sq_status sq_assemble_checkpoint(const sq_journal *journal, const sq_job_spec *spec, int step,
                                 const sq_model_config *cfg, const sq_checkpoint *source, const char *output_dir,
                                 sq_packed_layers *packed, json_t *step_result);

#endif
