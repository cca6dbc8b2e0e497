/* sweep_results.c: append to and read a sweep's results.jsonl (see sweep_results.h). */
#include "jobs/sweep_results.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"

/* The directory part of `path` made to exist. */
static sq_status make_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return SQ_OK;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = sq_make_dirs(dir);
    free(dir);
    return st;
}

sq_status sq_sweep_results_append(const char *path, const json_t *record)
{
    char *text = json_dumps(record, JSON_COMPACT | JSON_REAL_PRECISION(17));
    if (!text)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot serialise the record", path);
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path);
    }
    line[len++] = '\n';
    line[len] = '\0';
    sq_status st = make_parent(path);
    int fd = st == SQ_OK ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    if (st == SQ_OK && fd < 0)
        st = sq_fail(SQ_ERR_IO, "%s: cannot open for appending: %s", path, strerror(errno));
    if (fd >= 0) {
        ssize_t written = write(fd, line, len); /* one write: the line lands whole */
        if (written != (ssize_t)len)
            st = sq_fail(SQ_ERR_IO, "%s: appending a %zu-byte record wrote %zd: %s", path, len, written,
                         written < 0 ? strerror(errno) : "short write");
        else if (fsync(fd) != 0)
            st = sq_fail(SQ_ERR_IO, "%s: fsync: %s", path, strerror(errno));
        if (close(fd) != 0 && st == SQ_OK)
            st = sq_fail(SQ_ERR_IO, "%s: close: %s", path, strerror(errno));
    }
    free(line);
    return st;
}

/* Parse one line (NUL-terminated, without its newline) and append it to records. */
static sq_status read_line(const char *path, int number, const char *line, json_t *records)
{
    json_error_t jerr;
    json_t *record = json_loads(line, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(record)) {
        json_decref(record);
        return sq_fail(SQ_ERR_FORMAT, "%s:%d: not a JSON record%s%s", path, number, record ? "" : ": ",
                       record ? "" : jerr.text);
    }
    return json_array_append_new(records, record) ? sq_fail(SQ_ERR_NOMEM, "out of memory") : SQ_OK;
}

sq_status sq_sweep_results_read(const char *path, json_t **records)
{
    *records = json_array();
    if (!*records)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return SQ_OK;
    char *text = NULL;
    size_t len = 0;
    sq_status st = sq_read_file(path, &text, &len);
    int number = 0;
    for (size_t at = 0; st == SQ_OK && at < len; number++) {
        char *end = memchr(text + at, '\n', len - at);
        if (!end) {
            st = sq_fail(SQ_ERR_FORMAT, "%s:%d: a torn record (no newline at the end of the file)", path, number + 1);
            break;
        }
        *end = '\0';
        if (strlen(text + at) != (size_t)(end - text - at))
            st = sq_fail(SQ_ERR_FORMAT, "%s:%d: contains a NUL byte", path, number + 1);
        else
            st = read_line(path, number + 1, text + at, *records);
        at = (size_t)(end - text) + 1;
    }
    free(text);
    if (st != SQ_OK) {
        json_decref(*records);
        *records = NULL;
    }
    return st;
}

json_t *sq_sweep_results_find(const json_t *records, const char *name, const char *spec_sha256)
{
    size_t i;
    json_t *record;
    json_array_foreach(records, i, record) {
        const char *n = json_string_value(json_object_get(record, "name"));
        const char *h = json_string_value(json_object_get(record, "spec_sha256"));
        if (n && h && !strcmp(n, name) && !strcmp(h, spec_sha256))
            return record;
    }
    return NULL;
}
