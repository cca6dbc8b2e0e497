/* journal.c: resumable progress at state_uri/journal.json (see journal.h). */
#include "jobs/journal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs/job_holder.h"
#include "core/fileio.h"
#include "core/sha256.h"
#include "store/stage.h"
#include "store/uri.h"

#define JOURNAL_FORMAT "shardq-journal/1"

static sq_status save(sq_journal *journal)
{
    char *text = json_dumps(journal->doc, JSON_INDENT(1) | JSON_SORT_KEYS);
    if (!text)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot serialise the journal", journal->path);
    sq_status st = sq_store_put(journal->store, journal->path, text, strlen(text));
    free(text);
    return st;
}

/* `scratch` NULL: no artifacts are used (read-only). */
static sq_status init_paths(sq_journal *journal, const char *state_uri, sq_store *store, const char *scratch)
{
    memset(journal, 0, sizeof *journal);
    journal->store = store;
    journal->state_uri = strdup(state_uri);
    journal->path = sq_uri_join(state_uri, "journal.json");
    if (!journal->state_uri || !journal->path)
        return sq_fail(SQ_ERR_NOMEM, "journal: out of memory");
    if (sq_uri_is_s3(state_uri)) {
        journal->local_dir = scratch ? sq_path_join(scratch, "state") : NULL;
        if (scratch && !journal->local_dir)
            return sq_fail(SQ_ERR_NOMEM, "journal: out of memory");
        return SQ_OK;
    }
    sq_uri u;
    SQ_TRY(sq_uri_parse(&u, state_uri));
    journal->local_dir = strdup(u.path);
    sq_uri_free(&u);
    return journal->local_dir ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "journal: out of memory");
}

/* Load and check the shape of an existing journal file. */
static sq_status load(sq_journal *journal)
{
    void *text;
    size_t len;
    SQ_TRY(sq_store_get(journal->store, journal->path, &text, &len));
    json_error_t err;
    journal->doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!journal->doc)
        return sq_fail(SQ_ERR_FORMAT, "%s: line %d: %s", journal->path, err.line, err.text);
    const char *format = json_string_value(json_object_get(journal->doc, "format"));
    json_t *steps = json_object_get(journal->doc, "steps");
    if (!format || strcmp(format, JOURNAL_FORMAT) != 0 || !json_is_array(steps) ||
        !json_is_string(json_object_get(journal->doc, "spec_sha256")))
        return sq_fail(SQ_ERR_FORMAT, "%s: not a shardq journal (format %s)", journal->path,
                       format ? format : "missing");
    size_t i;
    json_t *step;
    json_array_foreach(steps, i, step) {
        if (!json_is_array(json_object_get(step, "layers")))
            return sq_fail(SQ_ERR_FORMAT, "%s: steps[%zu].layers: must be an array", journal->path, i);
        json_t *c = json_object_get(step, "checkpoint");
        if (c && (!json_is_integer(json_object_get(c, "train_step")) ||
                  json_integer_value(json_object_get(c, "train_step")) < 0 ||
                  !json_is_string(json_object_get(c, "artifact")) || !json_is_string(json_object_get(c, "sha256"))))
            return sq_fail(SQ_ERR_FORMAT, "%s: steps[%zu].checkpoint: needs train_step >= 0, artifact and sha256",
                           journal->path, i);
    }
    SQ_TRY(sq_holder_validate(json_object_get(journal->doc, "holder"), journal->path));
    json_t *push = json_object_get(journal->doc, "push");
    static const char *const push_fields[] = {"store", "name", "version", "uri", "manifest_sha256"};
    for (size_t k = 0; push && k < sizeof push_fields / sizeof push_fields[0]; k++)
        if (!json_is_string(json_object_get(push, push_fields[k])))
            return sq_fail(SQ_ERR_FORMAT, "%s: push.%s: must be a string", journal->path, push_fields[k]);
    return SQ_OK;
}

