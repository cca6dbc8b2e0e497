/* assemble.h: the final checkpoint of a calibration step, built by rank 0 from
 * the layer artifacts the journal lists and the untouched tensors of the
 * step's input model: GPTQ format (qweight/qzeros/scales/g_idx per linear,
 * other tensors fp16, quantization_config in config.json, tokenizer files,
 * manifest.json), written so that a crash leaves no half-written file. */
#ifndef SQ_COORDINATOR_ASSEMBLE_H
#define SQ_COORDINATOR_ASSEMBLE_H

#include "coordinator/journal.h"
#include "core/status.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"

sq_status sq_assemble_checkpoint(const sq_journal *journal, int step, const sq_step *step_spec,
                                 const sq_model_config *cfg, const sq_checkpoint *source, const char *output_dir);

#endif
