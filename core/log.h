/* log.h: progress and diagnostic lines, prefixed with the MPI rank when there is more than one. */
#ifndef SQ_LOG_H
#define SQ_LOG_H

/* Set once by main after MPI is up; lines are then prefixed "[rank R/N]". */
void sq_log_set_rank(int rank, int world_size);

/* Verbosity: 0 = errors only, 1 = progress (default), 2 = debug. Env SHARDQ_LOG overrides. */
void sq_log_set_level(int level);

void sq_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sq_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sq_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds since an arbitrary fixed point (monotonic clock), for elapsed/ETA lines. */
double sq_now_seconds(void);

#endif
