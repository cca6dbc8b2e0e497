/* job_holder.c: the journal's record of the process running a job (see job_holder.h). */
#include "jobs/job_holder.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Field 22 of /proc/PID/stat (starttime); -1 when the process does not exist or has exited
 * (a zombie, state Z, or dead, X). */
static long long process_start(long long pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    /* the command name (field 2) may hold spaces and parentheses: fields resume after the last ')' */
    char *p = strrchr(text, ')');
    if (p && (p[1] != ' ' || p[2] == 'Z' || p[2] == 'X'))
        return -1;
    long long start = -1;
    for (int field = 2; p && *p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p && sscanf(p + 1, "%lld", &start) != 1)
        start = -1;
    return start;
}

static sq_status host_name(char *out, size_t size)
{
    if (gethostname(out, size) != 0)
        return sq_fail(SQ_ERR_IO, "gethostname: %s", strerror(errno));
    out[size - 1] = '\0';
    return SQ_OK;
}

sq_status sq_holder_self(json_t **holder)
{
    char host[HOST_NAME_MAX + 1];
    SQ_TRY(host_name(host, sizeof host));
    long long pid = (long long)getpid(), start = process_start(pid);
    if (start < 0)
        return sq_fail(SQ_ERR_IO, "/proc/%lld/stat: cannot read this process's start time", pid);
    *holder = json_pack("{s:s, s:I, s:I}", "host", host, "pid", (json_int_t)pid, "pid_start", (json_int_t)start);
    return *holder ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
}

sq_holder_state sq_holder_check(json_t *holder)
{
    if (!holder)
        return SQ_HOLDER_NONE;
    char host[HOST_NAME_MAX + 1];
    if (host_name(host, sizeof host) != SQ_OK) {
        sq_clear_error();
        return SQ_HOLDER_ELSEWHERE;
    }
    if (strcmp(json_string_value(json_object_get(holder, "host")), host) != 0)
        return SQ_HOLDER_ELSEWHERE;
    long long pid = json_integer_value(json_object_get(holder, "pid"));
    long long start = process_start(pid);
    return start >= 0 && start == json_integer_value(json_object_get(holder, "pid_start")) ? SQ_HOLDER_RUNNING
                                                                                          : SQ_HOLDER_GONE;
}

sq_status sq_holder_validate(json_t *holder, const char *where)
{
    if (!holder)
        return SQ_OK;
    if (!json_is_string(json_object_get(holder, "host")))
        return sq_fail(SQ_ERR_FORMAT, "%s: holder.host: must be a string", where);
    json_t *pid = json_object_get(holder, "pid"), *start = json_object_get(holder, "pid_start");
    if (!json_is_integer(pid) || json_integer_value(pid) < 1 || json_integer_value(pid) > INT_MAX)
        return sq_fail(SQ_ERR_FORMAT, "%s: holder.pid: must be a process id", where);
    if (!json_is_integer(start) || json_integer_value(start) < 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: holder.pid_start: must be an integer >= 0", where);
    return SQ_OK;
}
