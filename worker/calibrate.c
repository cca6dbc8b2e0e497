/* calibrate.c: the layer loop of a gptq, rtn, sparsegpt, wanda or magnitude
 * step in sequential and pipeline mode (see calibrate.h). */
#include "worker/calibrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/sha256.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/layer.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/prune.h"
#include "quant/rtn.h"
#include "quant/sparsegpt.h"
#include "worker/fault.h"
#include "worker/layer_results.h"
#include "worker/signals.h"

#define PIPELINE_TAG 7200

/* Linears that read the same input share one Hessian. */
typedef enum { INPUT_ATTN, INPUT_ATTN_OUT, INPUT_MLP, INPUT_MLP_OUT, INPUT_KINDS } input_kind;

static input_kind input_of(int linear)
{
    switch (linear) {
    case SQ_LINEAR_Q:
    case SQ_LINEAR_K:
    case SQ_LINEAR_V: return INPUT_ATTN;
    case SQ_LINEAR_O: return INPUT_ATTN_OUT;
    case SQ_LINEAR_GATE:
    case SQ_LINEAR_UP: return INPUT_MLP;
    default: return INPUT_MLP_OUT;
    }
}

/* Linears solved together: with true_sequential q,k,v | o | gate,up | down
 * (each group sees the inputs produced by the already-quantized groups before it).
 * Pruning solves all seven on the layer's inputs at once, as the SparseGPT and
 * Wanda references do. */
typedef struct {
    int linears[SQ_LINEAR_COUNT];
    int count;
} linear_group;

static int linear_groups(bool true_sequential, linear_group groups[4])
{
    if (!true_sequential) {
        groups[0].count = SQ_LINEAR_COUNT;
        for (int i = 0; i < SQ_LINEAR_COUNT; i++)
            groups[0].linears[i] = i;
        return 1;
    }
    groups[0] = (linear_group){{SQ_LINEAR_Q, SQ_LINEAR_K, SQ_LINEAR_V}, 3};
    groups[1] = (linear_group){{SQ_LINEAR_O}, 1};
    groups[2] = (linear_group){{SQ_LINEAR_GATE, SQ_LINEAR_UP}, 2};
    groups[3] = (linear_group){{SQ_LINEAR_DOWN}, 1};
    return 4;
}

/* Where the time goes, for the progress log and bench/ (device work is synchronized
 * before each clock reading, so GPU time lands in the phase that queued it). */
typedef struct {
    double load, forward, hessian, solve, write;
} phase_seconds;

static double phase_clock(void)
{
    kn_synchronize();
    return sq_now_seconds();
}

typedef struct {
    const sq_calibration *job;
    const sq_quant_options *opt;     /* gptq, rtn */
    const sq_sparse_options *sparse; /* sparsegpt, wanda, magnitude */
    sq_step_kind kind;
    bool needs_samples;   /* gptq, sparsegpt, wanda: Hessians from calibration activations; rtn, magnitude: weights only */
    bool true_sequential; /* solve the linears group by group (gptq's option) */
    sq_layer_form form;   /* what the step produces: quantized, or pruned dense weights */
    int rank, world;
    int seqlen, hidden, micro;
    sq_model model;     /* embedding and the resident layer's buffers */
    sq_layer_scratch scratch;
    float *tmp;         /* [micro * seqlen, hidden] */
    bool *done;         /* per layer: a verified artifact exists */
    double started;
    phase_seconds phases;
} calib_state;

void sq_calibration_artifact_name(int step, int layer, char *out, size_t size)
{
    snprintf(out, size, "step%d/layer_%03d.safetensors", step, layer);
}

/* ---- statistics ------------------------------------------------------- */

typedef struct {
    sq_hessian *hessians; /* [INPUT_KINDS] */
    bool want[INPUT_KINDS];
    int nseq;
    int last_linear;
    double *seconds; /* time spent accumulating */
} stats_hook;

static int linear_by_name(const char *name)
{
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        if (strcmp(sq_linear_name(i), name) == 0)
            return i;
    return -1;
}

