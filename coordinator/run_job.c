/* run_job.c: drive a job's steps on every rank (see run_job.h). */
#include "coordinator/run_job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "coordinator/adapter_merge.h"
#include "coordinator/assemble.h"
#include "coordinator/assemble_while_calibrating.h"
#include "coordinator/calibration_windows.h"
#include "coordinator/job_storage.h"
#include "coordinator/kv_cache_step.h"
#include "coordinator/validate_job.h"
#include "core/fileio.h"
#include "core/log.h"
#include "jobs/journal.h"
#include "jobs/plan.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/corpus.h"
#include "model/forward.h"
#include "model/kv_cache_request.h"
#include "model/perplexity.h"
#include "store/stage.h"
#include "store/uri.h"
#include "kernels/kernels.h"
#include "lora/eval.h"
#include "lora/qlora_step.h"
#include "worker/calibrate.h"
#include "worker/fault.h"

typedef struct {
    const sq_job_spec *spec;
    const sq_comm *comm;
    sq_journal journal; /* rank 0 */
    sq_job_storage io;
    char *model_dir;    /* URI of the model the next step reads */
    char *adapter_dir;  /* a qlora step's adapter (local), applied by the eval steps after it */
    int32_t *samples;   /* the calibration windows (NULL when no step needs them) */
    double step_wall_start, step_cpu_start; /* when this run began the current step */
} job_state;

/* CPU seconds of this process so far, all threads (rank 0's share of a step's work). */
static double process_cpu_seconds(void)
{
    struct timespec t;
    return clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t) == 0 ? (double)t.tv_sec + 1e-9 * (double)t.tv_nsec : 0.0;
}

/* Rank 0 records a finished step with the wall and CPU seconds this run spent on it (a step
 * resumed from the journal counts only its last run). */
static sq_status record_step(job_state *js, int step, json_t *result)
{
    return sq_journal_record_step_timed(&js->journal, step, result, sq_now_seconds() - js->step_wall_start,
                                        process_cpu_seconds() - js->step_cpu_start);
}

/* Rank 0, once a step's output is complete under output_dir: publish it to `output` (an upload for
 * s3://), name it in the step's result and record the step, so the journal never names an output
 * that is not in place. `fault` (or NULL): the fault point the tests arm between the two. */
static sq_status publish_and_record(job_state *js, int step, const char *output_dir, const char *output,
                                    json_t *result, const char *fault)
{
    SQ_TRY(sq_job_publish_output(&js->io, output_dir, output));
    if (fault)
        sq_fault_point(fault, step);
    json_object_set_new(result, "output", json_string(output));
    return record_step(js, step, result);
}

/* Where a model-producing step writes: output_uri for the last one, the job's
 * state for intermediate ones (the next step reads them). */
static sq_status step_output(const job_state *js, int step, char **out)
{
    const sq_job_spec *spec = js->spec;
    for (int later = step + 1; later < spec->n_steps; later++) {
        if (spec->steps[later].kind != SQ_STEP_EVAL) {
            char name[32];
            snprintf(name, sizeof name, "step%d/model", step);
            *out = sq_uri_join(spec->state_uri, name);
            return *out ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
        }
    }
    *out = strdup(spec->output_uri);
    return *out ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
}

/* Every rank learns whether rank 0's part succeeded; the others get a message pointing at rank 0. */
static sq_status agree_with_rank0(const sq_comm *comm, sq_status mine, const char *what)
{
    sq_status worst;
    SQ_TRY(sq_comm_agree(mine, &worst));
    if (mine != SQ_OK)
        return mine;
    if (worst != SQ_OK)
        return sq_fail(worst, "%s failed on another rank (see rank 0's message)", what);
    (void)comm;
    return SQ_OK;
}

/* Rank 0 tokenizes the calibration text with the job's model's tokenizer (every
 * step's model keeps it) and draws the windows; every rank receives them. Done
 * before the journal exists, so that data too short for the windows is refused
 * before anything is written. */
