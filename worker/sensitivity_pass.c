/* sensitivity_pass.c: the first phase of a mixed-precision step (avg_bits; see
 * quant/mixed_precision.h). The bit budget is global and the layer walk of the
 * second phase quantizes layer by layer, so every width is fixed before any layer
 * is quantized: one pass over the unquantized model — on every rank its share of
 * the samples, whatever the parallel mode — collects each layer's input
 * Hessians (exact sums over ranks, so the same on any rank count), measures each
 * linear's error per candidate width (linear k of the job on rank k mod ranks,
 * broadcast), and pushes the samples on; then the allocation. Rank 0 writes the
 * report into the state and records it in the journal before any layer is
 * quantized; a rerun reads it back instead of measuring again. */
#include "worker/calibrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/json_file.h"
#include "core/sha256.h"
#include "worker/fault.h"

#define REPORT_KEY "sensitivity_report"

/* The errors of one layer's linears on their ranks, then on every rank. */
static sq_status layer_sensitivities(calib_state *cs, int layer, const sq_hessian hessians[INPUT_KINDS])
{
    sq_bit_plan *plan = &cs->bit_plan;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int k = layer * SQ_LINEAR_COUNT + i, owner = k % cs->world;
        double *errors = &plan->errors[(size_t)k * plan->n_candidates];
        const sq_linear *lin = &cs->model.layer.linear[i];
        if (owner == cs->rank) {
            sq_status st = sq_linear_sensitivity(lin->weight, hessians[calib_input_of(i)].H, lin->out_features,
                                                 lin->in_features, cs->opt, errors);
            if (st != SQ_OK)
                return sq_fail_context(st, "sensitivity of layer %d %s", layer, sq_linear_name(i));
        }
        SQ_TRY(sq_comm_bcast_host(errors, (size_t)plan->n_candidates * sizeof *errors, owner));
    }
    return SQ_OK;
}

/* Phase one on every rank: the errors of every linear (cs->bit_plan.errors). */
static sq_status measure(calib_state *cs)
{
    const sq_calibration *job = cs->job;
    int nsamples = job->spec->nsamples, layers = job->cfg->num_layers;
    int first = (int)((int64_t)nsamples * cs->rank / cs->world);
    int count = (int)((int64_t)nsamples * (cs->rank + 1) / cs->world) - first;
    bool shared = cs->world > 1;
    float *X = NULL;
    sq_status st = SQ_OK;
    if (count > 0) {
        SQ_TRY(calib_alloc_activations(cs, count, &X));
        SQ_TRY_GOTO(st, calib_embed_samples(cs, job->samples + (size_t)first * cs->seqlen, count, X), done);
    }
    for (int layer = 0; layer < layers && st == SQ_OK; layer++) {
        sq_hessian hessians[INPUT_KINDS];
        SQ_TRY_GOTO(st, sq_layer_weights_load(&cs->model.layer, job->cfg, job->ckpt, layer), done);
        st = calib_layer_hessians(cs, X, count, shared, hessians);
        if (st == SQ_OK)
            st = layer_sensitivities(cs, layer, hessians);
        for (int k = 0; k < INPUT_KINDS; k++)
            sq_hessian_free(&hessians[k]);
        if (st == SQ_OK && count > 0 && layer + 1 < layers)
            st = calib_forward_samples(cs, X, count);
        if (st == SQ_OK && cs->rank == 0)
            sq_log_info("step %d %s: sensitivity of layer %d/%d measured, elapsed %.1fs", job->step,
                        sq_step_kind_name(cs->kind), layer + 1, layers, sq_now_seconds() - cs->started);
    }
done:
    kn_free(X);
    return st;
}

