/* kv_cache_step.c: calibration and output of the kv_cache step (see kv_cache_step.h). */
#include "coordinator/kv_cache_step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/assemble_dense.h"
#include "core/fileio.h"
#include "core/json_file.h"
#include "core/log.h"
#include "kernels/kernels.h"
#include "model/checkpoint_files.h"
#include "model/forward.h"
#include "model/kv_cache.h"
#include "model/perplexity.h"

#define KV_TAG 7301 /* MPI tag of the maxima sent to rank 0 */

/* This rank's windows through the model, the per-head maxima into k and v (host, [L*H] each). */
static sq_status observe_windows(const sq_kv_cache_job *job, float *k, float *v)
{
    const sq_job_spec *spec = job->spec;
    const int L = job->cfg->num_layers, H = job->cfg->num_kv_heads;
    const long n = spec->nsamples, R = job->comm->world_size, r = job->comm->rank;
    const int first = (int)(r * n / R), count = (int)((r + 1) * n / R - first);
    sq_kv_cache kv = {0};
    sq_model model = {0};
    SQ_TRY(sq_kv_cache_observe(&kv, L, H));
    sq_status st = SQ_OK;
    if (count > 0) {
        sq_log_info("step %d kv_cache: rank %ld observes windows %d..%d of %ld", job->step, r, first,
                    first + count - 1, n);
        sq_perplexity_options opt = {.seqlen = spec->seqlen, .micro_batch = spec->micro_batch, .kv_cache = &kv,
                                     .progress_seconds = SQ_PROGRESS_SECONDS};
        sq_perplexity_result res;
        st = sq_model_open(&model, job->cfg, job->ckpt);
        if (st == SQ_OK)
            st = sq_perplexity(&model, job->samples + (size_t)first * spec->seqlen, (size_t)count * spec->seqlen,
                               &opt, &res);
        sq_model_close(&model);
    }
    if (st == SQ_OK)
        st = kn_download(k, kv.k_absmax, (size_t)L * H * sizeof(float));
    if (st == SQ_OK)
        st = kn_download(v, kv.v_absmax, (size_t)L * H * sizeof(float));
    sq_kv_cache_free(&kv);
    return st;
}

/* Rank 0 ends with the maxima over all ranks, taken in rank order (a maximum: any order gives these bits). */
static sq_status max_over_ranks(const sq_comm *comm, float *kv, size_t n)
{
    if (comm->rank != 0)
        return sq_comm_send_host(kv, n * sizeof *kv, 0, KV_TAG);
    float *theirs = malloc(n * sizeof *theirs);
    if (!theirs)
        return sq_fail(SQ_ERR_NOMEM, "kv_cache: out of memory");
    sq_status st = SQ_OK;
    for (int r = 1; r < comm->world_size && st == SQ_OK; r++) {
        st = sq_comm_recv_host(theirs, n * sizeof *theirs, r, KV_TAG);
        for (size_t i = 0; i < n && st == SQ_OK; i++)
            kv[i] = theirs[i] > kv[i] ? theirs[i] : kv[i];
    }
    free(theirs);
    return st;
}

/* The input's quantization_config (or a compressed-tensors one with no weight groups) with the scheme. */
static sq_status quantization_config(const sq_checkpoint *ckpt, const sq_kv_scales *scales, json_t **extra)
{
    json_t *config;
    SQ_TRY(sq_checkpoint_load_config_json(sq_checkpoint_local_dir(ckpt), &config));
    json_t *qc = json_object_get(config, "quantization_config");
    qc = json_is_object(qc) ? json_deep_copy(qc)
                            : json_pack("{s:s, s:s, s:s, s:{}, s:[]}", "quant_method", "compressed-tensors", "format",
                                        "dense", "quantization_status", "compressed", "config_groups", "ignore");
    json_decref(config);
    if (!qc)
        return sq_fail(SQ_ERR_NOMEM, "kv_cache: out of memory");
    json_object_set_new(qc, "kv_cache_scheme", sq_kv_cache_scheme(scales));
    *extra = json_pack("{s:o}", "quantization_config", qc);
    return *extra ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "kv_cache: out of memory");
}