static sq_status calibration_samples(job_state *js, int32_t **samples)
{
    const sq_job_spec *spec = js->spec;
    size_t count = (size_t)spec->nsamples * spec->seqlen;
    *samples = malloc(count * sizeof **samples);
    if (!*samples)
        return sq_fail(SQ_ERR_NOMEM, "cannot hold %zu calibration tokens", count);
    sq_status st = SQ_OK;
    if (js->comm->rank == 0) {
        char *path = NULL;
        int32_t *ids = NULL;
        size_t n = 0;
        sq_job_model source;
        st = sq_job_model_open(&js->io, spec->model_uri, &source);
        if (st == SQ_OK) {
            st = sq_job_stage_data(&js->io, spec->calibration_uri, &path);
            if (st == SQ_OK)
                st = sq_load_corpus(source.local_dir, path, spec->calibration_token_ids, source.cfg.vocab_size, &ids,
                                    &n);
            sq_job_model_close(&source);
        }
        if (st == SQ_OK)
            st = sq_draw_calibration_windows(spec->calibration_uri, ids, n, spec->nsamples, spec->seqlen,
                                             spec->sampling, spec->seed, *samples);
        if (st == SQ_OK)
            sq_log_info("calibration: %d %s windows of %d tokens from %s (%zu tokens, seed %llu)", spec->nsamples,
                        spec->sampling == SQ_SAMPLING_CONSECUTIVE ? "consecutive" : "random", spec->seqlen,
                        spec->calibration_uri, n, (unsigned long long)spec->seed);
        free(ids);
        free(path);
    }
    SQ_TRY(agree_with_rank0(js->comm, st, "reading the calibration data"));
    return sq_comm_bcast_host(*samples, count * sizeof **samples, 0);
}

/* Host memory rank 0 may spend on packed layers kept from calibration for the assembly
 * (a 7B model at 4 bits needs about 3.5 GB; a larger one reads the rest from its artifacts). */
#define PACKED_LAYERS_BUDGET ((size_t)16 << 30)

static sq_status run_calibration_step(job_state *js, int step)
{
    const sq_job_spec *spec = js->spec;
    const bool rank0 = js->comm->rank == 0;
    sq_job_model source;
    sq_packed_layers packed = {0};
    sq_status st = sq_comm_all_ok(sq_job_model_open(&js->io, js->model_dir, &source)); /* every rank reads it */
    if (st != SQ_OK) {
        sq_job_model_close(&source);
        return st;
    }
    const sq_model_config cfg = source.cfg;
    const sq_checkpoint *ckpt = source.ckpt;
    char *output = NULL, *output_dir = NULL;
    json_t *result = NULL;
    sq_early_assembly early = {0};

    sq_plan *plan = calloc(1, sizeof *plan);
    if (!plan) {
        st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        goto done;
    }
    sq_plan_request rq = sq_job_plan_request(spec, js->comm->world_size, cfg.num_layers);
    st = sq_plan_build(plan, &rq);
    if (st == SQ_OK) { /* rank 0 prepares the output, and may start writing it as layers finish */
        sq_status mine = SQ_OK;
        if (rank0) {
            mine = sq_packed_layers_init(&packed, cfg.num_layers, PACKED_LAYERS_BUDGET);
            if (mine == SQ_OK)
                mine = step_output(js, step, &output);
            if (mine == SQ_OK)
                mine = sq_job_output_dir(&js->io, output, &output_dir);
            if (mine == SQ_OK && !(result = json_object()))
                mine = sq_fail(SQ_ERR_NOMEM, "out of memory");
            early = (sq_early_assembly){.journal = &js->journal, .spec = spec, .step = step, .cfg = &cfg,
                                        .source = ckpt, .output_dir = output_dir, .packed = &packed,
                                        .result = result};
            if (mine == SQ_OK)
                mine = sq_early_assembly_start(&early);
        }
        st = agree_with_rank0(js->comm, mine, "preparing the output checkpoint");
    }
    if (st == SQ_OK) {
        sq_calibration job = {.spec = spec,
                              .step = step,
                              .comm = js->comm,
                              .plan = plan,
                              .journal = rank0 ? &js->journal : NULL,
                              .cfg = &cfg,
                              .ckpt = ckpt,
                              .samples = js->samples,
                              .packed = rank0 ? &packed : NULL};
        st = sq_calibrate(&job);
    }
    const sq_status calibrated = st; /* the same on every rank */
    if (rank0) { /* the early assembly ends either way before `packed` goes */
        double started = sq_now_seconds();
        bool streamed = early.running;
        sq_status assembled = sq_early_assembly_finish(&early, st);
        sq_status mine = assembled;
        if (st == SQ_OK && !streamed)
            mine = sq_assemble_checkpoint(&js->journal, spec, step, &cfg, ckpt, output_dir, &packed, result);
        if (st == SQ_OK && mine == SQ_OK)
            mine = publish_and_record(js, step, output_dir, output, result, NULL);
        if (st == SQ_OK && mine == SQ_OK)
            sq_log_info("step %d %s: checkpoint written to %s (%.2fs after the layer loop%s)", step,
                        sq_step_kind_name(spec->steps[step].kind), output, sq_now_seconds() - started,
                        streamed ? "; its shards were written during it" : "");
        st = st == SQ_OK ? mine : assembled; /* a calibration failure keeps its message */
    }
    if (calibrated == SQ_OK) /* every rank learns rank 0's outcome */
        st = agree_with_rank0(js->comm, st, "writing the output checkpoint");
done:
    free(plan);
    json_decref(result);
    free(output);
    free(output_dir);
    sq_packed_layers_free(&packed);
    sq_job_model_close(&source);
    return st;
}