sq_status sq_journal_read(sq_journal *journal, const char *state_uri, sq_store *store)
{
    SQ_TRY(init_paths(journal, state_uri, store, NULL));
    return load(journal);
}

/* Record this process as the job's holder. A holder still recorded is replaced, never obeyed: the
 * ranks of a killed run may outlive its launcher for a moment, and a resume must not fail on them. */
static sq_status take_hold(sq_journal *journal)
{
    json_t *me;
    SQ_TRY(sq_holder_self(&me));
    json_object_set_new(journal->doc, "holder", me);
    SQ_TRY(save(journal));
    journal->held = true;
    return SQ_OK;
}

sq_status sq_journal_open(sq_journal *journal, const sq_job_spec *spec, sq_store *store, const char *scratch)
{
    SQ_TRY(init_paths(journal, spec->state_uri, store, scratch));
    if (!journal->local_dir)
        return sq_fail(SQ_ERR_ARG, "%s: a journal opened for a job needs a scratch directory", journal->path);
    sq_status st = load(journal);
    if (st != SQ_OK && st != SQ_ERR_NOT_FOUND)
        return st;
    if (st == SQ_OK) {
        const char *hash = json_string_value(json_object_get(journal->doc, "spec_sha256"));
        if (strcmp(hash, spec->sha256) != 0)
            return sq_fail(SQ_ERR_MISMATCH,
                           "%s: this state belongs to another job spec (sha256 %.12s..., this spec %.12s...); use a "
                           "new state_uri or restore the original spec",
                           journal->path, hash, spec->sha256);
        if (json_array_size(json_object_get(journal->doc, "steps")) != (size_t)spec->n_steps)
            return sq_fail(SQ_ERR_FORMAT, "%s: records %zu steps, the spec has %d", journal->path,
                           json_array_size(json_object_get(journal->doc, "steps")), spec->n_steps);
        return take_hold(journal);
    }
    sq_clear_error();
    SQ_TRY(sq_make_dirs(journal->local_dir));
    json_t *steps = json_array();
    for (int s = 0; s < spec->n_steps; s++)
        json_array_append_new(steps, json_pack("{s:s, s:s, s:[]}", "kind", sq_step_kind_name(spec->steps[s].kind),
                                               "status", "pending", "layers"));
    journal->doc = json_pack("{s:s, s:s, s:o}", "format", JOURNAL_FORMAT, "spec_sha256", spec->sha256, "steps", steps);
    if (!journal->doc)
        return sq_fail(SQ_ERR_NOMEM, "journal: out of memory");
    return take_hold(journal);
}

sq_status sq_journal_release(sq_journal *journal)
{
    if (!journal->held)
        return SQ_OK;
    journal->held = false;
    json_object_del(journal->doc, "holder");
    return save(journal);
}

json_t *sq_journal_holder(const sq_journal *journal) { return json_object_get(journal->doc, "holder"); }

void sq_journal_close(sq_journal *journal)
{
    json_decref(journal->doc);
    json_decref(journal->written);
    free(journal->state_uri);
    free(journal->path);
    free(journal->local_dir);
    memset(journal, 0, sizeof *journal);
}

static json_t *step_at(const sq_journal *journal, int step)
{
    return json_array_get(json_object_get(journal->doc, "steps"), (size_t)step);
}

bool sq_journal_step_done(const sq_journal *journal, int step)
{
    const char *status = json_string_value(json_object_get(step_at(journal, step), "status"));
    return status && strcmp(status, "done") == 0;
}

int sq_journal_layers_done(const sq_journal *journal, int step)
{
    json_t *layers = json_object_get(step_at(journal, step), "layers");
    int done = 0;
    size_t i;
    json_t *entry;
    json_array_foreach(layers, i, entry) {
        if (json_integer_value(json_object_get(entry, "layer")) != done)
            break;
        done++;
    }
    return done;
}