static sq_status no_linear(void *ctx, const char *linear, sq_linear_tensors *tensors)
{
    (void)ctx, (void)tensors;
    return sq_fail(SQ_ERR_ARG, "kv_cache: %s: the step replaces no linear", linear);
}

/* The scale tensors: per layer k then v, fp32 [H, 1, 1] (attn_head) or [1] (tensor). */
static sq_status scale_entries(const sq_kv_scales *s, sq_st_entry *entries, char (*names)[96])
{
    const int H = s->num_kv_heads;
    for (int l = 0; l < s->num_layers; l++)
        for (int which = 0; which < 2; which++) {
            int i = 2 * l + which;
            snprintf(names[i], sizeof names[i], "model.layers.%d.self_attn.%s", l, which ? "v_scale" : "k_scale");
            entries[i] = (sq_st_entry){.name = names[i], .dtype = SQ_DTYPE_F32,
                                       .ndim = s->per_head ? 3 : 1, .shape = {s->per_head ? H : 1, 1, 1},
                                       .data = (which ? s->v_scale : s->k_scale) + (size_t)l * H};
        }
    return SQ_OK;
}

static sq_status write_output(const sq_kv_cache_job *job, const sq_kv_scales *scales)
{
    const int n = 2 * scales->num_layers;
    sq_st_entry *entries = calloc((size_t)n, sizeof *entries);
    char (*names)[96] = calloc((size_t)n, sizeof *names);
    json_t *extra = NULL, *doc = sq_kv_scales_json(scales);
    sq_status st = entries && names && doc ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "kv_cache: out of memory");
    if (st == SQ_OK)
        st = sq_make_dirs(job->output_dir);
    if (st == SQ_OK)
        st = sq_write_json_file(job->output_dir, SQ_KV_SCALES_FILE, doc, JSON_INDENT(2));
    if (st == SQ_OK)
        st = quantization_config(job->ckpt, scales, &extra);
    if (st == SQ_OK)
        st = scale_entries(scales, entries, names);
    if (st == SQ_OK) {
        const char *files[] = {SQ_KV_SCALES_FILE};
        sq_dense_checkpoint_request req = {.source = job->ckpt, .get_linear = no_linear, .extra_config = extra,
                                           .extra_files = files, .n_extra_files = 1, .extra_tensors = entries,
                                           .n_extra_tensors = n};
        st = sq_dense_checkpoint_write(&req, job->output_dir);
    }
    if (st == SQ_OK)
        json_object_set_new(job->result, "kv_cache",
                            json_pack("{s:s, s:s, s:s}", "dtype", sq_kv_format_name(scales->format), "strategy",
                                      scales->per_head ? "attn_head" : "tensor", "scales", SQ_KV_SCALES_FILE));
    json_decref(extra);
    json_decref(doc);
    free(entries);
    free(names);
    return st;
}

sq_status sq_kv_cache_step_run(const sq_kv_cache_job *job)
{
    const size_t n = (size_t)job->cfg->num_layers * job->cfg->num_kv_heads;
    float *absmax = malloc(2 * n * sizeof *absmax); /* keys, then values */
    sq_status st = absmax ? observe_windows(job, absmax, absmax + n) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    st = sq_comm_all_ok(st);
    if (st == SQ_OK)
        st = max_over_ranks(job->comm, absmax, 2 * n);
    if (st == SQ_OK && job->comm->rank == 0) {
        const sq_kv_calibration_options *opt = &job->spec->steps[job->step].kv_cache;
        sq_kv_scales scales;
        st = sq_kv_scales_from_absmax(&scales, absmax, absmax + n, job->cfg->num_layers, job->cfg->num_kv_heads,
                                      opt->format, opt->per_head);
        if (st == SQ_OK)
            st = write_output(job, &scales);
        sq_kv_scales_free(&scales);
    }
    free(absmax);
    return st;
}
