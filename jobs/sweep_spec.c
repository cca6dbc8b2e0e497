/* sweep_spec.c: read a sweep file and expand it into points, each a validated job spec
 * (see sweep_spec.h). */
#include "jobs/sweep_spec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "jobs/json_path.h"
#include "jobs/spec_fields.h"
#include "store/uri.h"

/* Fields of the base a sweep derives for every point. */
static const char *const derived_fields[] = {"name", "state_uri", "output_uri", NULL};

/* A value's label before sanitizing: its text, a string's last path component, an object's only key. */
static char *raw_label(json_t *value, int index)
{
    char text[64];
    if (json_is_integer(value)) {
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(value));
    } else if (json_is_real(value)) {
        snprintf(text, sizeof text, "%g", json_real_value(value));
    } else if (json_is_boolean(value)) {
        snprintf(text, sizeof text, "%s", json_is_true(value) ? "true" : "false");
    } else if (json_is_string(value)) {
        const char *s = json_string_value(value);
        size_t n = strlen(s);
        while (n > 1 && s[n - 1] == '/')
            n--;
        const char *start = s + n;
        while (start > s && start[-1] != '/')
            start--;
        return strndup(start, (size_t)(s + n - start));
    } else if (json_is_object(value) && json_object_size(value) == 1) {
        return strdup(json_object_iter_key(json_object_iter(value)));
    } else {
        snprintf(text, sizeof text, "v%d", index);
    }
    return strdup(text);
}