static sq_status write_metrics(const sq_journal *journal, const char *name, json_t *metrics)
{
    char *path = sq_journal_artifact_path(journal, name);
    char *text = json_dumps(metrics, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    sq_status st = path && text ? sq_write_file_atomic(path, text, strlen(text))
                                : sq_fail(SQ_ERR_NOMEM, "%s: cannot serialise metrics", name);
    if (st == SQ_OK)
        st = sq_journal_publish_artifact(journal, name);
    free(text);
    free(path);
    return st;
}

/* eval on rank 0: perplexity of the current model over the step's data. */
static sq_status eval_on_rank0(job_state *js, int step)
{
    const sq_eval_options *ev = &js->spec->steps[step].eval;
    sq_job_model source;
    sq_model model;
    bool model_open = false;
    int32_t *ids = NULL;
    size_t n = 0;
    char *data = NULL, *scales_path = NULL;
    sq_kv_cache_request kv_rq = {.scales = ev->kv_cache_scales, .dtype = ev->kv_cache_dtype,
                                 .kivi_bits = ev->kv_cache_kivi};
    sq_kv_cache kv = {0};
    sq_status st;
    SQ_TRY(sq_job_model_open(&js->io, js->model_dir, &source));
    const sq_model_config cfg = source.cfg;
    SQ_TRY_GOTO(st, sq_job_stage_data(&js->io, ev->data, &data), done);
    SQ_TRY_GOTO(st, sq_load_corpus(source.local_dir, data, ev->token_ids, cfg.vocab_size, &ids, &n), done);
    if (!js->adapter_dir) {
        SQ_TRY_GOTO(st, sq_model_open(&model, &cfg, source.ckpt), done);
        model_open = true;
    }
    sq_perplexity_options opt = {.seqlen = ev->seqlen, .max_windows = ev->max_windows, .kv_cache_bits = ev->kv_cache_bits,
                                 .act_bits = ev->act_bits, .progress_seconds = SQ_PROGRESS_SECONDS};
    sq_perplexity_result r;
    if (js->adapter_dir && (ev->kv_cache_bits || ev->act_bits || sq_kv_cache_requested(&kv_rq)))
        SQ_TRY_GOTO(st, sq_fail(SQ_ERR_UNSUPPORTED, "steps[%d].eval.%s: not supported with an adapter", step,
                                ev->kv_cache_bits ? "kv_cache_bits"
                                : ev->act_bits    ? "act_bits"
                                : ev->kv_cache_kivi ? "kv_cache_kivi"
                                                    : "kv_cache_scales"),
                    done);
    if (sq_kv_cache_requested(&kv_rq)) {
        if (kv_rq.scales && strcmp(kv_rq.scales, "model") != 0) {
            SQ_TRY_GOTO(st, sq_job_stage_data(&js->io, kv_rq.scales, &scales_path), done);
            kv_rq.scales = scales_path;
        }
        SQ_TRY_GOTO(st, sq_kv_cache_open(&kv, &kv_rq, source.local_dir, source.ckpt, &cfg), done);
        opt.kv_cache = &kv;
        kv_rq.scales = ev->kv_cache_scales; /* the metrics name the spec's URI */
    }
    if (js->adapter_dir)
        SQ_TRY_GOTO(st, sq_lora_eval_adapter(js->adapter_dir, &cfg, source.ckpt, ids, n, ev->seqlen, ev->max_windows, &r,
                                             NULL), done);
    else
        SQ_TRY_GOTO(st, sq_perplexity(&model, ids, n, &opt, &r), done);
    sq_log_info("step %d eval: %s on %s: ppl %.4f (nll %.6f, %d windows of %d, %ld tokens)", step, js->model_dir,
                ev->data, r.ppl, r.nll, r.windows, ev->seqlen, r.tokens);
    json_t *metrics = json_pack("{s:s, s:s, s:i, s:i, s:I, s:f, s:f, s:i}", "model", js->model_dir, "data", ev->data,
                                "seqlen", ev->seqlen, "windows", r.windows, "tokens", (json_int_t)r.tokens, "nll",
                                r.nll, "ppl", r.ppl, "kv_cache_bits", ev->kv_cache_bits);
    if (metrics)
        json_object_set_new(metrics, "act_bits", json_integer(ev->act_bits));
    if (sq_kv_cache_requested(&kv_rq))
        sq_kv_cache_request_describe(&kv_rq, &kv, metrics);
    char name[64];
    snprintf(name, sizeof name, "step%d_metrics.json", step);
    st = write_metrics(&js->journal, name, metrics);
    if (st == SQ_OK)
        st = record_step(js, step, metrics);
    json_decref(metrics);
done:
    sq_kv_cache_free(&kv);
    if (model_open)
        sq_model_close(&model);
    sq_job_model_close(&source);
    free(ids);
    free(data);
    free(scales_path);
    return st;
}

/* kv_cache on every rank: static KV scales calibrated on the windows; rank 0 writes the model with them. */
static sq_status run_kv_cache_step(job_state *js, int step)
{
    sq_job_model source;
    SQ_TRY(sq_comm_all_ok(sq_job_model_open(&js->io, js->model_dir, &source)));
    char *output = NULL, *output_dir = NULL;
    json_t *result = json_object();
    sq_status st = result ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (js->comm->rank == 0 && st == SQ_OK)
        st = step_output(js, step, &output);
    if (js->comm->rank == 0 && st == SQ_OK)
        st = sq_job_output_dir(&js->io, output, &output_dir);
    SQ_TRY_GOTO(st, agree_with_rank0(js->comm, st, "preparing the kv_cache output"), done);
    sq_kv_cache_job job = {.spec = js->spec, .step = step, .comm = js->comm, .cfg = &source.cfg,
                           .ckpt = source.ckpt, .samples = js->samples, .output_dir = output_dir, .result = result};
    st = sq_kv_cache_step_run(&job);
    sq_status mine = st;
    if (js->comm->rank == 0 && mine == SQ_OK)
        mine = publish_and_record(js, step, output_dir, output, result, "kv-cache-before-journal");
    if (js->comm->rank == 0 && mine == SQ_OK)
        sq_log_info("step %d kv_cache: model with KV scales written to %s", step, output);
    st = agree_with_rank0(js->comm, mine, "writing the kv_cache output");
done:
    json_decref(result);
    free(output), free(output_dir);
    sq_job_model_close(&source);
    return st;
}

/* qlora on every rank: train an adapter on the current model; rank 0 writes it to the step's output. */
static sq_status run_qlora_step(job_state *js, int step)
{
    const sq_job_spec *spec = js->spec;
    const sq_lora_options *lo = &spec->steps[step].lora;
    sq_job_model source;
    SQ_TRY(sq_job_model_open(&js->io, js->model_dir, &source));
    char *train = NULL, *eval = NULL, *output = NULL, *output_dir = NULL;
    json_t *result = json_object();
    sq_status st = result ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (js->comm->rank == 0) {
        if (st == SQ_OK)
            st = sq_job_stage_data(&js->io, lo->train_data, &train);
        if (st == SQ_OK && lo->eval_data)
            st = sq_job_stage_data(&js->io, lo->eval_data, &eval);
        if (st == SQ_OK)
            st = step_output(js, step, &output);
        if (st == SQ_OK)
            st = sq_job_output_dir(&js->io, output, &output_dir);
    }
    SQ_TRY_GOTO(st, agree_with_rank0(js->comm, st, "staging the training data"), done);
    sq_qlora_job job = {.spec = spec, .step = step, .comm = js->comm,
                        .journal = js->comm->rank == 0 ? &js->journal : NULL, .cfg = &source.cfg,
                        .ckpt = source.ckpt, .base_uri = js->model_dir, .model_dir = source.local_dir,
                        .train_path = train, .eval_path = eval, .output_dir = output_dir, .result = result};
    SQ_TRY_GOTO(st, sq_qlora_run(&job), done);
    sq_status mine = SQ_OK;
    if (js->comm->rank == 0) {
        if (lo->merge)
            mine = sq_adapter_merge_write(output_dir, &source.cfg, source.ckpt);
        if (mine == SQ_OK)
            mine = publish_and_record(js, step, output_dir, output, result, NULL);
        if (mine == SQ_OK)
            sq_log_info("step %d qlora: adapter written to %s", step, output);
    }
    st = agree_with_rank0(js->comm, mine, "writing the adapter");
done:
    json_decref(result);
    free(train), free(eval), free(output), free(output_dir);
    sq_job_model_close(&source);
    return st;
}

/* Refuse, before any work, a job with a step this build cannot run. */
static sq_status check_steps_runnable(const sq_job_spec *spec)
{
    for (int step = 0; step < spec->n_steps; step++) {
        sq_step_kind kind = spec->steps[step].kind;
        if (kind == SQ_STEP_QLORA && sq_uri_is_s3(spec->output_uri) && step + 1 < spec->n_steps)
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: steps[%d]: an eval step after qlora needs a local output_uri "
                           "(run shardq eval --adapter on the pulled adapter)", spec->name, step + 1);
        if (!sq_calibration_runs(kind) && kind != SQ_STEP_EVAL && kind != SQ_STEP_QLORA && kind != SQ_STEP_KV_CACHE)
            return sq_fail(SQ_ERR_UNSUPPORTED, "%s: steps[%d]: %s is not implemented yet", spec->name, step,
                           sq_step_kind_name(kind));
    }
    return SQ_OK;
}

