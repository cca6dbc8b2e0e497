/* status.c: the thread-local error message behind sq_fail / sq_last_error. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SQ_ERROR_CAPACITY 2048

static _Thread_local char last_error[SQ_ERROR_CAPACITY];

sq_status sq_fail(sq_status code, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return code;
}

sq_status sq_fail_context(sq_status code, const char *fmt, ...)
{
    char prefix[SQ_ERROR_CAPACITY / 2];
    char previous[SQ_ERROR_CAPACITY];
    va_list args;
    va_start(args, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, args);
    va_end(args);
    memcpy(previous, last_error, sizeof previous);
    size_t used = strlen(prefix);
    memcpy(last_error, prefix, used);
    if (used + 2 < sizeof last_error) {
        memcpy(last_error + used, ": ", 2);
        used += 2;
    }
    size_t rest = strnlen(previous, sizeof previous - 1);
    if (rest > sizeof last_error - 1 - used)
        rest = sizeof last_error - 1 - used;
    memcpy(last_error + used, previous, rest);
    last_error[used + rest] = '\0';
    return code;
}

const char *sq_last_error(void) { return last_error; }

void sq_clear_error(void) { last_error[0] = '\0'; }

const char *sq_status_name(sq_status code)
{
    switch (code) {
    case SQ_OK: return "ok";
    case SQ_ERR_ARG: return "invalid argument";
    case SQ_ERR_IO: return "i/o error";
    case SQ_ERR_FORMAT: return "format error";
    case SQ_ERR_SPEC: return "job spec error";
    case SQ_ERR_NOMEM: return "out of memory";
    case SQ_ERR_NUMERIC: return "numerical error";
    case SQ_ERR_NET: return "network error";
    case SQ_ERR_COMM: return "communication error";
    case SQ_ERR_DEVICE: return "device error";
    case SQ_ERR_MISMATCH: return "mismatch";
    case SQ_ERR_NOT_FOUND: return "not found";
    case SQ_ERR_INTERRUPTED: return "interrupted";
    case SQ_ERR_UNSUPPORTED: return "unsupported";
    case SQ_STOPPED: return "stopped early";
    }
    return "unknown error";
}
