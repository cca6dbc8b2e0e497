/* background_task.c: one task at a time on a second thread (see background_task.h). */
#include "core/background_task.h"

#include <stdio.h>
#include <string.h>

static void *run_task(void *p)
{
    sq_background_task *t = p;
    t->status = t->fn(t->ctx);
    snprintf(t->message, sizeof t->message, "%s", t->status == SQ_OK ? "" : sq_last_error());
    return NULL;
}

sq_status sq_background_wait(sq_background_task *t)
{
    if (!t->running)
        return SQ_OK;
    int err = pthread_join(t->thread, NULL);
    t->running = false;
    if (err != 0)
        return sq_fail(SQ_ERR_IO, "background task: pthread_join: %s", strerror(err));
    return t->status == SQ_OK ? SQ_OK : sq_fail(t->status, "%s", t->message);
}

sq_status sq_background_start(sq_background_task *t, sq_task_fn fn, void *ctx)
{
    SQ_TRY(sq_background_wait(t));
    t->fn = fn, t->ctx = ctx, t->status = SQ_OK, t->message[0] = '\0';
    int err = pthread_create(&t->thread, NULL, run_task, t);
    if (err != 0)
        return sq_fail(SQ_ERR_IO, "background task: pthread_create: %s", strerror(err));
    t->running = true;
    return SQ_OK;
}