/* Rank 0: the report written into the state, then recorded in the journal. */
static sq_status record_report(calib_state *cs)
{
    char name[64], sha[SQ_SHA256_HEX_LEN + 1];
    snprintf(name, sizeof name, "step%d/" SQ_SENSITIVITY_REPORT, cs->job->step);
    char *path = sq_journal_artifact_path(cs->job->journal, name);
    json_t *report = sq_bit_plan_report(&cs->bit_plan, cs->opt);
    sq_status st = path && report ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    char *slash = path ? strrchr(path, '/') : NULL;
    if (st == SQ_OK && slash) {
        *slash = '\0';
        st = sq_make_dirs(path);
        if (st == SQ_OK)
            st = sq_write_json_file(path, SQ_SENSITIVITY_REPORT, report, JSON_INDENT(1));
        *slash = '/';
    }
    if (st == SQ_OK)
        st = sq_sha256_file(path, sha);
    if (st == SQ_OK)
        st = sq_journal_publish_artifact(cs->job->journal, name);
    if (st == SQ_OK)
        st = sq_journal_record_step_file(cs->job->journal, cs->job->step, REPORT_KEY, name, sha);
    if (st == SQ_OK)
        sq_fault_point("sensitivity-report", 0);
    json_decref(report);
    free(path);
    return st;
}

sq_status sq_read_sensitivity_report(const sq_journal *journal, int step, sq_bit_plan *plan, bool *found)
{
    const char *sha = NULL;
    const char *name = sq_journal_step_file(journal, step, REPORT_KEY, &sha);
    *found = name != NULL;
    if (!name)
        return SQ_OK;
    char *path = NULL;
    SQ_TRY(sq_journal_fetch_artifact(journal, name, sha, &path));
    json_error_t err;
    json_t *report = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    sq_status st = report ? sq_bit_plan_from_report(plan, report, path)
                          : sq_fail(SQ_ERR_FORMAT, "%s: line %d: %s", path, err.line, err.text);
    json_decref(report);
    free(path);
    return st;
}

sq_status calib_plan_bits(calib_state *cs)
{
    if (!cs->opt || cs->opt->avg_bits <= 0)
        return SQ_OK;
    SQ_TRY(sq_bit_plan_alloc(&cs->bit_plan, cs->job->cfg, cs->opt));
    bool found = false;
    sq_status st = cs->rank == 0 ? sq_read_sensitivity_report(cs->job->journal, cs->job->step, &cs->bit_plan, &found)
                                 : SQ_OK;
    if (st == SQ_ERR_MISMATCH) { /* torn or altered: measured again, to the same plan */
        sq_log_info("step %d: the sensitivity report does not match its sha256 in the journal; it is measured "
                    "again", cs->job->step);
        sq_clear_error();
        st = SQ_OK;
        found = false;
    }
    sq_status agreed;
    SQ_TRY(sq_comm_agree(st, &agreed));
    if (agreed != SQ_OK)
        return cs->rank == 0 ? st : sq_fail(agreed, "rank 0 could not read the sensitivity report");
    SQ_TRY(sq_comm_bcast_host(&found, sizeof found, 0));
    if (!found) {
        SQ_TRY(measure(cs));
        SQ_TRY(sq_bit_plan_allocate(&cs->bit_plan, cs->opt->avg_bits));
        st = cs->rank == 0 ? record_report(cs) : SQ_OK;
        SQ_TRY(sq_comm_agree(st, &agreed));
        if (agreed != SQ_OK)
            return cs->rank == 0 ? st : sq_fail(agreed, "rank 0 could not record the sensitivity report");
    }
    SQ_TRY(sq_comm_bcast_host(cs->bit_plan.bits, (size_t)cs->bit_plan.n * sizeof *cs->bit_plan.bits, 0));
    if (cs->rank == 0)
        sq_log_info("step %d %s: mixed precision, %.3f bits per weight on average (budget %g; %.3f with scales "
                    "and zeros)%s", cs->job->step, sq_step_kind_name(cs->kind),
                    sq_bit_plan_average(&cs->bit_plan, cs->opt->group_size, false), cs->opt->avg_bits,
                    sq_bit_plan_average(&cs->bit_plan, cs->opt->group_size, true),
                    found ? ", read from the journal" : "");
    return SQ_OK;
}