const char *sq_journal_layer_artifact(const sq_journal *journal, int step, int layer, const char **sha256)
{
    json_t *layers = json_object_get(step_at(journal, step), "layers");
    size_t i;
    json_t *entry;
    json_array_foreach(layers, i, entry) {
        if (json_integer_value(json_object_get(entry, "layer")) == layer) {
            if (sha256)
                *sha256 = json_string_value(json_object_get(entry, "sha256"));
            return json_string_value(json_object_get(entry, "artifact"));
        }
    }
    return NULL;
}

sq_status sq_journal_record_layer(sq_journal *journal, int step, int layer, const char *artifact, const char *sha256)
{
    json_t *s = step_at(journal, step);
    if (!s)
        return sq_fail(SQ_ERR_ARG, "%s: no step %d", journal->path, step);
    json_object_set_new(s, "status", json_string("running"));
    json_array_append_new(json_object_get(s, "layers"),
                          json_pack("{s:i, s:s, s:s}", "layer", layer, "artifact", artifact, "sha256", sha256));
    if (!journal->written)
        journal->written = json_object();
    if (!journal->written || json_object_set_new(journal->written, artifact, json_string(sha256)) != 0)
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", journal->path);
    return save(journal);
}

sq_status sq_journal_record_checkpoint(sq_journal *journal, int step, int train_step, const char *artifact,
                                       const char *sha256)
{
    json_t *s = step_at(journal, step);
    if (!s)
        return sq_fail(SQ_ERR_ARG, "%s: no step %d", journal->path, step);
    json_object_set_new(s, "status", json_string("running"));
    json_object_set_new(s, "checkpoint", json_pack("{s:i, s:s, s:s}", "train_step", train_step, "artifact", artifact,
                                                   "sha256", sha256));
    return save(journal);
}

const char *sq_journal_checkpoint(const sq_journal *journal, int step, int *train_step, const char **sha256)
{
    json_t *c = json_object_get(step_at(journal, step), "checkpoint");
    if (!c)
        return NULL;
    *train_step = (int)json_integer_value(json_object_get(c, "train_step"));
    *sha256 = json_string_value(json_object_get(c, "sha256"));
    return json_string_value(json_object_get(c, "artifact"));
}

sq_status sq_journal_record_step_file(sq_journal *journal, int step, const char *key, const char *artifact,
                                      const char *sha256)
{
    json_t *s = step_at(journal, step);
    if (!s)
        return sq_fail(SQ_ERR_ARG, "%s: no step %d", journal->path, step);
    json_object_set_new(s, "status", json_string("running"));
    if (!json_is_object(json_object_get(s, "files")))
        json_object_set_new(s, "files", json_object());
    json_object_set_new(json_object_get(s, "files"), key,
                        json_pack("{s:s, s:s}", "artifact", artifact, "sha256", sha256));
    return save(journal);
}

const char *sq_journal_step_file(const sq_journal *journal, int step, const char *key, const char **sha256)
{
    json_t *f = json_object_get(json_object_get(step_at(journal, step), "files"), key);
    const char *artifact = json_string_value(json_object_get(f, "artifact"));
    *sha256 = json_string_value(json_object_get(f, "sha256"));
    return artifact && *sha256 ? artifact : NULL;
}

sq_status sq_journal_record_step(sq_journal *journal, int step, json_t *result)
{
    json_t *s = step_at(journal, step);
    if (!s)
        return sq_fail(SQ_ERR_ARG, "%s: no step %d", journal->path, step);
    json_object_set_new(s, "status", json_string("done"));
    json_object_set(s, "result", result ? result : json_null());
    return save(journal);
}

sq_status sq_journal_record_step_timed(sq_journal *journal, int step, json_t *result, double wall_s, double cpu_s)
{
    json_t *s = step_at(journal, step);
    if (!s)
        return sq_fail(SQ_ERR_ARG, "%s: no step %d", journal->path, step);
    json_object_set_new(s, "wall_s", json_real(wall_s));
    json_object_set_new(s, "cpu_s", json_real(cpu_s));
    return sq_journal_record_step(journal, step, result);
}

