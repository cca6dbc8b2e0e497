/* store_local.c: the local backend of the storage API (local paths and file:// URIs).
 *
 * Writes are atomic (core/fileio.h: temp file, fsync, rename, fsync dir);
 * listings walk the directory tree and skip in-flight "*.tmp.*" files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "store/store_backend.h"

sq_status sq_local_get(const char *path, void **data, size_t *len)
{
    char *buf;
    sq_status st = sq_read_file(path, &buf, len);
    if (st == SQ_OK)
        *data = buf;
    return st;
}

sq_status sq_local_get_range(const char *path, uint64_t offset, uint64_t len, void *dst)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return sq_fail(errno == ENOENT ? SQ_ERR_NOT_FOUND : SQ_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    sq_status st = SQ_OK;
    for (uint64_t got = 0; st == SQ_OK && got < len;) {
        ssize_t r = pread(fd, (char *)dst + got, (size_t)(len - got), (off_t)(offset + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            st = sq_fail(SQ_ERR_IO, "%s: reading %llu bytes at offset %llu: %s", path, (unsigned long long)len,
                         (unsigned long long)offset, r == 0 ? "file is shorter" : strerror(errno));
        else
            got += (uint64_t)r;
    }
    if (close(fd) != 0 && st == SQ_OK)
        st = sq_fail(SQ_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return st;
}

sq_status sq_local_get_file(const char *path, const char *local_path)
{
    return sq_local_copy(path, local_path);
}

sq_status sq_local_put(const char *path, const void *data, size_t len)
{
    SQ_TRY(sq_store_make_parent_dirs(path));
    return sq_write_file_atomic(path, data, len);
}

sq_status sq_local_put_file(const char *path, const char *local_path)
{
    return sq_local_copy(local_path, path);
}

sq_status sq_local_head(const char *path, const char *uri, sq_object_info *info)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no such file", uri);
    info->size = (uint64_t)sb.st_size;
    return SQ_OK;
}

static sq_status local_walk(const char *root, const char *rel, sq_object_list *out, int *cap, int depth)
{
    if (depth > 32)
        return sq_fail(SQ_ERR_IO, "%s/%s: directory tree deeper than 32 levels", root, rel);
    char *dir = rel[0] ? sq_path_join(root, rel) : strdup(root);
    if (!dir)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", root);
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        free(dir);
        return e == ENOENT ? SQ_OK : sq_fail(SQ_ERR_IO, "%s: cannot list: %s", root, strerror(e));
    }
    sq_status st = SQ_OK;
    struct dirent *ent;
    while (st == SQ_OK && (ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..") || strstr(ent->d_name, ".tmp."))
            continue;
        char *child_rel = rel[0] ? sq_path_join(rel, ent->d_name) : strdup(ent->d_name);
        char *child = child_rel ? sq_path_join(root, child_rel) : NULL;
        struct stat sb;
        if (!child)
            st = sq_fail(SQ_ERR_NOMEM, "%s: out of memory", root);
        else if (stat(child, &sb) != 0)
            st = sq_fail(SQ_ERR_IO, "%s: cannot stat: %s", child, strerror(errno));
        else if (S_ISDIR(sb.st_mode))
            st = local_walk(root, child_rel, out, cap, depth + 1);
        else if (S_ISREG(sb.st_mode))
            st = sq_object_list_add(out, cap, child_rel, (uint64_t)sb.st_size);
        free(child_rel);
        free(child);
    }
    closedir(d);
    free(dir);
    return st;
}

sq_status sq_local_list(const char *path, sq_object_list *out, int *cap)
{
    return local_walk(path, "", out, cap, 0);
}

sq_status sq_local_copy(const char *src, const char *dst)
{
    SQ_TRY(sq_store_make_parent_dirs(dst));
    return sq_copy_file(src, dst);
}

sq_status sq_local_delete(const char *path, const char *uri)
{
    if (unlink(path) != 0 && errno != ENOENT)
        return sq_fail(SQ_ERR_IO, "%s: cannot delete: %s", uri, strerror(errno));
    return SQ_OK;
}
