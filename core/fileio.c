/* fileio.c: whole-file reads, atomic replacement (temp + fsync + rename + dir fsync),
 * streaming copies in bounded chunks, mkdir -p and path joining. */
#include "core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static sq_status open_for_reading(const char *path, int *fd)
{
    *fd = open(path, O_RDONLY);
    if (*fd < 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    return SQ_OK;
}

/* Up to `len` bytes (fewer only at the end of the file) into `buf`; `*got` says how many. */
static sq_status read_some(int fd, const char *path, void *buf, size_t len, size_t *got)
{
    *got = 0;
    while (*got < len) {
        ssize_t n = read(fd, (char *)buf + *got, len - *got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sq_fail(SQ_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return SQ_OK;
}

/* close() of a file only read from: an error there loses nothing, but is still reported. */
static sq_status close_read(int fd, const char *path, sq_status st)
{
    if (close(fd) != 0 && st == SQ_OK)
        return sq_fail(SQ_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

sq_status sq_read_file(const char *path, char **data, size_t *len)
{
    int fd;
    SQ_TRY(open_for_reading(path, &fd));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        sq_status st = sq_fail(SQ_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        return close_read(fd, path, st);
    }
    size_t size = (size_t)sb.st_size;
    char *buf = malloc(size + 1);
    if (!buf)
        return close_read(fd, path, sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, size));
    size_t got = 0;
    sq_status st = read_some(fd, path, buf, size, &got);
    if (st == SQ_OK && got != size)
        st = sq_fail(SQ_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, size);
    st = close_read(fd, path, st);
    if (st != SQ_OK) {
        free(buf);
        return st;
    }
    buf[size] = '\0';
    *data = buf;
    if (len)
        *len = size;
    return SQ_OK;
}

sq_status sq_fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
    if (fd < 0)
        return sq_fail(SQ_ERR_IO, "%s: cannot open parent directory: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return sq_fail(SQ_ERR_IO, "%s: cannot fsync parent directory: %s", path, strerror(err));
    }
    return close_read(fd, path, SQ_OK);
}

sq_status sq_rename_into_place(const char *tmp, const char *path, sq_status st)
{
    if (st == SQ_OK && rename(tmp, path) != 0)
        st = sq_fail(SQ_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st != SQ_OK) {
        unlink(tmp);
        return st;
    }
    return sq_fsync_parent_dir(path);
}

/* An atomic replacement in progress: the temp file next to `path`. */
typedef struct {
    const char *path;
    char tmp[4096];
    int fd;
} atomic_file;

static sq_status atomic_begin(atomic_file *f, const char *path)
{
    f->path = path;
    f->fd = -1;
    if ((size_t)snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof f->tmp)
        return sq_fail(SQ_ERR_ARG, "%s: path too long", path);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0)
        return sq_fail(SQ_ERR_IO, "%s: cannot create: %s", f->tmp, strerror(errno));
    return SQ_OK;
}

static sq_status atomic_write(atomic_file *f, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(f->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return sq_fail(SQ_ERR_IO, "%s: write failed: %s", f->tmp, n < 0 ? strerror(errno) : "no progress");
        p += n;
        len -= (size_t)n;
    }
    return SQ_OK;
}

/* With `st` SQ_OK: fsync, close, rename over the path, fsync its directory. Otherwise (or
 * when any of those fails) the temp file is removed and the path left as it was. */
static sq_status atomic_end(atomic_file *f, sq_status st)
{
    if (f->fd < 0)
        return st;
    if (st == SQ_OK && fsync(f->fd) != 0)
        st = sq_fail(SQ_ERR_IO, "%s: fsync failed: %s", f->tmp, strerror(errno));
    if (close(f->fd) != 0 && st == SQ_OK)
        st = sq_fail(SQ_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
    f->fd = -1;
    return sq_rename_into_place(f->tmp, f->path, st);
}

sq_status sq_write_file_atomic(const char *path, const void *data, size_t len)
{
    atomic_file f;
    sq_status st = atomic_begin(&f, path);
    if (st == SQ_OK)
        st = atomic_write(&f, data, len);
    return atomic_end(&f, st);
}

sq_status sq_make_dirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return sq_fail(SQ_ERR_ARG, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return sq_fail(SQ_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return sq_fail(SQ_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    return SQ_OK;
}

sq_status sq_copy_file(const char *src, const char *dst)
{
    int in;
    SQ_TRY(open_for_reading(src, &in));
    char *chunk = malloc(SQ_COPY_CHUNK_BYTES);
    if (!chunk)
        return close_read(in, src, sq_fail(SQ_ERR_NOMEM, "%s: no memory for a copy buffer", src));
    atomic_file f;
    sq_status st = atomic_begin(&f, dst);
    for (size_t got = SQ_COPY_CHUNK_BYTES; st == SQ_OK && got == SQ_COPY_CHUNK_BYTES;) {
        st = read_some(in, src, chunk, SQ_COPY_CHUNK_BYTES, &got);
        if (st == SQ_OK)
            st = atomic_write(&f, chunk, got);
    }
    free(chunk);
    st = close_read(in, src, st);
    return atomic_end(&f, st);
}

sq_status sq_file_size(const char *path, uint64_t *size)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: %s", path, strerror(errno));
    *size = (uint64_t)sb.st_size;
    return SQ_OK;
}

bool sq_dir_is_absent_or_empty(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return errno == ENOENT;
    bool empty = true;
    for (struct dirent *e; empty && (e = readdir(dir));)
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(dir);
    return empty;
}

char *sq_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, a);
    size_t pos = a;
    if (a > 0 && dir[a - 1] != '/')
        out[pos++] = '/';
    memcpy(out + pos, name, b + 1);
    return out;
}
