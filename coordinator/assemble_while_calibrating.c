/* assemble_while_calibrating.c: the output checkpoint written during the layer loop
 * (see assemble_while_calibrating.h). */
#include "coordinator/assemble_while_calibrating.h"

#include <stdio.h>

#include "coordinator/assemble.h"
#include "core/fileio.h"
#include "core/log.h"

static sq_status assemble_task(void *p)
{
    sq_early_assembly *a = p;
    return sq_assemble_checkpoint(a->journal, a->spec, a->step, a->cfg, a->source, a->output_dir, a->packed,
                                  a->result);
}

sq_status sq_early_assembly_start(sq_early_assembly *a)
{
    a->running = false;
    if (!a->packed || !sq_assemble_needs_only_packed_layers(a->spec, a->step, a->source))
        return SQ_OK;
    if (!sq_dir_is_absent_or_empty(a->output_dir)) {
        sq_log_info("%s is not empty: the checkpoint is written after the layer loop", a->output_dir);
        return SQ_OK;
    }
    SQ_TRY(sq_background_start(&a->task, assemble_task, a));
    a->running = true;
    return SQ_OK;
}

sq_status sq_early_assembly_finish(sq_early_assembly *a, sq_status calibrated)
{
    if (a->packed)
        sq_packed_layers_close(a->packed, calibrated);
    if (!a->running)
        return calibrated;
    a->running = false;
    if (calibrated == SQ_OK)
        return sq_background_wait(&a->task);
    char message[1024]; /* the wait replaces this thread's message with the assembly's */
    snprintf(message, sizeof message, "%s", sq_last_error());
    sq_background_wait(&a->task);
    return sq_fail(calibrated, "%s", message);
}
