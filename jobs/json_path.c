/* json_path.c: walk a "steps[0].gptq.bits" path through a JSON document and set its value
 * (see json_path.h). */
#include "jobs/json_path.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One part of a path: a key (`key` non-empty) or an array index. */
typedef struct {
    char key[128];
    long index;
    bool is_index;
} path_part;

/* Read the part at *p (a key, or [digits]); advance *p past it and one following '.'.
 * False on a malformed part. */
static bool next_part(const char **p, path_part *part)
{
    const char *s = *p;
    memset(part, 0, sizeof *part);
    if (*s == '[') {
        char *end;
        if (!isdigit((unsigned char)s[1]))
            return false;
        part->index = strtol(s + 1, &end, 10);
        if (*end != ']' || part->index > 1000000)
            return false;
        part->is_index = true;
        s = end + 1;
    } else {
        size_t n = 0;
        if (*s == '*')
            n = 1;
        else
            while (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '-')
                n++;
        if (n == 0 || n >= sizeof part->key)
            return false;
        memcpy(part->key, s, n);
        s += n;
    }
    if (*s == '.') {
        s++;
        if (*s == '\0' || *s == '[')
            return false;
    } else if (*s != '\0' && *s != '[') {
        return false;
    }
    *p = s;
    return true;
}

sq_status sq_json_path_set(json_t *root, const char *path, json_t *value, const char *origin)
{
    const char *p = path;
    json_t *node = root;
    size_t walked = 0; /* characters of the path already resolved, for messages */
    while (true) {
        path_part part;
        if (!next_part(&p, &part))
            return sq_fail(SQ_ERR_SPEC, "%s: %s: not a path of keys and [index] items (e.g. steps[0].gptq.bits)",
                           origin, path);
        bool last = *p == '\0';
        int shown = (int)(p - path) - (p[-1] == '.');
        if (part.is_index) {
            if (!json_is_array(node))
                return sq_fail(SQ_ERR_SPEC, "%s: %s: %.*s is not a list", origin, path, (int)walked, path);
            if ((size_t)part.index >= json_array_size(node))
                return sq_fail(SQ_ERR_SPEC, "%s: %s: %.*s does not exist (the list has %zu items)", origin, path,
                               shown, path, json_array_size(node));
            if (last)
                return json_array_set(node, (size_t)part.index, value) == 0
                           ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
            node = json_array_get(node, (size_t)part.index);
        } else {
            if (!json_is_object(node))
                return sq_fail(SQ_ERR_SPEC, "%s: %s: %.*s is not an object", origin, path,
                               walked ? (int)walked : 6, walked ? path : "(root)");
            bool any = !strcmp(part.key, "*");
            if (any && json_object_size(node) != 1)
                return sq_fail(SQ_ERR_SPEC, "%s: %s: * needs an object of one key at %.*s (it has %zu)", origin, path,
                               walked ? (int)walked : 6, walked ? path : "(root)", json_object_size(node));
            const char *key = any ? json_object_iter_key(json_object_iter(node)) : part.key;
            if (last)
                return json_object_set(node, key, value) == 0
                           ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", origin);
            node = json_object_get(node, key);
            if (!node)
                return sq_fail(SQ_ERR_SPEC, "%s: %s: %.*s does not exist in the base spec", origin, path, shown, path);
        }
        walked = (size_t)shown;
    }
}
