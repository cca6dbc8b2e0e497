/* calibrate.c: the layer loop of a gptq, rtn, awq, sparsegpt, wanda, magnitude or
 * smoothquant step (see calibrate.h): its entry, and the layer step every
 * schedule runs — statistics (Hessians of the linears' inputs; awq also their
 * mean |x|) -> (awq: search, fold and clip, worker/awq_layer.h) -> solve ->
 * install (smoothquant's own layer step: smooth_layer.c). The schedules are
 * schedule_sequential.c and schedule_pipeline.c; the layer artifacts
 * layer_artifacts.c. */
#include "worker/calibrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/channel_absmean.h"
#include "quant/gptq.h"
#include "quant/hessian.h"
#include "quant/prune.h"
#include "quant/rtn.h"
#include "quant/sparsegpt.h"
#include "worker/awq_layer.h"
#include "worker/fault.h"
#include "worker/signals.h"
#include "worker/stacked_solve.h"

input_kind calib_input_of(int linear)
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

/* ---- statistics ------------------------------------------------------- */

typedef struct {
    sq_hessian *hessians; /* [INPUT_KINDS] */
    sq_channel_absmean *absmeans; /* [INPUT_KINDS], awq only, else NULL */
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
    input_kind kind = calib_input_of(linear);
    bool first_reader = linear == SQ_LINEAR_Q || linear == SQ_LINEAR_O || linear == SQ_LINEAR_GATE ||
                        linear == SQ_LINEAR_DOWN;
    if (hook->want[kind] && first_reader) {
        if (hook->hessians[kind].cols != in_features)
            return sq_fail(SQ_ERR_MISMATCH, "calibration hook: %s input has %d features, Hessian has %d", linear_name,
                           in_features, hook->hessians[kind].cols);
        double t0 = phase_clock();
        SQ_TRY(sq_hessian_add(&hook->hessians[kind], input, rows, hook->nseq));
        if (hook->absmeans)
            SQ_TRY(sq_channel_absmean_add(&hook->absmeans[kind], input, rows, hook->nseq));
        *hook->seconds += phase_clock() - t0;
    }
    return linear == hook->last_linear ? SQ_STOPPED : SQ_OK;
}