static sq_status collect_stats(void *ctx, const char *linear_name, const float *input, int rows, int in_features)
{
    stats_hook *hook = ctx;
    int linear = linear_by_name(linear_name);
    if (linear < 0)
        return sq_fail(SQ_ERR_ARG, "calibration hook: unknown linear %s", linear_name);
    input_kind kind = input_of(linear);
    bool first_reader = linear == SQ_LINEAR_Q || linear == SQ_LINEAR_O || linear == SQ_LINEAR_GATE ||
                        linear == SQ_LINEAR_DOWN;
    if (hook->want[kind] && first_reader) {
        if (hook->hessians[kind].cols != in_features)
            return sq_fail(SQ_ERR_MISMATCH, "calibration hook: %s input has %d features, Hessian has %d", linear_name,
                           in_features, hook->hessians[kind].cols);
        double t0 = phase_clock();
        SQ_TRY(sq_hessian_add(&hook->hessians[kind], input, rows, hook->nseq));
        *hook->seconds += phase_clock() - t0;
    }
    return linear == hook->last_linear ? SQ_STOPPED : SQ_OK;
}

/* Push nseq sequences of X [nseq*seqlen, hidden] through the resident layer, in place. */
static sq_status forward_samples(calib_state *cs, float *X, int nseq)
{
    for (int s = 0; s < nseq; s += cs->micro) {
        int n = nseq - s < cs->micro ? nseq - s : cs->micro;
        SQ_TRY(sq_layer_forward(&cs->model.layer, &cs->model.cfg, X + (size_t)s * cs->seqlen * cs->hidden, n,
                                cs->seqlen, &cs->scratch, NULL));
    }
    return SQ_OK;
}

/* Accumulate the Hessians a group needs over X (which stays unchanged). */
static sq_status group_hessians(calib_state *cs, const float *X, int nseq, const linear_group *group,
                                sq_hessian hessians[INPUT_KINDS])
{
    stats_hook hook = {.hessians = hessians, .last_linear = group->linears[group->count - 1],
                       .seconds = &cs->phases.hessian};
    for (int i = 0; i < group->count; i++)
        hook.want[input_of(group->linears[i])] = true;
    for (int k = 0; k < INPUT_KINDS; k++) {
        if (!hook.want[k])
            continue;
        int cols = k == INPUT_ATTN_OUT ? cs->model.layer.linear[SQ_LINEAR_O].in_features
                   : k == INPUT_MLP_OUT ? cs->model.layer.linear[SQ_LINEAR_DOWN].in_features
                                        : cs->hidden;
        SQ_TRY(sq_hessian_init(&hessians[k], cols));
    }
    sq_layer_options opt = {.hook = collect_stats, .hook_ctx = &hook};
    for (int s = 0; s < nseq; s += cs->micro) {
        int n = nseq - s < cs->micro ? nseq - s : cs->micro;
        size_t bytes = (size_t)n * cs->seqlen * cs->hidden * sizeof(float);
        SQ_TRY(kn_copy(cs->tmp, X + (size_t)s * cs->seqlen * cs->hidden, bytes));
        hook.nseq = n;
        sq_status st = sq_layer_forward(&cs->model.layer, &cs->model.cfg, cs->tmp, n, cs->seqlen, &cs->scratch, &opt);
        if (st != SQ_OK && st != SQ_STOPPED)
            return st;
    }
    return SQ_OK;
}

/* The dtype the output checkpoint keeps a pruned linear in: the source tensor's. */
static sq_status dense_dtype(const calib_state *cs, int layer, int linear, sq_dtype *dtype)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, sq_linear_name(linear));
    const sq_st_tensor *t = sq_checkpoint_find(cs->job->ckpt, name);
    if (!t)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no tensor %s", sq_checkpoint_dir(cs->job->ckpt), name);
    *dtype = t->dtype;
    return SQ_OK;
}

/* A device copy of a finished Hessian (the solvers consume theirs). */
static sq_status hessian_copy(const sq_hessian *h, float **H)
{
    size_t hbytes = (size_t)h->cols * h->cols * sizeof(float);
    SQ_TRY(kn_alloc((void **)H, hbytes));
    return kn_copy(*H, h->H, hbytes);
}

