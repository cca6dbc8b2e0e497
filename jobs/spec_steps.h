/* spec_steps.h: parsing and validation of one step of a job spec (internal to jobs/). */
#ifndef SQ_JOBS_SPEC_STEPS_H
#define SQ_JOBS_SPEC_STEPS_H

#include <jansson.h>
#include <stdbool.h>

#include "jobs/spec.h"
#include "jobs/spec_fields.h"

/* Parse steps[index] into *step (defaults filled), recording errors. Returns false
 * when the step's kind could not be determined; its options may still hold errors
 * when it returns true. Defaults that depend on the rest of the spec (seqlen,
 * train_data, base_quant) are left 0/NULL for spec.c to fill. */
bool sq_spec_parse_step(sq_spec_errors *errs, json_t *value, int index, sq_step *step);

/* Free what a parsed step owns and zero it. */
void sq_spec_free_step(sq_step *step);

#endif
