/* spec_fields.c: typed field readers for job specs and the error list they fill.
 * See spec_fields.h for the contract: absent keys are left to defaults, bad ones
 * are recorded with their JSON path and validation carries on. */
#include "jobs/spec_fields.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/uri.h"

static void append(sq_spec_errors *errs, const char *line)
{
    size_t n = strlen(line);
    size_t need = errs->len + n + 2;
    if (need > errs->cap) {
        size_t cap = errs->cap ? errs->cap : 256;
        while (cap < need)
            cap *= 2;
        char *grown = realloc(errs->text, cap);
        if (!grown) {
            errs->nomem = true;
            return;
        }
        errs->text = grown;
        errs->cap = cap;
    }
    if (errs->len)
        errs->text[errs->len++] = '\n';
    memcpy(errs->text + errs->len, line, n + 1);
    errs->len += n;
}

void sq_spec_error(sq_spec_errors *errs, const char *path, const char *fmt, ...)
{
    char message[512];
    char line[SQ_SPEC_PATH_MAX + sizeof message + 4];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    snprintf(line, sizeof line, "%s: %s", path[0] ? path : "(root)", message);
    append(errs, line);
    errs->count++;
}

void sq_spec_errors_free(sq_spec_errors *errs)
{
    free(errs->text);
    memset(errs, 0, sizeof *errs);
}

void sq_spec_path(char *out, const char *parent, const char *key)
{
    if (parent[0])
        snprintf(out, SQ_SPEC_PATH_MAX, "%s.%s", parent, key);
    else
        snprintf(out, SQ_SPEC_PATH_MAX, "%s", key);
}

void sq_spec_check_keys(sq_spec_errors *errs, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        bool known = false;
        for (const char *const *a = allowed; *a && !known; a++)
            known = !strcmp(*a, key);
        if (!known) {
            char at[SQ_SPEC_PATH_MAX];
            sq_spec_path(at, path, key);
            sq_spec_error(errs, at, "unknown key");
        }
    }
}

bool sq_spec_require(sq_spec_errors *errs, json_t *obj, const char *path, const char *key)
{
    if (json_object_get(obj, key))
        return true;
    char at[SQ_SPEC_PATH_MAX];
    sq_spec_path(at, path, key);
    sq_spec_error(errs, at, "required");
    return false;
}

/* The value at key, or NULL when absent; `at` receives the value's path. */
static json_t *field(json_t *obj, const char *path, const char *key, char at[SQ_SPEC_PATH_MAX])
{
    sq_spec_path(at, path, key);
    return json_object_get(obj, key);
}

json_t *sq_spec_object(sq_spec_errors *errs, json_t *obj, const char *path, const char *key)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return NULL;
    if (!json_is_object(value)) {
        sq_spec_error(errs, at, "must be an object");
        return NULL;
    }
    return value;
}

bool sq_spec_int64(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, long long lo,
                   const char *rule, long long *out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (!json_is_integer(value) || json_integer_value(value) < lo) {
        sq_spec_error(errs, at, "%s", rule);
        return false;
    }
    *out = json_integer_value(value);
    return true;
}

bool sq_spec_int(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, long long lo,
                 long long hi, const char *rule, int *out)
{
    long long v;
    if (!sq_spec_int64(errs, obj, path, key, lo, rule, &v))
        return false;
    if (v > hi) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, key);
        sq_spec_error(errs, at, "must be at most %lld", hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool sq_spec_int_choice(sq_spec_errors *errs, json_t *obj, const char *path, const char *key,
                        const int *allowed, int n, const char *rule, int *out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (json_is_integer(value)) {
        for (int i = 0; i < n; i++) {
            if (json_integer_value(value) == allowed[i]) {
                *out = allowed[i];
                return true;
            }
        }
    }
    sq_spec_error(errs, at, "must be one of %s", rule);
    return false;
}

bool sq_spec_number(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, double lo,
                    bool lo_closed, double hi, bool hi_closed, const char *rule, double *out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (json_is_number(value)) {
        double v = json_number_value(value);
        bool above = lo_closed ? v >= lo : v > lo;
        bool below = hi_closed ? v <= hi : v < hi;
        if (above && below) {
            *out = v;
            return true;
        }
    }
    sq_spec_error(errs, at, "%s", rule);
    return false;
}

bool sq_spec_bool(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, bool *out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (!json_is_boolean(value)) {
        sq_spec_error(errs, at, "must be true or false");
        return false;
    }
    *out = json_is_true(value);
    return true;
}

static bool copy_string(sq_spec_errors *errs, const char *text, char **out)
{
    char *copy = strdup(text);
    if (!copy) {
        errs->nomem = true;
        return false;
    }
    free(*out);
    *out = copy;
    return true;
}

bool sq_spec_string(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, char **out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (!json_is_string(value) || json_string_length(value) == 0) {
        sq_spec_error(errs, at, "must be a non-empty string");
        return false;
    }
    return copy_string(errs, json_string_value(value), out);
}

bool sq_spec_choice(sq_spec_errors *errs, json_t *obj, const char *path, const char *key,
                    const char *const *choices, int *index)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (json_is_string(value)) {
        for (int i = 0; choices[i]; i++) {
            if (!strcmp(choices[i], json_string_value(value))) {
                *index = i;
                return true;
            }
        }
    }
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; choices[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s\"%s\"", i ? ", " : "", choices[i]);
    sq_spec_error(errs, at, "must be one of %s", list);
    return false;
}

/* S3 bucket naming rules: 3-63 characters of a-z, 0-9, '.', '-', starting and
 * ending with a letter or digit. */
bool sq_spec_uri(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, char **out)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *value = field(obj, path, key, at);
    if (!value)
        return false;
    if (!json_is_string(value) || json_string_length(value) == 0) {
        sq_spec_error(errs, at, "must be a non-empty string (a path, file:///PATH or s3://bucket/prefix)");
        return false;
    }
    const char *uri = json_string_value(value);
    sq_uri parsed; /* the parser every store call uses, so what passes here opens there */
    sq_status st = sq_uri_parse(&parsed, uri);
    sq_uri_free(&parsed);
    if (st != SQ_OK) {
        sq_spec_error(errs, at, "%s", sq_last_error());
        return false;
    }
    return copy_string(errs, uri, out);
}

/* The status message holds about 2 KiB: list whole lines up to SQ_SPEC_MESSAGE_LIST
 * bytes and say how many more there are, rather than cutting a line in half. */
#define SQ_SPEC_MESSAGE_LIST 1600

sq_status sq_spec_report_errors(const char *origin, const sq_spec_errors *errs)
{
    size_t shown = errs->len;
    int hidden = 0;
    if (shown > SQ_SPEC_MESSAGE_LIST) {
        shown = SQ_SPEC_MESSAGE_LIST;
        while (shown > 0 && errs->text[shown] != '\n')
            shown--;
        for (size_t i = shown; i < errs->len; i++)
            hidden += errs->text[i] == '\n';
    }
    if (hidden)
        return sq_fail(SQ_ERR_SPEC, "%s: %d errors\n%.*s\n... and %d more", origin, errs->count, (int)shown,
                       errs->text, hidden);
    return sq_fail(SQ_ERR_SPEC, "%s: %d error%s\n%s", origin, errs->count, errs->count == 1 ? "" : "s",
                   errs->text);
}

/* The file name without directories and without a ".json" extension. */
char *sq_spec_name_from_origin(const char *origin)
{
    const char *base = strrchr(origin, '/');
    base = base ? base + 1 : origin;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".json"))
        n -= 5;
    return strndup(base, n);
}
