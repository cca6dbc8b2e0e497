/* layer_artifacts.c: a calibration step's finished layers as artifacts in the
 * job's state, recorded in the journal (rank 0): save, load, and on resume the
 * check of which recorded artifacts still match (see calibrate.h). */
#include "worker/calibrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/sha256.h"
#include "worker/fault.h"

void sq_calibration_artifact_name(int step, int layer, char *out, size_t size)
{
    snprintf(out, size, "step%d/layer_%03d.safetensors", step, layer);
}

static sq_status artifact_path(const calib_state *cs, int layer, char **path)
{
    char name[64];
    sq_calibration_artifact_name(cs->job->step, layer, name, sizeof name);
    *path = sq_journal_artifact_path(cs->job->journal, name);
    return *path ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
}

/* Leave a torn temporary artifact behind and die, as a kill in the middle of the write would. */
static void die_mid_write(const sq_layer_results *results, int layer, const char *path)
{
    char torn[4200];
    snprintf(torn, sizeof torn, "%s.tmp.%d", path, 0);
    if (sq_layer_results_write(results, layer, torn, NULL) == SQ_OK) {
        uint64_t size = 0;
        if (sq_file_size(torn, &size) == SQ_OK && truncate(torn, (off_t)(size / 2)) != 0)
            perror(torn);
    }
    sq_fault_point("mid-artifact", layer);
}

/* The progress log's line on what a pruning step achieved in a layer. */
static sq_status log_layer_sparsity(const calib_state *cs, int layer, const sq_layer_results *results)
{
    char line[1024];
    int used = snprintf(line, sizeof line, "step %d %s: layer %d sparsity", cs->job->step,
                        sq_step_kind_name(cs->kind), layer);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int64_t zeros;
        SQ_TRY(sq_layer_result_zeros(results, i, &zeros));
        const sq_linear *lin = &cs->model.layer.linear[i];
        double total = (double)lin->out_features * lin->in_features;
        if (used < (int)sizeof line)
            used += snprintf(line + used, sizeof line - (size_t)used, " %s %.4f", sq_linear_name(i), zeros / total);
    }
    sq_log_info("%s", line);
    return SQ_OK;
}

/* Write a layer's artifact file, hashed as it is written (sha, SQ_SHA256_HEX_LEN + 1 chars):
 * what several layers may do at once, each on its own thread. */
static sq_status write_artifact(calib_state *cs, int layer, const sq_layer_results *results, char *sha)
{
    char *path;
    SQ_TRY(artifact_path(cs, layer, &path));
    char *dir = strdup(path);
    sq_status st = dir ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK) {
        *strrchr(dir, '/') = '\0';
        st = sq_make_dirs(dir);
    }
    free(dir);
    if (st == SQ_OK && sq_fault_armed("mid-artifact", layer))
        die_mid_write(results, layer, path);
    if (st == SQ_OK)
        st = sq_layer_results_write(results, layer, path, sha);
    free(path);
    return st;
}

/* Publish a written artifact (s3://) and record it in the journal: one layer at a time, in order. */
static sq_status record_artifact(calib_state *cs, int layer, const sq_layer_results *results, const char *sha)
{
    char name[64];
    sq_calibration_artifact_name(cs->job->step, layer, name, sizeof name);
    SQ_TRY(sq_journal_publish_artifact(cs->job->journal, name));
    sq_fault_point("before-journal", layer);
    SQ_TRY(sq_journal_record_layer(cs->job->journal, cs->job->step, layer, name, sha));
    sq_fault_point("after-journal", layer);
    return cs->sparse ? log_layer_sparsity(cs, layer, results) : SQ_OK;
}

/* Finished layers handed to the background saver, which owns their results. */
struct layer_save {
    calib_state *cs;
    int count;
    int *layers;
    sq_layer_results *results;
};

static void layer_save_free(struct layer_save *save)
{
    if (!save)
        return;
    for (int i = 0; save->results && i < save->count; i++)
        sq_layer_results_free(&save->results[i]);
    free(save->layers), free(save->results), free(save);
}

/* One layer's write_artifact on a thread of its own. */
struct artifact_write {
    calib_state *cs;
    int layer;
    const sq_layer_results *results;
    char sha[SQ_SHA256_HEX_LEN + 1];
};