/* Run the step's solver on W (a device copy of the linear's weights), filling `out`'s linear. */
static sq_status solve_into(calib_state *cs, int layer, int linear, float *W, const sq_hessian *h,
                            sq_layer_results *out)
{
    const sq_linear *lin = &cs->model.layer.linear[linear];
    int rows = lin->out_features, cols = lin->in_features;
    sq_quant_result *res = &out->linear[linear];
    float *H = NULL;
    sq_status st = SQ_OK;
    switch (cs->kind) {
    case SQ_STEP_GPTQ:
        SQ_TRY_GOTO(st, hessian_copy(h, &H), done);
        st = sq_gptq_solve(W, H, rows, cols, cs->opt, res);
        break;
    case SQ_STEP_RTN: st = sq_rtn_quantize(W, rows, cols, cs->opt, res); break;
    case SQ_STEP_SPARSEGPT:
        SQ_TRY_GOTO(st, hessian_copy(h, &H), done);
        st = sq_sparsegpt_solve(W, H, rows, cols, cs->sparse, cs->sparse->bits > 0 ? res : NULL);
        break;
    case SQ_STEP_WANDA: st = sq_wanda_prune(W, h->H, rows, cols, cs->sparse); break;
    case SQ_STEP_MAGNITUDE: st = sq_magnitude_prune(W, rows, cols, cs->sparse); break;
    default: st = sq_fail(SQ_ERR_UNSUPPORTED, "calibration cannot run %s", sq_step_kind_name(cs->kind)); break;
    }
    if (st == SQ_OK && out->form == SQ_LAYER_DENSE) {
        sq_dtype dtype = SQ_DTYPE_F32;
        SQ_TRY_GOTO(st, dense_dtype(cs, layer, linear, &dtype), done);
        st = sq_dense_weights_from_device(&out->dense[linear], W, rows, cols, dtype);
    }
done:
    kn_free(H);
    return st;
}

/* Solve one linear of the resident layer on this rank (its weights stay untouched). */
static sq_status solve_linear(calib_state *cs, int layer, int linear, const sq_hessian *h, sq_layer_results *out)
{
    sq_linear *lin = &cs->model.layer.linear[linear];
    size_t wbytes = (size_t)lin->out_features * lin->in_features * sizeof(float);
    float *W = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&W, wbytes), done);
    SQ_TRY_GOTO(st, kn_copy(W, lin->weight, wbytes), done);
    st = solve_into(cs, layer, linear, W, h, out);
    if (st != SQ_OK)
        sq_fail_context(st, "layer %d %s", layer, sq_linear_name(linear));
done:
    kn_free(W);
    return st;
}

/* Quantize or prune the resident layer. shared: samples are split over ranks
 * (Hessians summed, solves dealt out, results broadcast); otherwise this rank
 * does it all. On return `out` holds all seven results and the layer computes with them. */
