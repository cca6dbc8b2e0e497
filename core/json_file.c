/* json_file.c: JSON documents written atomically (see json_file.h). */
#include "core/json_file.h"

#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"

sq_status sq_write_json_file(const char *dir, const char *name, const json_t *value, size_t flags)
{
    char *text = json_dumps(value, flags);
    char *path = sq_path_join(dir, name);
    sq_status st = text && path ? sq_write_file_atomic(path, text, strlen(text))
                                : sq_fail(SQ_ERR_NOMEM, "%s/%s: cannot serialise", dir, name);
    free(text);
    free(path);
    return st;
}