sq_status sq_run_job(const sq_job_spec *spec, const sq_comm *comm)
{
    /* checks every rank makes alike: agreed on, so that they end the job with one message */
    SQ_TRY(sq_comm_all_ok(check_steps_runnable(spec)));
    job_state js = {.spec = spec, .comm = comm};
    sq_status st = sq_comm_all_ok(sq_job_storage_open(&js.io, spec));
    if (st != SQ_OK) {
        sq_job_storage_close(&js.io);
        return st;
    }
    /* refused by validation, or data too short for the windows: no journal, nothing written */
    st = agree_with_rank0(comm, comm->rank == 0 ? sq_validate_job(&js.io, spec, comm->world_size) : SQ_OK,
                          "validating the job");
    bool needs_samples = false;
    for (int step = 0; step < spec->n_steps; step++)
        needs_samples = needs_samples || sq_calibration_needs_samples(&spec->steps[step]) ||
                        spec->steps[step].kind == SQ_STEP_KV_CACHE;
    if (st == SQ_OK && needs_samples)
        st = calibration_samples(&js, &js.samples);
    if (st != SQ_OK) {
        free(js.samples);
        sq_job_storage_close(&js.io);
        return st;
    }
    const char *scratch = NULL;
    if (comm->rank == 0 && sq_uri_is_s3(spec->state_uri))
        st = sq_job_scratch(&js.io, &scratch);
    if (comm->rank == 0 && st == SQ_OK)
        st = sq_journal_open(&js.journal, spec, js.io.store, scratch);
    if (comm->rank == 0 && st == SQ_OK)
        sq_job_abort_unfinished_uploads(&js.io, spec);
    SQ_TRY_GOTO(st, agree_with_rank0(comm, st, "opening the journal"), done);
    js.model_dir = strdup(spec->model_uri);
    if (!js.model_dir)
        SQ_TRY_GOTO(st, sq_fail(SQ_ERR_NOMEM, "out of memory"), done);
    for (int step = 0; step < spec->n_steps && st == SQ_OK; step++) {
        sq_step_kind kind = spec->steps[step].kind;
        bool produces_model = kind != SQ_STEP_EVAL && kind != SQ_STEP_QLORA; /* an adapter is not a model */
        int done_flag = comm->rank == 0 && sq_journal_step_done(&js.journal, step);
        SQ_TRY_GOTO(st, sq_comm_bcast_host(&done_flag, sizeof done_flag, 0), done);
        js.step_wall_start = sq_now_seconds();
        js.step_cpu_start = process_cpu_seconds();
        if (done_flag) {
            if (comm->rank == 0)
                sq_log_info("step %d %s: done in the journal, skipped", step, sq_step_kind_name(kind));
        } else if (sq_calibration_runs(kind)) {
            st = run_calibration_step(&js, step);
        } else if (kind == SQ_STEP_QLORA) {
            st = run_qlora_step(&js, step);
        } else if (kind == SQ_STEP_KV_CACHE) {
            st = run_kv_cache_step(&js, step);
        } else { /* eval: check_steps_runnable let nothing else through */
            sq_status mine = comm->rank == 0 ? eval_on_rank0(&js, step) : SQ_OK;
            st = agree_with_rank0(comm, mine, "eval");
        }
        if (st == SQ_OK && kind == SQ_STEP_QLORA) {
            sq_uri u; /* local (check_steps_runnable): the path of a plain path or file:// URI */
            st = sq_uri_parse(&u, spec->output_uri);
            free(js.adapter_dir);
            js.adapter_dir = st == SQ_OK ? strdup(u.path) : NULL;
            if (st == SQ_OK)
                sq_uri_free(&u);
            if (st == SQ_OK && !js.adapter_dir)
                st = sq_fail(SQ_ERR_NOMEM, "out of memory");
        }
        if (st == SQ_OK && produces_model) {
            free(js.model_dir);
            st = step_output(&js, step, &js.model_dir);
        }
    }
    if (st == SQ_OK && spec->push.store) {
        sq_status mine = comm->rank == 0 ? sq_job_push(&js.io, spec, &js.journal) : SQ_OK;
        st = agree_with_rank0(comm, mine, "pushing to the model store");
    }
    if (st == SQ_OK && comm->rank == 0)
        sq_log_info("job %s: all %d steps done", spec->name, spec->n_steps);
done:
    free(js.model_dir);
    free(js.adapter_dir);
    free(js.samples);
    if (comm->rank == 0) {
        char *message = st != SQ_OK ? strdup(sq_last_error()) : NULL;
        if (sq_journal_release(&js.journal) != SQ_OK) {
            sq_log_info("%s", sq_last_error());
            if (message) /* the run's own failure is the one to report */
                sq_fail(st, "%s", message);
        }
        free(message);
        sq_journal_close(&js.journal);
    }
    sq_job_storage_close(&js.io);
    return st;
}