const char *sq_journal_push_recorded(const sq_journal *journal, const char *store, const char *name,
                                     const char *version)
{
    json_t *push = json_object_get(journal->doc, "push");
    const char *fields[3][2] = {{"store", store}, {"name", name}, {"version", version}};
    for (int k = 0; k < 3; k++) {
        const char *recorded = json_string_value(json_object_get(push, fields[k][0]));
        if (!recorded || strcmp(recorded, fields[k][1]))
            return NULL;
    }
    return json_string_value(json_object_get(push, "manifest_sha256"));
}

sq_status sq_journal_record_push(sq_journal *journal, const char *store, const char *name, const char *version,
                                 const char *model_uri, const char *manifest_sha256)
{
    json_t *push = json_pack("{s:s, s:s, s:s, s:s, s:s}", "store", store, "name", name, "version", version, "uri",
                             model_uri, "manifest_sha256", manifest_sha256);
    if (!push || json_object_set_new(journal->doc, "push", push))
        return sq_fail(SQ_ERR_NOMEM, "%s: out of memory", journal->path);
    return save(journal);
}

sq_status sq_journal_truncate_layers(sq_journal *journal, int step, int from_layer)
{
    json_t *layers = json_object_get(step_at(journal, step), "layers");
    for (size_t i = json_array_size(layers); i-- > 0;)
        if (json_integer_value(json_object_get(json_array_get(layers, i), "layer")) >= from_layer)
            json_array_remove(layers, i);
    return save(journal);
}

char *sq_journal_artifact_path(const sq_journal *journal, const char *artifact)
{
    return sq_path_join(journal->local_dir, artifact);
}

char *sq_journal_artifact_uri(const sq_journal *journal, const char *artifact)
{
    return sq_uri_join(journal->state_uri, artifact);
}

sq_status sq_journal_publish_artifact(const sq_journal *journal, const char *artifact)
{
    if (!sq_uri_is_s3(journal->state_uri))
        return SQ_OK;
    char *path = sq_journal_artifact_path(journal, artifact);
    char *uri = sq_journal_artifact_uri(journal, artifact);
    sq_status st = path && uri ? sq_store_put_file(journal->store, uri, path) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    free(path);
    free(uri);
    return st;
}

/* Whether the local file exists and its bytes hash to `sha256`. */
static sq_status local_matches(const char *path, const char *sha256, bool *matches)
{
    char actual[SQ_SHA256_HEX_LEN + 1];
    sq_status st = sq_sha256_file(path, actual);
    *matches = st == SQ_OK && sha256 && strcmp(actual, sha256) == 0;
    return st;
}

sq_status sq_journal_fetch_artifact(const sq_journal *journal, const char *artifact, const char *sha256,
                                    char **local_path)
{
    char *path = sq_journal_artifact_path(journal, artifact);
    if (!path)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    bool matches = false;
    const char *recorded = json_string_value(json_object_get(journal->written, artifact));
    sq_status st = SQ_OK;
    if (recorded && sha256 && strcmp(recorded, sha256) == 0 && access(path, R_OK) == 0)
        matches = true; /* hashed by this process as it wrote the file */
    else
        st = local_matches(path, sha256, &matches);
    if (!matches && sq_uri_is_s3(journal->state_uri)) {
        char *uri = sq_journal_artifact_uri(journal, artifact);
        sq_clear_error();
        st = uri ? sq_store_get_file(journal->store, uri, path) : sq_fail(SQ_ERR_NOMEM, "out of memory");
        if (st == SQ_OK)
            st = local_matches(path, sha256, &matches);
        free(uri);
    }
    if (st == SQ_OK && !matches)
        st = sq_fail(SQ_ERR_MISMATCH, "%s: artifact %s does not match its sha256 in the journal", journal->state_uri,
                     artifact);
    if (st == SQ_OK && local_path)
        *local_path = path;
    else
        free(path);
    return st;
}