static sq_status quantize_layer(calib_state *cs, int layer, const float *X, int nseq, bool shared,
                                sq_layer_results *out)
{
    linear_group groups[4];
    int ngroups = linear_groups(cs->true_sequential, groups);
    out->form = cs->form;
    sq_status st = SQ_OK;
    for (int g = 0; g < ngroups && st == SQ_OK; g++) {
        sq_hessian hessians[INPUT_KINDS];
        memset(hessians, 0, sizeof hessians);
        if (cs->needs_samples) {
            double t0 = phase_clock(), hessian_before = cs->phases.hessian;
            st = group_hessians(cs, X, nseq, &groups[g], hessians);
            cs->phases.forward += phase_clock() - t0 - (cs->phases.hessian - hessian_before);
            SQ_TRY_GOTO(st, st, group_done);
            t0 = phase_clock();
            for (int k = 0; k < INPUT_KINDS; k++) {
                if (!hessians[k].sum)
                    continue;
                if (shared)
                    SQ_TRY_GOTO(st, sq_comm_allreduce_sum_f64(hessians[k].sum, (size_t)hessians[k].cols * hessians[k].cols),
                                group_done);
                SQ_TRY_GOTO(st, sq_hessian_finish(&hessians[k], shared ? cs->job->spec->nsamples : nseq), group_done);
            }
            cs->phases.hessian += phase_clock() - t0;
        }
        double solve_start = phase_clock();
        for (int i = 0; i < groups[g].count; i++) {
            int linear = groups[g].linears[i];
            int owner = shared ? sq_plan_solve_owner(cs->job->plan, layer, linear) : cs->rank;
            if (owner == cs->rank)
                SQ_TRY_GOTO(st, solve_linear(cs, layer, linear, &hessians[input_of(linear)], out), group_done);
        }
        for (int i = 0; i < groups[g].count; i++) {
            int linear = groups[g].linears[i];
            if (shared)
                SQ_TRY_GOTO(st,
                            sq_layer_result_bcast_linear(out, linear,
                                                         sq_plan_solve_owner(cs->job->plan, layer, linear), cs->rank),
                            group_done);
            SQ_TRY_GOTO(st, sq_layer_result_install_linear(out, linear, &cs->model.layer.linear[linear]),
                        group_done);
        }
        cs->phases.solve += phase_clock() - solve_start;
    group_done:
        for (int k = 0; k < INPUT_KINDS; k++)
            sq_hessian_free(&hessians[k]);
    }
    return st;
}

