/* fileio.c: whole-file reads, atomic replacement (temp + fsync + rename + dir fsync),
 * mkdir -p and path joining. */
#include "core/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

sq_status sq_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: cannot open: %s", path,
                       strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return sq_fail(SQ_ERR_IO, "%s: cannot seek", path);
    }
    long size = ftell(f);
    if (size < 0) {
        fclose(f);
        return sq_fail(SQ_ERR_IO, "%s: cannot tell size", path);
    }
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    if (!buf) {
        fclose(f);
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %ld bytes", path, size);
    }
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    if (got != (size_t)size) {
        free(buf);
        return sq_fail(SQ_ERR_IO, "%s: short read (%zu of %ld bytes)", path, got, size);
    }
    buf[size] = '\0';
    *data = buf;
    if (len)
        *len = (size_t)size;
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
    int rc = fsync(fd);
    close(fd);
    if (rc != 0)
        return sq_fail(SQ_ERR_IO, "%s: cannot fsync parent directory: %s", path, strerror(errno));
    return SQ_OK;
}

sq_status sq_write_file_atomic(const char *path, const void *data, size_t len)
{
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= sizeof tmp)
        return sq_fail(SQ_ERR_ARG, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return sq_fail(SQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = errno;
            close(fd);
            unlink(tmp);
            return sq_fail(SQ_ERR_IO, "%s: write failed: %s", tmp, strerror(err));
        }
        p += n;
        left -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        return sq_fail(SQ_ERR_IO, "%s: fsync failed: %s", tmp, strerror(err));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return sq_fail(SQ_ERR_IO, "%s: cannot rename into place: %s", path, strerror(err));
    }
    return sq_fsync_parent_dir(path);
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
    char *data;
    size_t len;
    SQ_TRY(sq_read_file(src, &data, &len));
    sq_status st = sq_write_file_atomic(dst, data, len);
    free(data);
    return st;
}

sq_status sq_file_size(const char *path, uint64_t *size)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: %s", path, strerror(errno));
    *size = (uint64_t)sb.st_size;
    return SQ_OK;
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
