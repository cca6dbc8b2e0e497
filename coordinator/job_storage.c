/* job_storage.c: a job's store, scratch directory and staging of models, data and outputs (see job_storage.h). */
#include "coordinator/job_storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/scratch_dir.h"
#include "core/sha256.h"
#include "store/model_store.h"
#include "worker/fault.h"
#include "store/stage.h"
#include "store/uri.h"

sq_status sq_job_storage_open(sq_job_storage *io, const sq_job_spec *spec)
{
    memset(io, 0, sizeof *io);
    return sq_store_open(&io->store, &spec->storage);
}

sq_status sq_job_scratch(sq_job_storage *io, const char **dir)
{
    if (!io->scratch)
        SQ_TRY(sq_scratch_dir_create(&io->scratch));
    *dir = io->scratch;
    return SQ_OK;
}

/* The scratch directory when `uri` is s3:// (created on first use), else NULL:
 * a job on local paths leaves nothing behind in $TMPDIR even when killed. */
static sq_status scratch_for(sq_job_storage *io, const char *uri, const char **dir)
{
    *dir = NULL;
    return sq_uri_is_s3(uri) ? sq_job_scratch(io, dir) : SQ_OK;
}

void sq_job_storage_close(sq_job_storage *io)
{
    if (sq_scratch_dir_remove(io->scratch) != SQ_OK)
        sq_log_info("%s", sq_last_error());
    free(io->scratch);
    sq_store_close(io->store);
    memset(io, 0, sizeof *io);
}

sq_status sq_job_model_open(sq_job_storage *io, const char *uri, sq_job_model *model)
{
    memset(model, 0, sizeof *model);
    const char *scratch;
    SQ_TRY(scratch_for(io, uri, &scratch));
    SQ_TRY(sq_stage_model_files(io->store, uri, scratch, &model->local_dir));
    char *config_path = sq_path_join(model->local_dir, "config.json");
    sq_status st = config_path ? sq_model_config_load(&model->cfg, config_path) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    free(config_path);
    if (st != SQ_OK && sq_uri_is_s3(uri))
        sq_fail_context(st, "model %s", uri);
    if (st == SQ_OK)
        st = sq_checkpoint_open_uri(&model->ckpt, io->store, uri, model->local_dir);
    if (st != SQ_OK)
        sq_job_model_close(model);
    return st;
}

void sq_job_model_close(sq_job_model *model)
{
    sq_checkpoint_close(model->ckpt);
    free(model->local_dir);
    memset(model, 0, sizeof *model);
}

sq_status sq_job_stage_data(sq_job_storage *io, const char *uri, char **local_path)
{
    const char *scratch;
    SQ_TRY(scratch_for(io, uri, &scratch));
    return sq_stage_object(io->store, uri, scratch, local_path);
}

sq_status sq_job_output_dir(sq_job_storage *io, const char *uri, char **local_dir)
{
    sq_uri u;
    const char *scratch;
    SQ_TRY(scratch_for(io, uri, &scratch));
    SQ_TRY(sq_uri_parse(&u, uri));
    if (u.kind == SQ_URI_LOCAL)
        *local_dir = strdup(u.path);
    else {
        char hex[SQ_SHA256_HEX_LEN + 1], name[32];
        sq_sha256_hex(uri, strlen(uri), hex);
        snprintf(name, sizeof name, "output-%.16s", hex);
        *local_dir = sq_path_join(scratch, name);
    }
    sq_uri_free(&u);
    return *local_dir ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "%s: out of memory", uri);
}

sq_status sq_job_publish_output(sq_job_storage *io, const char *local_dir, const char *uri)
{
    if (!sq_uri_is_s3(uri))
        return SQ_OK;
    sq_status st = sq_upload_dir(io->store, local_dir, uri);
    return st == SQ_OK ? SQ_OK : sq_fail_context(st, "uploading the checkpoint to %s", uri);
}

/* The metrics of the job's last eval step recorded in the journal, or NULL. */
void sq_job_abort_unfinished_uploads(sq_job_storage *io, const sq_job_spec *spec)
{
    const char *const uris[] = {spec->state_uri, spec->output_uri};
    for (size_t i = 0; i < sizeof(uris) / sizeof(uris[0]); i++) {
        int n = 0;
        if (uris[i] && sq_store_abort_uploads(io->store, uris[i], &n) != SQ_OK) {
            sq_log_info("warning: %s (parts of unfinished uploads, if any, stay billed)", sq_last_error());
            sq_clear_error();
        }
        if (n > 0)
            sq_log_info("%s: aborted %d unfinished multipart upload%s left by an earlier run", uris[i], n,
                        n == 1 ? "" : "s");
    }
}

static json_t *last_eval_metrics(const sq_job_spec *spec, const sq_journal *journal)
{
    json_t *steps = json_object_get(journal->doc, "steps");
    for (int s = spec->n_steps - 1; s >= 0; s--) {
        json_t *result = json_object_get(json_array_get(steps, (size_t)s), "result");
        if (spec->steps[s].kind == SQ_STEP_EVAL && json_is_object(result))
            return result;
    }
    return NULL;
}

/* The kind of the last step that produced a model ("gptq", ...). */
static const char *method_of(const sq_job_spec *spec)
{
    for (int s = spec->n_steps - 1; s >= 0; s--)
        if (spec->steps[s].kind != SQ_STEP_EVAL)
            return sq_step_kind_name(spec->steps[s].kind);
    return "none";
}

sq_status sq_job_push(sq_job_storage *io, const sq_job_spec *spec, sq_journal *journal)
{
    const sq_push_options *push = &spec->push;
    const char *recorded = sq_journal_push_recorded(journal, push->store, push->name, push->version);
    if (recorded) {
        sq_log_info("push to %s as %s/%s: done in the journal (manifest sha256 %.12s...), skipped", push->store,
                    push->name, push->version, recorded);
        return SQ_OK;
    }
    json_t *meta = json_pack("{s:s, s:s}", "source_model", spec->model_uri, "method", method_of(spec));
    json_t *metrics = last_eval_metrics(spec, journal);
    if (meta && metrics)
        json_object_set(meta, "metrics", metrics);
    sq_push_request req = {.name = push->name, .version = push->version, .meta = meta};
    sq_push_result pushed = {0};
    sq_status st = meta ? sq_model_push(io->store, spec->output_uri, push->store, &req, &pushed)
                        : sq_fail(SQ_ERR_NOMEM, "out of memory");
    json_decref(meta);
    if (st != SQ_OK)
        return sq_fail_context(st, "push of %s to %s", spec->output_uri, push->store);
    sq_fault_point("before-push-journal", 0);
    st = sq_journal_record_push(journal, push->store, push->name, push->version, pushed.model_uri,
                                pushed.manifest_sha256);
    if (st == SQ_OK)
        sq_log_info("pushed %s to the model store %s as %s (manifest sha256 %.12s...)", spec->output_uri,
                    push->store, pushed.model_uri, pushed.manifest_sha256);
    sq_push_result_free(&pushed);
    return st;
}
