/* scratch_dir.c: mkdtemp under $TMPDIR and a depth-first removal by nftw (see scratch_dir.h). */
#include "core/scratch_dir.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

sq_status sq_scratch_dir_create(char **path)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    size_t size = strlen(tmp) + sizeof "/shardq-XXXXXX";
    char *templ = malloc(size);
    if (!templ)
        return sq_fail(SQ_ERR_NOMEM, "scratch directory: out of memory");
    snprintf(templ, size, "%s/shardq-XXXXXX", tmp);
    if (!mkdtemp(templ)) {
        sq_status st = sq_fail(SQ_ERR_IO, "%s: cannot create a scratch directory: %s", templ, strerror(errno));
        free(templ);
        return st;
    }
    *path = templ;
    return SQ_OK;
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return (type == FTW_DP ? rmdir(path) : unlink(path)) == 0 || errno == ENOENT ? 0 : -1;
}

sq_status sq_scratch_dir_remove(const char *path)
{
    if (!path)
        return SQ_OK;
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return sq_fail(SQ_ERR_IO, "%s: cannot remove the scratch directory: %s", path, strerror(errno));
    return SQ_OK;
}
