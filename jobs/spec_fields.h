/* spec_fields.h: typed readers for the fields of a JSON job spec, and the list of
 * validation errors they collect (internal to jobs/).
 *
 * Every reader takes the object, the JSON path of that object ("" for the root,
 * "steps[1].gptq", ...) and a key. An absent key is not an error (the caller has
 * already stored the default) and the reader returns false; a present key of the
 * wrong type or out of range adds one error "<path>.<key>: <rule>" and returns
 * false; a valid key stores the value and returns true. Validation therefore never
 * stops at the first problem: the spec parser reports all of them at once. */
#ifndef SQ_JOBS_SPEC_FIELDS_H
#define SQ_JOBS_SPEC_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct {
    char *text;   /* errors, one per line, no trailing newline */
    size_t len;
    size_t cap;
    int count;
    bool nomem;   /* an allocation failed while collecting */
} sq_spec_errors;

/* Record "<path>: <message>" ("(root)" when path is empty). */
void sq_spec_error(sq_spec_errors *errs, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sq_spec_errors_free(sq_spec_errors *errs);

/* "<parent>.<key>", or "<key>" at the root; out must hold SQ_SPEC_PATH_MAX bytes. */
#define SQ_SPEC_PATH_MAX 256
void sq_spec_path(char *out, const char *parent, const char *key);

/* One "unknown key" error per key of obj that is not in the NULL-terminated list. */
void sq_spec_check_keys(sq_spec_errors *errs, json_t *obj, const char *path, const char *const *allowed);

/* "<path>.<key>: required" when obj lacks key. */
bool sq_spec_require(sq_spec_errors *errs, json_t *obj, const char *path, const char *key);

/* The object at key, or NULL (absent, or not an object: an error). */
json_t *sq_spec_object(sq_spec_errors *errs, json_t *obj, const char *path, const char *key);

/* An integer in [lo, hi]; `rule` is the message when it is not ("must be a positive integer"). */
bool sq_spec_int(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, long long lo,
                 long long hi, const char *rule, int *out);
bool sq_spec_int64(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, long long lo,
                   const char *rule, long long *out);

/* An integer from `allowed` (n values); message "must be one of <rule>". */
bool sq_spec_int_choice(sq_spec_errors *errs, json_t *obj, const char *path, const char *key,
                        const int *allowed, int n, const char *rule, int *out);

/* A number (integer or real) between lo and hi, each bound open or closed. */
bool sq_spec_number(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, double lo,
                    bool lo_closed, double hi, bool hi_closed, const char *rule, double *out);

bool sq_spec_bool(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, bool *out);

/* A non-empty string, duplicated into *out (which is freed first). */
bool sq_spec_string(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, char **out);

/* One of the NULL-terminated `choices`; *index receives its position. */
bool sq_spec_choice(sq_spec_errors *errs, json_t *obj, const char *path, const char *key,
                    const char *const *choices, int *index);

/* A URI: a local path, file:///PATH or s3://bucket[/prefix] with a valid bucket name, as
 * store/uri.c's sq_uri_parse accepts it (its message follows the JSON path). */
bool sq_spec_uri(sq_spec_errors *errs, json_t *obj, const char *path, const char *key, char **out);

/* SQ_ERR_SPEC with every collected error: "<origin>: N errors\n<error>\n..." (the list cut
 * after about 1.6 KiB, ending "... and K more"). */
sq_status sq_spec_report_errors(const char *origin, const sq_spec_errors *errs);

/* The file name without directories and without a ".json" extension (caller frees). */
char *sq_spec_name_from_origin(const char *origin);

#endif