/* ---- artifacts and the journal (rank 0) -------------------------------- */

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
    if (sq_layer_results_write(results, layer, torn) == SQ_OK) {
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

/* Write a layer's artifact, then record it: the journal never names bytes that are not durable. */
static sq_status save_layer(calib_state *cs, int layer, const sq_layer_results *results)
{
    char name[64], sha[SQ_SHA256_HEX_LEN + 1];
    sq_calibration_artifact_name(cs->job->step, layer, name, sizeof name);
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
        st = sq_layer_results_write(results, layer, path);
    if (st == SQ_OK)
        st = sq_sha256_file(path, sha);
    if (st == SQ_OK)
        st = sq_journal_publish_artifact(cs->job->journal, name);
    free(path);
    SQ_TRY(st);
    sq_fault_point("before-journal", layer);
    SQ_TRY(sq_journal_record_layer(cs->job->journal, cs->job->step, layer, name, sha));
    sq_fault_point("after-journal", layer);
    return cs->sparse ? log_layer_sparsity(cs, layer, results) : SQ_OK;
}

static sq_status load_layer(calib_state *cs, int layer, sq_layer_results *results)
{
    char *path;
    SQ_TRY(artifact_path(cs, layer, &path));
    sq_status st = sq_layer_results_read(results, layer, path, cs->job->cfg);
    free(path);
    return st;
}

/* Rank 0: which layers have an artifact whose bytes still match the journal.
 * From the first one that does not, the journal forgets the rest. */
static sq_status find_done_layers(calib_state *cs)
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

/* ---- shared helpers --------------------------------------------------- */

static void log_progress(calib_state *cs, int finished, int total, int layer, bool replayed)
{
    double elapsed = sq_now_seconds() - cs->started;
    double eta = finished > 0 ? elapsed / finished * (total - finished) : 0.0;
    sq_log_info("step %d %s: layer %d/%d %s, elapsed %.1fs, ETA %.1fs", cs->job->step, sq_step_kind_name(cs->kind),
                layer + 1, total,
                replayed ? "replayed from the journal" : cs->sparse ? "pruned" : "quantized", elapsed, eta);
}

static sq_status check_stop(int layer)
{
    sq_fault_layer_delay();
    sq_status worst;
    SQ_TRY(sq_comm_agree(sq_stop_requested() ? SQ_ERR_INTERRUPTED : SQ_OK, &worst));
    if (worst == SQ_ERR_INTERRUPTED)
        return sq_fail(SQ_ERR_INTERRUPTED,
                       "stopped by a signal after layer %d; the journal is consistent: run the same command to resume",
                       layer);
    return SQ_OK;
}

/* Embed nseq sequences of token ids (host) into X [nseq*seqlen, hidden]. */
static sq_status embed_samples(calib_state *cs, const int32_t *ids, int nseq, float *X)
{
    size_t n = (size_t)nseq * cs->seqlen;
    int32_t *dev_ids;
    SQ_TRY(kn_alloc((void **)&dev_ids, n * sizeof(int32_t)));
    sq_status st = kn_upload(dev_ids, ids, n * sizeof(int32_t));
    if (st == SQ_OK)
        st = kn_embedding(X, cs->model.embed, dev_ids, (int)n, cs->hidden, cs->model.cfg.vocab_size);
    kn_free(dev_ids);
    return st;
}

static sq_status alloc_activations(calib_state *cs, int nseq, float **X)
{
    return kn_alloc((void **)X, (size_t)nseq * cs->seqlen * cs->hidden * sizeof(float));
}

/* ---- sequential mode --------------------------------------------------- */

static sq_status run_sequential(calib_state *cs)
{
    const sq_calibration *job = cs->job;
    sq_range mine = job->plan->samples[cs->rank];
    int layers = job->cfg->num_layers;
    float *X = NULL;
    sq_status st = SQ_OK;
    if (cs->needs_samples) {
        SQ_TRY(alloc_activations(cs, mine.count, &X));
        SQ_TRY_GOTO(st, embed_samples(cs, job->samples + (size_t)mine.first * cs->seqlen, mine.count, X), done);
    }
    for (int layer = 0; layer < layers; layer++) {
        sq_layer_results results;
        memset(&results, 0, sizeof results);
        double t0 = phase_clock();
        SQ_TRY_GOTO(st, sq_layer_weights_load(&cs->model.layer, job->cfg, job->ckpt, layer), done);
        cs->phases.load += phase_clock() - t0;
        if (cs->done[layer]) {
            if (cs->rank == 0)
                st = load_layer(cs, layer, &results);
            sq_status agreed;
            SQ_TRY_GOTO(st, sq_comm_agree(st, &agreed), layer_done);
            if (agreed != SQ_OK && st == SQ_OK)
                st = sq_fail(agreed, "rank 0 could not read the artifact of layer %d", layer);
            SQ_TRY_GOTO(st, st, layer_done);
            SQ_TRY_GOTO(st, sq_layer_results_bcast(&results, 0, cs->rank), layer_done);
            SQ_TRY_GOTO(st, sq_layer_results_install(&results, &cs->model.layer), layer_done);
        } else {
            SQ_TRY_GOTO(st, quantize_layer(cs, layer, X, mine.count, true, &results), layer_done);
            t0 = phase_clock();
            if (cs->rank == 0)
                SQ_TRY_GOTO(st, save_layer(cs, layer, &results), layer_done);
            cs->phases.write += phase_clock() - t0;
        }
        t0 = phase_clock();
        if (cs->needs_samples && layer + 1 < layers)
            SQ_TRY_GOTO(st, forward_samples(cs, X, mine.count), layer_done);
        cs->phases.forward += phase_clock() - t0;
        if (cs->rank == 0)
            log_progress(cs, layer + 1, layers, layer, cs->done[layer]);
    layer_done:
        sq_layer_results_free(&results);
        if (st == SQ_OK)
            st = check_stop(layer);
        if (st != SQ_OK)
            break;
    }
done:
    kn_free(X);
    return st;
}

/* ---- pipeline mode ----------------------------------------------------- */

/* The layers of one block, resident together for the unquantized streaming pass. */
static sq_status load_block(calib_state *cs, sq_range block, sq_layer_weights *weights)
{
    for (int i = 0; i < block.count; i++) {
        SQ_TRY(sq_layer_weights_alloc(&weights[i], cs->job->cfg));
        SQ_TRY(sq_layer_weights_load(&weights[i], cs->job->cfg, cs->job->ckpt, block.first + i));
    }
    return SQ_OK;
}

/* Phase 1: stream all samples through the unquantized blocks, micro-batch by
 * micro-batch, rank to rank, so that every block's owner holds the block's input. */
static sq_status stream_block_inputs(calib_state *cs, float **inputs)
{
    const sq_plan *plan = cs->job->plan;
    int nseq = cs->job->spec->nsamples, B = plan->num_blocks;
    size_t seq_floats = (size_t)cs->seqlen * cs->hidden;
    sq_status st = SQ_OK;
    for (int b = 0; b < B && st == SQ_OK; b++) {
        if (sq_plan_block_rank(plan, b) != cs->rank)
            continue;
        if (!inputs[b])
            SQ_TRY(alloc_activations(cs, nseq, &inputs[b]));
        int prev = b > 0 ? sq_plan_block_rank(plan, b - 1) : -1;
        int next = b + 1 < B ? sq_plan_block_rank(plan, b + 1) : -1;
        if (next == cs->rank && !inputs[b + 1])
            SQ_TRY(alloc_activations(cs, nseq, &inputs[b + 1]));
        sq_layer_weights *weights = calloc((size_t)plan->blocks[b].count, sizeof *weights);
        if (!weights)
            return sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
        if (next >= 0)
            st = load_block(cs, plan->blocks[b], weights);
        for (int s = 0; s < nseq && st == SQ_OK; s += cs->micro) {
            int n = nseq - s < cs->micro ? nseq - s : cs->micro;
            float *chunk = inputs[b] + (size_t)s * seq_floats;
            size_t bytes = (size_t)n * seq_floats * sizeof(float);
            if (b == 0)
                st = embed_samples(cs, cs->job->samples + (size_t)s * cs->seqlen, n, chunk);
            else if (prev != cs->rank)
                st = sq_comm_recv_device(chunk, bytes, prev, PIPELINE_TAG + b);
            if (st != SQ_OK || next < 0)
                continue;
            st = kn_copy(cs->tmp, chunk, bytes);
            for (int i = 0; i < plan->blocks[b].count && st == SQ_OK; i++)
                st = sq_layer_forward(&weights[i], cs->job->cfg, cs->tmp, n, cs->seqlen, &cs->scratch, NULL);
            if (st == SQ_OK)
                st = next == cs->rank ? kn_copy(inputs[b + 1] + (size_t)s * seq_floats, cs->tmp, bytes)
                                      : sq_comm_send_device(cs->tmp, bytes, next, PIPELINE_TAG + b + 1);
        }
        for (int i = 0; i < plan->blocks[b].count; i++)
            sq_layer_weights_free(&weights[i]);
        free(weights);
    }
    return st;
}

/* The layer a rank works on in slot `slot` of round `round`, or -1. */
static int slot_layer(const sq_plan *plan, int round, int rank, int slot)
{
    int b = round * plan->world_size + rank;
    if (b >= plan->num_blocks || slot >= plan->blocks[b].count)
        return -1;
    return plan->blocks[b].first + slot;
}

/* Phase 2: every rank quantizes its blocks on all samples; ranks move in lock
 * step, one layer per slot, so that rank 0 can hand out replayed layers and
 * record finished ones after each slot. */
static sq_status quantize_blocks(calib_state *cs, float **inputs)
{
    const sq_plan *plan = cs->job->plan;
    int nseq = cs->job->spec->nsamples, B = plan->num_blocks, world = cs->world;
    int rounds = (B + world - 1) / world, finished = 0;
    sq_status st = SQ_OK;
    for (int round = 0; round < rounds && st == SQ_OK; round++) {
        int slots = 0;
        for (int r = 0; r < world; r++) {
            int b = round * world + r;
            if (b < B && plan->blocks[b].count > slots)
                slots = plan->blocks[b].count;
        }
        float *X = round * world + cs->rank < B ? inputs[round * world + cs->rank] : NULL;
        for (int slot = 0; slot < slots && st == SQ_OK; slot++) {
            int layer = slot_layer(plan, round, cs->rank, slot);
            sq_layer_results results;
            memset(&results, 0, sizeof results);
            /* rank 0 hands out the layers being replayed */
            if (cs->rank == 0) {
                for (int r = 1; r < world && st == SQ_OK; r++) {
                    int other = slot_layer(plan, round, r, slot);
                    if (other < 0 || !cs->done[other])
                        continue;
                    sq_layer_results replay;
                    st = load_layer(cs, other, &replay);
                    if (st == SQ_OK)
                        st = sq_layer_results_send(&replay, r);
                    sq_layer_results_free(&replay);
                }
                if (st == SQ_OK && layer >= 0 && cs->done[layer])
                    st = load_layer(cs, layer, &results);
            } else if (layer >= 0 && cs->done[layer]) {
                st = sq_layer_results_recv(&results, 0);
            }
            if (st == SQ_OK && layer >= 0) {
                st = sq_layer_weights_load(&cs->model.layer, cs->job->cfg, cs->job->ckpt, layer);
                if (st == SQ_OK)
                    st = cs->done[layer] ? sq_layer_results_install(&results, &cs->model.layer)
                                         : quantize_layer(cs, layer, X, nseq, false, &results);
                bool last_of_block = layer + 1 == plan->blocks[sq_plan_block_of_layer(plan, layer)].first +
                                                       plan->blocks[sq_plan_block_of_layer(plan, layer)].count;
                if (st == SQ_OK && cs->needs_samples && !last_of_block)
                    st = forward_samples(cs, X, nseq);
            }
            /* finished layers go to rank 0, which records them */
            if (st == SQ_OK && cs->rank != 0 && layer >= 0 && !cs->done[layer])
                st = sq_layer_results_send(&results, 0);
            if (st == SQ_OK && cs->rank == 0) {
                for (int r = 0; r < world && st == SQ_OK; r++) {
                    int l = slot_layer(plan, round, r, slot);
                    if (l < 0)
                        continue;
                    finished++;
                    if (!cs->done[l]) {
                        sq_layer_results theirs;
                        memset(&theirs, 0, sizeof theirs);
                        st = r == 0 ? SQ_OK : sq_layer_results_recv(&theirs, r);
                        if (st == SQ_OK)
                            st = save_layer(cs, l, r == 0 ? &results : &theirs);
                        sq_layer_results_free(&theirs);
                    }
                    if (st == SQ_OK)
                        log_progress(cs, finished, cs->job->cfg->num_layers, l, cs->done[l]);
                }
            }
            sq_layer_results_free(&results);
            if (st == SQ_OK)
                st = check_stop(layer);
        }
    }
    return st;
}

static sq_status run_pipeline(calib_state *cs)
{
    int B = cs->job->plan->num_blocks;
    float **inputs = calloc((size_t)B, sizeof *inputs);
    if (!inputs)
        return sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
    double t0 = phase_clock();
    sq_status st = cs->needs_samples ? stream_block_inputs(cs, inputs) : SQ_OK;
    cs->phases.forward += phase_clock() - t0; /* the streaming pass, its weight loads included */
    if (st == SQ_OK)
        st = quantize_blocks(cs, inputs);
    for (int b = 0; b < B; b++)
        kn_free(inputs[b]);
    free(inputs);
    return st;
}

/* ---- entry ------------------------------------------------------------- */

bool sq_calibration_runs(sq_step_kind kind)
{
    return kind == SQ_STEP_GPTQ || kind == SQ_STEP_RTN || kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA ||
           kind == SQ_STEP_MAGNITUDE;
}

bool sq_calibration_needs_samples(sq_step_kind kind)
{
    return kind == SQ_STEP_GPTQ || kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA;
}

/* The step's options against this model's linears (what the spec could not know). */
static sq_status check_step_options(const calib_state *cs)
{
    const sq_calibration *job = cs->job;
    const char *kind = sq_step_kind_name(cs->kind);
    sq_quant_options joint;
    const sq_quant_options *quant = cs->opt;
    if (cs->sparse && cs->sparse->bits > 0) {
        joint = sq_sparse_joint_quant_options(cs->sparse);
        quant = &joint;
    }
    int m = cs->sparse ? cs->sparse->prune_m : 0;
    if (cs->kind == SQ_STEP_SPARSEGPT && m > 0 && cs->sparse->block_size % m != 0)
        return sq_fail(SQ_ERR_SPEC, "steps[%d].sparsegpt.block_size: %d is not a multiple of the pattern's %d",
                       job->step, cs->sparse->block_size, m);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int in = i == SQ_LINEAR_O ? job->cfg->num_heads * job->cfg->head_dim
                 : i == SQ_LINEAR_DOWN ? job->cfg->intermediate_size
                                       : job->cfg->hidden_size;
        if (m > 0 && in % m != 0)
            return sq_fail(SQ_ERR_SPEC, "steps[%d].%s.pattern: %d:%d does not divide %s's %d inputs", job->step, kind,
                           cs->sparse->prune_n, m, sq_linear_name(i), in);
        if (!quant)
            continue;
        SQ_TRY(sq_quant_options_check(quant, in, sq_linear_name(i)));
    }
    return SQ_OK;
}

