/* token_ids.c: parse a whitespace-separated list of token ids (see token_ids.h). */
#include "model/token_ids.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "core/fileio.h"

sq_status sq_read_token_ids(const char *path, int vocab_size, int32_t **ids, size_t *count)
{
    *ids = NULL;
    *count = 0;
    char *text;
    size_t len;
    SQ_TRY(sq_read_file(path, &text, &len));
    size_t cap = 1024, n = 0;
    int32_t *out = malloc(cap * sizeof *out);
    sq_status st = SQ_OK;
    if (!out) {
        st = sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate token ids", path);
        goto done;
    }
    for (char *p = text;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || (*end && !isspace((unsigned char)*end))) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: token %zu is not an integer", path, n);
            goto done;
        }
        if (v < 0 || v > INT32_MAX || (vocab_size > 0 && v >= vocab_size)) {
            st = sq_fail(SQ_ERR_FORMAT, "%s: token %zu has id %lld, outside the vocabulary [0, %d)", path, n, v,
                         vocab_size);
            goto done;
        }
        if (n == cap) {
            int32_t *grown = realloc(out, 2 * cap * sizeof *out);
            if (!grown) {
                st = sq_fail(SQ_ERR_NOMEM, "%s: cannot allocate %zu token ids", path, 2 * cap);
                goto done;
            }
            out = grown;
            cap *= 2;
        }
        out[n++] = (int32_t)v;
        p = end;
    }
    *ids = out;
    *count = n;
    out = NULL;
done:
    free(out);
    free(text);
    return st;
}
