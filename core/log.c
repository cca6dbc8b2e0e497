/* log.c: timestamped, rank-prefixed log lines on stderr. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int log_rank = 0;
static int log_world_size = 1;
static int log_level = -1;

void sq_log_set_rank(int rank, int world_size)
{
    log_rank = rank;
    log_world_size = world_size;
}

void sq_log_set_level(int level) { log_level = level; }

static int current_level(void)
{
    if (log_level < 0) {
        const char *env = getenv("SHARDQ_LOG");
        log_level = env ? atoi(env) : 1;
    }
    return log_level;
}

static void emit(const char *tag, const char *fmt, va_list args)
{
    char line[4096];
    vsnprintf(line, sizeof line, fmt, args);
    if (log_world_size > 1)
        fprintf(stderr, "[shardq %d/%d] %s%s\n", log_rank, log_world_size, tag, line);
    else
        fprintf(stderr, "[shardq] %s%s\n", tag, line);
    fflush(stderr);
}

void sq_log_info(const char *fmt, ...)
{
    if (current_level() < 1)
        return;
    va_list args;
    va_start(args, fmt);
    emit("", fmt, args);
    va_end(args);
}

void sq_log_debug(const char *fmt, ...)
{
    if (current_level() < 2)
        return;
    va_list args;
    va_start(args, fmt);
    emit("debug: ", fmt, args);
    va_end(args);
}

void sq_log_error(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    emit("error: ", fmt, args);
    va_end(args);
}

double sq_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