sq_status sq_calibrate(const sq_calibration *job)
{
    calib_state cs;
    memset(&cs, 0, sizeof cs);
    cs.job = job;
    const sq_step *step = &job->spec->steps[job->step];
    cs.kind = step->kind;
    if (!sq_calibration_runs(cs.kind))
        return sq_fail(SQ_ERR_UNSUPPORTED,
                       "steps[%d]: calibration runs gptq, rtn, sparsegpt, wanda and magnitude steps, not %s",
                       job->step, sq_step_kind_name(cs.kind));
    bool pruning = cs.kind != SQ_STEP_GPTQ && cs.kind != SQ_STEP_RTN;
    cs.opt = pruning ? NULL : &step->quant;
    cs.sparse = pruning ? &step->sparse : NULL;
    cs.true_sequential = !pruning && step->quant.true_sequential;
    cs.form = pruning && !(cs.kind == SQ_STEP_SPARSEGPT && step->sparse.bits > 0) ? SQ_LAYER_DENSE
                                                                                  : SQ_LAYER_QUANTIZED;
    cs.needs_samples = sq_calibration_needs_samples(cs.kind);
    cs.rank = job->comm->rank;
    cs.world = job->comm->world_size;
    cs.seqlen = job->spec->seqlen;
    cs.hidden = job->cfg->hidden_size;
    cs.micro = job->spec->micro_batch > 0 ? job->spec->micro_batch : 1;
    cs.started = sq_now_seconds();
    SQ_TRY(check_step_options(&cs));

    sq_status st;
    cs.done = calloc((size_t)job->cfg->num_layers, sizeof *cs.done);
    if (!cs.done)
        return sq_fail(SQ_ERR_NOMEM, "calibration: out of memory");
    SQ_TRY_GOTO(st, sq_model_open(&cs.model, job->cfg, job->ckpt), done);
    SQ_TRY_GOTO(st, sq_layer_scratch_alloc(&cs.scratch, job->cfg, cs.micro * cs.seqlen), done);
    SQ_TRY_GOTO(st, alloc_activations(&cs, cs.micro, &cs.tmp), done);
    if (cs.rank == 0)
        st = find_done_layers(&cs);
    sq_status agreed;
    SQ_TRY_GOTO(st, sq_comm_agree(st, &agreed), done);
    if (agreed != SQ_OK) {
        st = cs.rank == 0 ? st : sq_fail(agreed, "rank 0 could not read the journal's artifacts");
        goto done;
    }
    SQ_TRY_GOTO(st, sq_comm_bcast_host(cs.done, (size_t)job->cfg->num_layers * sizeof *cs.done, 0), done);
    st = job->spec->mode == SQ_PARALLEL_PIPELINE ? run_pipeline(&cs) : run_sequential(&cs);
    if (st == SQ_OK && cs.rank == 0)
        sq_log_info("step %d %s phases (rank 0): load %.2fs, forward %.2fs, hessian %.2fs, solve %.2fs, write %.2fs",
                    job->step, sq_step_kind_name(cs.kind), cs.phases.load, cs.phases.forward, cs.phases.hessian,
                    cs.phases.solve, cs.phases.write);
done:
    kn_free(cs.tmp);
    sq_layer_scratch_free(&cs.scratch);
    sq_model_close(&cs.model);
    free(cs.done);
    return st;
}