static sq_status artifact_write_task(void *p)
{
    struct artifact_write *w = p;
    return write_artifact(w->cs, w->layer, w->results, w->sha);
}

/* The artifacts of the batch written and hashed at once (one thread each: the writes, their
 * fsyncs and the hashes overlap), then recorded in the order given, then packed for the
 * assembly: the journal never names bytes that are not durable. */
static sq_status save_task(void *p)
{
    struct layer_save *save = p;
    struct artifact_write *writes = calloc((size_t)save->count, sizeof *writes);
    sq_background_task *threads = calloc((size_t)save->count, sizeof *threads);
    sq_status st = writes && threads ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "calibration: out of memory");
    for (int i = 0; i < save->count && st == SQ_OK; i++) {
        writes[i] = (struct artifact_write){save->cs, save->layers[i], &save->results[i], ""};
        st = sq_background_start(&threads[i], artifact_write_task, &writes[i]);
    }
    for (int i = 0; threads && i < save->count; i++) {
        sq_status written = sq_background_wait(&threads[i]);
        if (st == SQ_OK)
            st = written;
    }
    for (int i = 0; i < save->count && st == SQ_OK; i++) {
        st = record_artifact(save->cs, save->layers[i], &save->results[i], writes[i].sha);
        if (st == SQ_OK && save->cs->job->packed)
            sq_packed_layers_keep(save->cs->job->packed, save->layers[i], &save->results[i]);
        sq_layer_results_free(&save->results[i]);
    }
    free(writes), free(threads);
    return st;
}

sq_status calib_saved(calib_state *cs)
{
    sq_status st = sq_background_wait(&cs->saver);
    layer_save_free(cs->pending);
    cs->pending = NULL;
    return st;
}

sq_status calib_save_layers_in_background(calib_state *cs, int count, const int *layers, sq_layer_results *results)
{
    SQ_TRY(calib_saved(cs));
    struct layer_save *save = malloc(sizeof *save);
    if (save)
        *save = (struct layer_save){.cs = cs, .count = count, .layers = malloc((size_t)count * sizeof *layers),
                                    .results = calloc((size_t)count, sizeof *results)};
    if (!save || !save->layers || !save->results) {
        layer_save_free(save);
        return sq_fail(SQ_ERR_NOMEM, "calibration: out of memory");
    }
    memcpy(save->layers, layers, (size_t)count * sizeof *layers);
    memcpy(save->results, results, (size_t)count * sizeof *results);
    memset(results, 0, (size_t)count * sizeof *results);
    cs->pending = save;
    sq_status st = sq_background_start(&cs->saver, save_task, save);
    if (st != SQ_OK) {
        layer_save_free(save);
        cs->pending = NULL;
    }
    return st;
}

sq_status calib_load_layer(calib_state *cs, int layer, sq_layer_results *results)
{
    char *path;
    SQ_TRY(artifact_path(cs, layer, &path));
    sq_status st = sq_layer_results_read(results, layer, path, cs->job->cfg);
    free(path);
    return st;
}

/* Rank 0: which layers have an artifact whose bytes still match the journal.
 * From the first one that does not, the journal forgets the rest. */
sq_status calib_find_done_layers(calib_state *cs)
{
    int layers = cs->job->cfg->num_layers;
    int bad_from = layers;
    for (int l = 0; l < layers; l++) {
        const char *sha = NULL;
        const char *name = sq_journal_layer_artifact(cs->job->journal, cs->job->step, l, &sha);
        if (!name)
            continue;
        sq_status st = sq_journal_fetch_artifact(cs->job->journal, name, sha, NULL);
        if (st != SQ_OK) {
            sq_log_info("layer %d: artifact %s %s; it and every later layer will be redone", l, name,
                        st == SQ_ERR_MISMATCH ? "does not match its sha256" : "cannot be read");
            sq_clear_error();
            bad_from = l;
            break;
        }
        cs->done[l] = true;
    }
    for (int l = bad_from; l < layers; l++)
        cs->done[l] = false;
    if (bad_from < layers)
        SQ_TRY(sq_journal_truncate_layers(cs->job->journal, cs->job->step, bad_from));
    return SQ_OK;
}
