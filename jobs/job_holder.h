/* job_holder.h: which process runs a job, recorded in its journal ("holder")
 * so that `shardq status` can tell a running job from one whose processes are
 * gone.
 *
 * The holder is rank 0: {"host": hostname, "pid": N, "pid_start": the
 * process's start time in clock ticks after boot (/proc/PID/stat), so that a
 * reused pid is not mistaken for the job}. A process on another host cannot
 * be checked from here. */
#ifndef SQ_JOBS_JOB_HOLDER_H
#define SQ_JOBS_JOB_HOLDER_H

#include <jansson.h>

#include "core/status.h"

typedef enum {
    SQ_HOLDER_NONE,      /* no holder recorded: no process runs the job */
    SQ_HOLDER_RUNNING,   /* the holder process is alive on this host */
    SQ_HOLDER_GONE,      /* the holder was on this host and has exited (killed, crashed; a zombie too) */
    SQ_HOLDER_ELSEWHERE, /* the holder is on another host: unknown from here */
} sq_holder_state;

/* This process as a holder record (a new reference). */
sq_status sq_holder_self(json_t **holder);
/* What a recorded holder (NULL: none) stands for now. */
sq_holder_state sq_holder_check(json_t *holder);
/* SQ_ERR_FORMAT naming `where` unless `holder` is NULL or a well-formed record. */
sq_status sq_holder_validate(json_t *holder, const char *where);

#endif