/* Keep [A-Za-z0-9._-]; anything else becomes '_'. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
            *s = '_';
}

static void parse_labels(sq_spec_errors *errs, json_t *axis, const char *at, sq_sweep_axis *out)
{
    int n = (int)json_array_size(out->values);
    json_t *labels = json_object_get(axis, "labels");
    char path[SQ_SPEC_PATH_MAX];
    sq_spec_path(path, at, "labels");
    if (labels && (!json_is_array(labels) || json_array_size(labels) != (size_t)n)) {
        sq_spec_error(errs, path, "must be a list of %d strings, one per value", n);
        return;
    }
    out->labels = calloc((size_t)n, sizeof *out->labels);
    if (!out->labels) {
        errs->nomem = true;
        return;
    }
    for (int i = 0; i < n; i++) {
        json_t *label = labels ? json_array_get(labels, (size_t)i) : NULL;
        if (label && (!json_is_string(label) || !json_string_length(label))) {
            sq_spec_error(errs, path, "item %d must be a non-empty string", i);
            continue;
        }
        out->labels[i] = label ? strdup(json_string_value(label)) : raw_label(json_array_get(out->values, (size_t)i), i);
        if (!out->labels[i]) {
            errs->nomem = true;
            return;
        }
        sanitize(out->labels[i]);
        for (int j = 0; j < i; j++)
            if (out->labels[j] && !strcmp(out->labels[j], out->labels[i]))
                sq_spec_error(errs, labels ? path : at, "values %d and %d both get the label '%s': give \"labels\"", j,
                              i, out->labels[i]);
    }
}

static void parse_axis(sq_spec_errors *errs, json_t *axis, int index, sq_sweep_axis *out)
{
    static const char *const keys[] = {"name", "path", "values", "labels", NULL};
    char at[SQ_SPEC_PATH_MAX];
    snprintf(at, sizeof at, "axes[%d]", index);
    if (!json_is_object(axis)) {
        sq_spec_error(errs, at, "must be an object {\"name\", \"path\", \"values\"}");
        return;
    }
    sq_spec_check_keys(errs, axis, at, keys);
    if (sq_spec_require(errs, axis, at, "name") && sq_spec_string(errs, axis, at, "name", &out->name))
        sanitize(out->name);
    if (sq_spec_require(errs, axis, at, "path") && sq_spec_string(errs, axis, at, "path", &out->path))
        for (const char *const *f = derived_fields; *f; f++)
            if (!strcmp(out->path, *f))
                sq_spec_error(errs, at, "path %s is derived by the sweep for every point and cannot be an axis", *f);
    json_t *values = json_object_get(axis, "values");
    char path[SQ_SPEC_PATH_MAX];
    sq_spec_path(path, at, "values");
    if (!json_is_array(values) || json_array_size(values) == 0) {
        sq_spec_error(errs, path, "required: a non-empty list of values");
        return;
    }
    out->values = json_incref(values);
    parse_labels(errs, axis, at, out);
}

static void parse_axes(sq_spec_errors *errs, json_t *root, sq_sweep *sweep)
{
    json_t *axes = json_object_get(root, "axes");
    if (!json_is_array(axes) || json_array_size(axes) == 0) {
        sq_spec_error(errs, "axes", "required: a non-empty list of axes");
        return;
    }
    sweep->axes = calloc(json_array_size(axes), sizeof *sweep->axes);
    if (!sweep->axes) {
        errs->nomem = true;
        return;
    }
    sweep->n_axes = (int)json_array_size(axes);
    long long points = 1;
    for (int i = 0; i < sweep->n_axes; i++) {
        parse_axis(errs, json_array_get(axes, (size_t)i), i, &sweep->axes[i]);
        if (sweep->axes[i].values && points <= SQ_SWEEP_MAX_POINTS)
            points *= (long long)json_array_size(sweep->axes[i].values);
        for (int j = 0; j < i; j++)
            if (sweep->axes[i].name && sweep->axes[j].name && !strcmp(sweep->axes[i].name, sweep->axes[j].name))
                sq_spec_error(errs, "axes", "axes %d and %d are both named '%s'", j, i, sweep->axes[i].name);
    }
    if (points > SQ_SWEEP_MAX_POINTS)
        sq_spec_error(errs, "axes", "more than %d points", SQ_SWEEP_MAX_POINTS);
    sweep->n_points = (int)points;
}

static void parse_document(sq_spec_errors *errs, json_t *root, sq_sweep *sweep)
{
    static const char *const keys[] = {"name", "root", "base", "axes", NULL};
    sq_spec_check_keys(errs, root, "", keys);
    sq_spec_string(errs, root, "", "name", &sweep->name);
    if (sweep->name)
        sanitize(sweep->name);
    if (sq_spec_require(errs, root, "", "root"))
        sq_spec_uri(errs, root, "", "root", &sweep->root);
    json_t *base = json_object_get(root, "base");
    if (!json_is_object(base)) {
        sq_spec_error(errs, "base", "required: a job spec object");
    } else {
        sweep->base = json_incref(base);
        for (const char *const *f = derived_fields; *f; f++) {
            if (json_object_get(base, *f)) {
                char at[SQ_SPEC_PATH_MAX];
                sq_spec_path(at, "base", *f);
                sq_spec_error(errs, at, "derived by the sweep for every point (<root>/points/<name>/...): leave it out");
            }
        }
    }
    parse_axes(errs, root, sweep);
}

/* root as a local path (file:// stripped) and root/results.jsonl. */
static sq_status resolve_root(sq_sweep *sweep)
{
    sq_uri uri;
    SQ_TRY(sq_uri_parse(&uri, sweep->root));
    if (uri.kind != SQ_URI_LOCAL) {
        sq_uri_free(&uri);
        return sq_fail(SQ_ERR_SPEC, "%s: 1 error\nroot: must be a local directory (results.jsonl is appended to "
                       "with O_APPEND)", sweep->origin);
    }
    char *path = strdup(uri.path);
    sq_uri_free(&uri);
    if (!path)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    free(sweep->root);
    sweep->root = path;
    sweep->results_path = sq_path_join(path, "results.jsonl");
    return sweep->results_path ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
}

sq_status sq_sweep_load(sq_sweep *sweep, const char *path)
{
    memset(sweep, 0, sizeof *sweep);
    sweep->origin = strdup(path);
    if (!sweep->origin)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        sq_sweep_free(sweep);
        return sq_fail(SQ_ERR_SPEC, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
    }
    sq_spec_errors errs = {0};
    if (json_is_object(root))
        parse_document(&errs, root, sweep);
    else
        sq_spec_error(&errs, "", "must be an object {\"root\", \"base\", \"axes\"}");
    if (!sweep->name && !errs.nomem && !(sweep->name = sq_spec_name_from_origin(path)))
        errs.nomem = true;
    sq_status st = errs.nomem ? sq_fail(SQ_ERR_NOMEM, "%s: out of memory", path)
                   : errs.count ? sq_spec_report_errors(path, &errs) : resolve_root(sweep);
    sq_spec_errors_free(&errs);
    json_decref(root);
    if (st != SQ_OK)
        sq_sweep_free(sweep);
    return st;
}