/* Push nseq sequences of X [nseq*seqlen, hidden] through the resident layer, in place. */
sq_status calib_forward_samples(calib_state *cs, float *X, int nseq)
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
                                sq_hessian hessians[INPUT_KINDS], sq_channel_absmean *absmeans)
{
    stats_hook hook = {.hessians = hessians, .absmeans = absmeans, .last_linear = group->linears[group->count - 1],
                       .seconds = &cs->phases.hessian};
    for (int i = 0; i < group->count; i++)
        hook.want[calib_input_of(group->linears[i])] = true;
    for (int k = 0; k < INPUT_KINDS; k++) {
        if (!hook.want[k])
            continue;
        int cols = k == INPUT_ATTN_OUT ? cs->model.layer.linear[SQ_LINEAR_O].in_features
                   : k == INPUT_MLP_OUT ? cs->model.layer.linear[SQ_LINEAR_DOWN].in_features
                                        : cs->hidden;
        SQ_TRY(sq_hessian_init(&hessians[k], cols));
        if (absmeans)
            SQ_TRY(sq_channel_absmean_init(&absmeans[k], cols));
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

/* Sum the accumulated Hessians over ranks (when shared) and form H. */
static sq_status finish_hessians(calib_state *cs, sq_hessian hessians[INPUT_KINDS], int nseq, bool shared)
{
    double t0 = phase_clock();
    for (int k = 0; k < INPUT_KINDS; k++) {
        if (!hessians[k].sum)
            continue;
        if (shared)
            SQ_TRY(sq_comm_allreduce_sum_i64(hessians[k].sum, sq_hessian_sum_count(&hessians[k])));
        SQ_TRY(sq_hessian_finish(&hessians[k], shared ? cs->job->spec->nsamples : nseq));
    }
    cs->phases.hessian += phase_clock() - t0;
    return SQ_OK;
}

sq_status calib_layer_hessians(calib_state *cs, const float *X, int nseq, bool shared,
                               sq_hessian hessians[INPUT_KINDS])
{
    linear_group all[4];
    linear_groups(false, all);
    memset(hessians, 0, INPUT_KINDS * sizeof *hessians);
    double t0 = phase_clock(), hessian_before = cs->phases.hessian;
    sq_status st = group_hessians(cs, X, nseq, &all[0], hessians, NULL); /* nseq 0: zero sums */
    cs->phases.forward += phase_clock() - t0 - (cs->phases.hessian - hessian_before);
    if (st == SQ_OK)
        st = finish_hessians(cs, hessians, nseq, shared);
    return st;
}

bool calib_keeps_group_inputs(const calib_state *cs)
{
    return cs->true_sequential && cs->needs_samples;
}

/* Advance X's samples to group g's input, with the groups before it already quantized, and
 * accumulate the Hessian of that input (every linear of a true-sequential group reads it). */
static sq_status kept_group_hessians(calib_state *cs, float *X, int nseq, int g, const linear_group *group,
                                     sq_hessian hessians[INPUT_KINDS])
{
    const float *input;
    double t0 = phase_clock();
    SQ_TRY(sq_group_inputs_reserve(&cs->group_inputs, &cs->model.cfg, nseq * cs->seqlen));
    SQ_TRY(sq_group_inputs_advance(&cs->group_inputs, &cs->model.layer, &cs->model.cfg, (sq_layer_stage_id)g, X, nseq,
                                   cs->seqlen, cs->micro, &cs->scratch, &input));
    double t1 = phase_clock();
    cs->phases.forward += t1 - t0;
    input_kind kind = calib_input_of(group->linears[0]);
    SQ_TRY(sq_hessian_init(&hessians[kind], cs->model.layer.linear[group->linears[0]].in_features));
    SQ_TRY(sq_hessian_add(&hessians[kind], input, nseq * cs->seqlen, nseq));
    cs->phases.hessian += phase_clock() - t1;
    return SQ_OK;
}

/* The options a linear is quantized with: the step's, at its own width under mixed precision. */
static sq_quant_options linear_options(const calib_state *cs, int layer, int linear)
{
    sq_quant_options opt = *cs->opt;
    if (cs->bit_plan.bits)
        opt.bits = cs->bit_plan.bits[layer * SQ_LINEAR_COUNT + linear];
    return opt;
}

sq_status calib_source_dtype(const calib_state *cs, int layer, const char *module, sq_dtype *dtype)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, module);
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

/* The solver that quantizes the layer's linears: awq's `then` (rtn or gptq), else the step's own. */
static sq_step_kind solver_of(const calib_state *cs)
{
    if (cs->kind == SQ_STEP_AWQ)
        return cs->awq->then_gptq ? SQ_STEP_GPTQ : SQ_STEP_RTN;
    return cs->kind;
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
    sq_quant_options rtn = solver_of(cs) == SQ_STEP_RTN ? linear_options(cs, layer, linear) : (sq_quant_options){0};
    switch (solver_of(cs)) { /* gptq: solve_group, stacked */
    case SQ_STEP_RTN: st = sq_rtn_quantize(W, rows, cols, &rtn, res); break;
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
        SQ_TRY_GOTO(st, calib_source_dtype(cs, layer, sq_linear_name(linear), &dtype), done); /* pruned: as stored */
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

/* The linears of `group` solved as one stack with `linear`, in group order: gptq stacks
 * those that read the same input at the same width; other steps solve each alone. */
static int stack_of(const calib_state *cs, int layer, const linear_group *group, int linear,
                    int stack[SQ_LINEAR_COUNT])
{
    if (solver_of(cs) != SQ_STEP_GPTQ) {
        stack[0] = linear;
        return 1;
    }
    int n = 0, bits = linear_options(cs, layer, linear).bits;
    for (int i = 0; i < group->count; i++) {
        int other = group->linears[i];
        if (calib_input_of(other) == calib_input_of(linear) && linear_options(cs, layer, other).bits == bits)
            stack[n++] = other;
    }
    return n;
}

/* The rank that solves `linear` of a group: the owner of its stack's first linear, the
 * same stack whatever the rank count (so a linear gets the same bits on any number of ranks). */
static int solve_owner(const calib_state *cs, int layer, const linear_group *group, int linear, bool shared)
{
    if (!shared)
        return cs->rank;
    int stack[SQ_LINEAR_COUNT];
    stack_of(cs, layer, group, linear, stack);
    return sq_plan_solve_owner(cs->job->plan, layer, stack[0]);
}

/* Solve this rank's stacks of a group (see stack_of, solve_owner). */
static sq_status solve_group(calib_state *cs, int layer, const linear_group *group, const sq_hessian *hessians,
                             bool shared, sq_layer_results *out)
{
    for (int i = 0; i < group->count; i++) {
        int stack[SQ_LINEAR_COUNT], linear = group->linears[i];
        int n = stack_of(cs, layer, group, linear, stack);
        if (stack[0] != linear || solve_owner(cs, layer, group, linear, shared) != cs->rank)
            continue;
        const sq_hessian *h = &hessians[calib_input_of(linear)];
        if (solver_of(cs) == SQ_STEP_GPTQ) {
            sq_quant_options opt = linear_options(cs, layer, linear);
            sq_status st = sq_solve_gptq_stacked(&cs->model.layer, stack, n, h, &opt, out);
            if (st != SQ_OK)
                return sq_fail_context(st, "layer %d %s", layer, sq_linear_name(linear));
            continue;
        }
        SQ_TRY(solve_linear(cs, layer, linear, h, out));
    }
    return SQ_OK;
}

/* awq: the mean |x| of each input summed over the ranks, then the layer's search, fold and clip
 * (worker/awq_layer.h) on every rank alike (the same statistics give the same bits), the
 * Hessians left as those of the scaled inputs for the solves. */
static sq_status awq_fold(calib_state *cs, int layer, int nseq, bool shared, sq_hessian hessians[INPUT_KINDS],
                          sq_channel_absmean absmeans[INPUT_KINDS], sq_layer_results *out)
{
    sq_awq_layer_stats stats;
    int64_t tokens = (int64_t)(shared ? cs->job->spec->nsamples : nseq) * cs->seqlen;
    for (int k = 0; k < INPUT_KINDS; k++) {
        if (shared)
            SQ_TRY(sq_comm_allreduce_sum_i64(absmeans[k].sum, sq_channel_absmean_sum_count(&absmeans[k])));
        SQ_TRY(sq_channel_absmean_finish(&absmeans[k], tokens));
        stats.H[k] = hessians[k].H;
        stats.mean[k] = absmeans[k].mean;
    }
    return sq_awq_layer(&cs->model.layer, &cs->model.cfg, &stats, cs->awq, cs->opt, layer, cs->rank == 0,
                        &out->folded);
}

sq_status calib_quantize_layer(calib_state *cs, int layer, float *X, int nseq, bool shared, sq_layer_results *out)
{
    if (cs->kind == SQ_STEP_SMOOTHQUANT)
        return calib_smooth_layer(cs, layer, X, nseq, shared, out);
    linear_group groups[4];
    int ngroups = linear_groups(cs->true_sequential, groups);
    out->form = cs->form;
    sq_status st = SQ_OK;
    for (int g = 0; g < ngroups && st == SQ_OK; g++) {
        sq_hessian hessians[INPUT_KINDS];
        sq_channel_absmean absmeans[INPUT_KINDS];
        memset(hessians, 0, sizeof hessians);
        memset(absmeans, 0, sizeof absmeans);
        if (calib_keeps_group_inputs(cs)) {
            SQ_TRY_GOTO(st, kept_group_hessians(cs, X, nseq, g, &groups[g], hessians), group_done);
        } else if (cs->needs_samples) {
            double t0 = phase_clock(), hessian_before = cs->phases.hessian;
            st = group_hessians(cs, X, nseq, &groups[g], hessians, cs->awq ? absmeans : NULL);
            cs->phases.forward += phase_clock() - t0 - (cs->phases.hessian - hessian_before);
            SQ_TRY_GOTO(st, st, group_done);
        }
        if (cs->needs_samples)
            SQ_TRY_GOTO(st, finish_hessians(cs, hessians, nseq, shared), group_done);
        double solve_start = phase_clock();
        if (cs->awq)
            SQ_TRY_GOTO(st, awq_fold(cs, layer, nseq, shared, hessians, absmeans, out), group_done);
        SQ_TRY_GOTO(st, solve_group(cs, layer, &groups[g], hessians, shared, out), group_done);
        for (int i = 0; i < groups[g].count; i++) {
            int linear = groups[g].linears[i];
            if (shared)
                SQ_TRY_GOTO(st,
                            sq_layer_result_bcast_linear(out, linear, solve_owner(cs, layer, &groups[g], linear, true),
                                                         cs->rank),
                            group_done);
            SQ_TRY_GOTO(st, sq_layer_result_install_linear(out, linear, &cs->model.layer.linear[linear]),
                        group_done);
        }
        cs->phases.solve += phase_clock() - solve_start;
    group_done:
        for (int k = 0; k < INPUT_KINDS; k++) {
            sq_hessian_free(&hessians[k]);
            sq_channel_absmean_free(&absmeans[k]);
        }
    }
    if (st == SQ_OK && calib_keeps_group_inputs(cs)) {
        const float *none;
        double t0 = phase_clock();
        st = sq_group_inputs_advance(&cs->group_inputs, &cs->model.layer, &cs->model.cfg, SQ_STAGE_OUTPUT, X, nseq,
                                     cs->seqlen, cs->micro, &cs->scratch, &none);
        cs->phases.forward += phase_clock() - t0;
    }
    return st;
}

/* ---- shared by the schedules ------------------------------------------ */

void calib_log_progress(calib_state *cs, int finished, int total, int layer, bool replayed)
{
    double elapsed = sq_now_seconds() - cs->started;
    double eta = finished > 0 ? elapsed / finished * (total - finished) : 0.0;
    sq_log_info("step %d %s: layer %d/%d %s, elapsed %.1fs, ETA %.1fs", cs->job->step, sq_step_kind_name(cs->kind),
                layer + 1, total,
                replayed ? "replayed from the journal" : cs->sparse ? "pruned" : "quantized", elapsed, eta);
}

sq_status calib_check_stop(const calib_state *cs, int finished)
{
    sq_fault_layer_delay();
    sq_status worst;
    SQ_TRY(sq_comm_agree(sq_stop_requested() ? SQ_ERR_INTERRUPTED : SQ_OK, &worst));
    if (worst == SQ_ERR_INTERRUPTED) {
        const char *signal = sq_stop_signal_name();
        return sq_fail(SQ_ERR_INTERRUPTED,
                       "step %d %s: stopped by %s after layer %d/%d; the journal is consistent: run the same command "
                       "to resume",
                       cs->job->step, sq_step_kind_name(cs->kind), signal ? signal : "a signal to another rank",
                       finished, cs->job->cfg->num_layers);
    }
    return SQ_OK;
}

/* Embed nseq sequences of token ids (host) into X [nseq*seqlen, hidden]. */
sq_status calib_embed_samples(calib_state *cs, const int32_t *ids, int nseq, float *X)
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

sq_status calib_alloc_activations(calib_state *cs, int nseq, float **X)
{
    return kn_alloc((void **)X, (size_t)nseq * cs->seqlen * cs->hidden * sizeof(float));
}

/* ---- entry ------------------------------------------------------------- */

bool sq_calibration_runs(sq_step_kind kind)
{
    return kind == SQ_STEP_GPTQ || kind == SQ_STEP_RTN || kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA ||
           kind == SQ_STEP_MAGNITUDE || kind == SQ_STEP_SMOOTHQUANT || kind == SQ_STEP_AWQ;
}

/* Whether the layer loop reads Hessians of calibration activations. */
static bool layers_need_samples(sq_step_kind kind)
{
    return kind == SQ_STEP_GPTQ || kind == SQ_STEP_SPARSEGPT || kind == SQ_STEP_WANDA || kind == SQ_STEP_SMOOTHQUANT ||
           kind == SQ_STEP_AWQ;
}

bool sq_calibration_needs_samples(const sq_step *step)
{
    bool mixed = (step->kind == SQ_STEP_GPTQ || step->kind == SQ_STEP_RTN) && step->quant.avg_bits > 0;
    return layers_need_samples(step->kind) || mixed;
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
                       "steps[%d]: calibration runs gptq, rtn, awq, sparsegpt, wanda, magnitude and smoothquant "
                       "steps, not %s",
                       job->step, sq_step_kind_name(cs.kind));
    bool pruning = cs.kind != SQ_STEP_GPTQ && cs.kind != SQ_STEP_RTN && cs.kind != SQ_STEP_SMOOTHQUANT &&
                   cs.kind != SQ_STEP_AWQ;
    cs.opt = pruning ? NULL : &step->quant;
    cs.sparse = pruning ? &step->sparse : NULL;
    cs.smooth = cs.kind == SQ_STEP_SMOOTHQUANT ? &step->smooth : NULL;
    cs.awq = cs.kind == SQ_STEP_AWQ ? &step->awq : NULL; /* its statistics come from one pass over the layer */
    cs.true_sequential = !pruning && !cs.awq && step->quant.true_sequential;
    cs.form = pruning && !(cs.kind == SQ_STEP_SPARSEGPT && step->sparse.bits > 0) ? SQ_LAYER_DENSE
                                                                                  : SQ_LAYER_QUANTIZED;
    cs.needs_samples = layers_need_samples(cs.kind);
    cs.rank = job->comm->rank;
    cs.world = job->comm->world_size;
    cs.seqlen = job->spec->seqlen;
    cs.hidden = job->cfg->hidden_size;
    cs.micro = job->spec->micro_batch > 0 ? job->spec->micro_batch : 1;
    cs.started = sq_now_seconds();

    sq_status st;
    cs.done = calloc((size_t)job->cfg->num_layers, sizeof *cs.done);
    if (!cs.done)
        return sq_fail(SQ_ERR_NOMEM, "calibration: out of memory");
    SQ_TRY_GOTO(st, sq_model_open(&cs.model, job->cfg, job->ckpt), done);
    SQ_TRY_GOTO(st, sq_layer_scratch_alloc(&cs.scratch, job->cfg, cs.micro * cs.seqlen), done);
    SQ_TRY_GOTO(st, calib_alloc_activations(&cs, cs.micro, &cs.tmp), done);
    if (cs.rank == 0)
        st = calib_find_done_layers(&cs);
    sq_status agreed;
    SQ_TRY_GOTO(st, sq_comm_agree(st, &agreed), done);
    if (agreed != SQ_OK) {
        st = cs.rank == 0 ? st : sq_fail(agreed, "rank 0 could not read the journal's artifacts");
        goto done;
    }
    SQ_TRY_GOTO(st, sq_comm_bcast_host(cs.done, (size_t)job->cfg->num_layers * sizeof *cs.done, 0), done);
    SQ_TRY_GOTO(st, calib_plan_bits(&cs), done);
    double comm_before = sq_comm_seconds();
    st = job->spec->mode == SQ_PARALLEL_PIPELINE ? calib_run_pipeline(&cs) : calib_run_sequential(&cs);
    if (st == SQ_OK) /* every rank's line: the scaling benchmark reads where each one waited */
        sq_log_info("step %d %s phases (rank %d): load %.2fs, forward %.2fs, hessian %.2fs, solve %.2fs, write %.2fs; "
                    "communication %.2fs within them",
                    job->step, sq_step_kind_name(cs.kind), cs.rank, cs.phases.load, cs.phases.forward,
                    cs.phases.hessian, cs.phases.solve, cs.phases.write, sq_comm_seconds() - comm_before);
done:
    kn_free(cs.tmp);
    sq_group_inputs_free(&cs.group_inputs);
    sq_layer_scratch_free(&cs.scratch);
    sq_model_close(&cs.model);
    sq_bit_plan_free(&cs.bit_plan);
    free(cs.done);
    return st;
}
