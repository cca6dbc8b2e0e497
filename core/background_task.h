/* background_task.h: one task at a time on a second thread, so that slow host work
 * overlaps other work: rank 0's layer artifacts (write, sha256, journal record) overlap
 * the next layer's device work, and a checkpoint's shards are written and synced at once.
 * The thread that waits gets the task's status and its error message (messages are
 * thread-local, see core/status.h). */
#ifndef SQ_CORE_BACKGROUND_TASK_H
#define SQ_CORE_BACKGROUND_TASK_H

#include <pthread.h>
#include <stdbool.h>

#include "core/status.h"

typedef sq_status (*sq_task_fn)(void *ctx);

typedef struct {
    pthread_t thread;
    bool running;
    sq_task_fn fn;
    void *ctx;
    sq_status status;
    char message[1024];
} sq_background_task;

/* Wait for the task started last, if any: its status, with its message as this thread's error. */
sq_status sq_background_wait(sq_background_task *t);

/* Wait for the previous task; if it succeeded, start fn(ctx) on a new thread, else return its failure
 * (fn is then not started: the caller still owns ctx). */
sq_status sq_background_start(sq_background_task *t, sq_task_fn fn, void *ctx);

#endif