void sq_sweep_free(sq_sweep *sweep)
{
    for (int i = 0; sweep->axes && i < sweep->n_axes; i++) {
        sq_sweep_axis *axis = &sweep->axes[i];
        for (size_t v = 0; axis->labels && v < json_array_size(axis->values); v++)
            free(axis->labels[v]);
        free(axis->labels);
        json_decref(axis->values);
        free(axis->name);
        free(axis->path);
    }
    free(sweep->axes);
    json_decref(sweep->base);
    free(sweep->origin);
    free(sweep->name);
    free(sweep->root);
    free(sweep->results_path);
    memset(sweep, 0, sizeof *sweep);
}

/* The point's name and its axis values; the spec document gets the values at their paths, axis by
 * axis in their order (a later axis's path sees an earlier axis's value). */
static sq_status apply_axes(const sq_sweep *sweep, int index, json_t *doc, sq_sweep_point *point, char *name,
                            size_t cap)
{
    size_t len = (size_t)snprintf(name, cap, "%s", sweep->name);
    for (int a = 0; a < sweep->n_axes; a++) {
        const sq_sweep_axis *axis = &sweep->axes[a];
        int stride = 1; /* the last axis is the fastest */
        for (int later = a + 1; later < sweep->n_axes; later++)
            stride *= (int)json_array_size(sweep->axes[later].values);
        int v = index / stride % (int)json_array_size(axis->values);
        json_t *value = json_array_get(axis->values, (size_t)v);
        char where[SQ_SPEC_PATH_MAX + 64];
        snprintf(where, sizeof where, "%s: axes[%d] (%s)", sweep->origin, a, axis->name);
        json_t *copy = json_deep_copy(value); /* a later axis may change it inside doc */
        sq_status st = copy ? sq_json_path_set(doc, axis->path, copy, where) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        json_decref(copy);
        SQ_TRY(st);
        json_t *shown = json_is_object(value) || json_is_array(value) ? json_string(axis->labels[v]) : json_incref(value);
        if (json_object_set_new(point->axes, axis->name, shown))
            return sq_fail(SQ_ERR_NOMEM, "out of memory");
        len += (size_t)snprintf(name + len, len < cap ? cap - len : 0, "-%s%s", axis->name, axis->labels[v]);
    }
    if (len >= cap)
        return sq_fail(SQ_ERR_SPEC, "%s: point %d: its name (%zu characters) is too long; shorten labels", sweep->origin,
                       index, len);
    return SQ_OK;
}

static sq_status set_string(json_t *doc, const char *key, const char *value)
{
    return json_object_set_new(doc, key, json_string(value)) ? sq_fail(SQ_ERR_NOMEM, "out of memory") : SQ_OK;
}

sq_status sq_sweep_point_make(const sq_sweep *sweep, int index, sq_sweep_point *point)
{
    memset(point, 0, sizeof *point);
    if (index < 0 || index >= sweep->n_points)
        return sq_fail(SQ_ERR_ARG, "%s: no point %d (the sweep has %d points, 0..%d)", sweep->origin, index,
                       sweep->n_points, sweep->n_points - 1);
    point->index = index;
    json_t *doc = json_deep_copy(sweep->base);
    point->axes = json_object();
    char name[256], *dir = NULL, *state = NULL, *output = NULL, *text = NULL, origin[512];
    sq_status st = doc && point->axes ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = apply_axes(sweep, index, doc, point, name, sizeof name);
    if (st == SQ_OK && !(point->name = strdup(name)))
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK) {
        char rel[300];
        snprintf(rel, sizeof rel, "points/%s", name);
        dir = sq_path_join(sweep->root, rel);
        state = dir ? sq_path_join(dir, "state") : NULL;
        output = dir ? sq_path_join(dir, "output") : NULL;
        if (!state || !output)
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    }
    if (st == SQ_OK)
        st = set_string(doc, "name", name);
    if (st == SQ_OK)
        st = set_string(doc, "state_uri", state);
    if (st == SQ_OK)
        st = set_string(doc, "output_uri", output);
    if (st == SQ_OK && !(text = json_dumps(doc, JSON_COMPACT)))
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK) {
        snprintf(origin, sizeof origin, "%s: point %d (%s)", sweep->origin, index, name);
        st = sq_job_spec_parse(&point->spec, origin, text);
    }
    free(text), free(dir), free(state), free(output);
    json_decref(doc);
    if (st != SQ_OK) {
        json_decref(point->axes);
        free(point->name);
        memset(point, 0, sizeof *point);
    }
    return st;
}

void sq_sweep_point_free(sq_sweep_point *point)
{
    if (point->name)
        sq_job_spec_free(&point->spec);
    json_decref(point->axes);
    free(point->name);
    memset(point, 0, sizeof *point);
}
