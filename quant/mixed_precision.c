/* mixed_precision.c: sensitivities, the bit allocation and its report (see mixed_precision.h). */
#include "quant/mixed_precision.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/geometry.h"
#include "model/layer.h"
#include "quant/rtn.h"

sq_status sq_bit_plan_alloc(sq_bit_plan *plan, const sq_model_config *cfg, const sq_quant_options *opt)
{
    memset(plan, 0, sizeof *plan);
    plan->num_layers = cfg->num_layers;
    plan->n = cfg->num_layers * SQ_LINEAR_COUNT;
    plan->n_candidates = opt->n_candidates;
    memcpy(plan->candidate_bits, opt->candidate_bits, sizeof plan->candidate_bits);
    plan->out = calloc((size_t)plan->n, sizeof *plan->out);
    plan->in = calloc((size_t)plan->n, sizeof *plan->in);
    plan->bits = calloc((size_t)plan->n, sizeof *plan->bits);
    plan->errors = calloc((size_t)plan->n * plan->n_candidates, sizeof *plan->errors);
    if (!plan->out || !plan->in || !plan->bits || !plan->errors) {
        sq_bit_plan_free(plan);
        return sq_fail(SQ_ERR_NOMEM, "mixed precision: cannot allocate the plan of %d linears", cfg->num_layers * 7);
    }
    for (int i = 0; i < plan->n; i++)
        sq_linear_shape(cfg, (sq_linear_id)(i % SQ_LINEAR_COUNT), &plan->in[i], &plan->out[i]);
    return SQ_OK;
}

void sq_bit_plan_free(sq_bit_plan *plan)
{
    free(plan->out), free(plan->in), free(plan->bits), free(plan->errors);
    memset(plan, 0, sizeof *plan);
}

void sq_bit_plan_linear_name(int i, char *out, size_t size)
{
    snprintf(out, size, "model.layers.%d.%s", i / SQ_LINEAR_COUNT, sq_linear_name(i % SQ_LINEAR_COUNT));
}

/* ---- sensitivity ---------------------------------------------------------- */

sq_status sq_linear_sensitivity(const float *W, const float *H, int rows, int cols, const sq_quant_options *opt,
                                double *errors)
{
    size_t cells = (size_t)rows * cols;
    float *E = NULL, *EH = NULL;
    double *sum = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&E, cells * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&EH, cells * sizeof(float)), done);
    SQ_TRY_GOTO(st, kn_alloc((void **)&sum, sizeof(double)), done);
    for (int c = 0; c < opt->n_candidates; c++) {
        sq_quant_options at_width = *opt;
        at_width.bits = opt->candidate_bits[c];
        sq_quant_result unused;
        SQ_TRY_GOTO(st, kn_copy(E, W, cells * sizeof(float)), done);
        SQ_TRY_GOTO(st, sq_rtn_quantize(E, rows, cols, &at_width, &unused), done); /* E = Q_b(W) */
        sq_quant_result_free(&unused);
        SQ_TRY_GOTO(st, kn_scale(E, -1.0f, cells), done);
        SQ_TRY_GOTO(st, kn_add_inplace(E, W, cells), done); /* E = W − Q_b(W) */
        SQ_TRY_GOTO(st, kn_gemm(false, false, rows, cols, cols, 1.0f, E, cols, H, cols, 0.0f, EH, cols), done);
        SQ_TRY_GOTO(st, kn_zero(sum, sizeof(double)), done);
        SQ_TRY_GOTO(st, kn_sum_products(sum, E, EH, cells), done);
        SQ_TRY_GOTO(st, kn_download(&errors[c], sum, sizeof(double)), done);
    }
done:
    kn_free(E), kn_free(EH), kn_free(sum);
    return st;
}

/* ---- allocation ----------------------------------------------------------- */

static int64_t params_of(const sq_bit_plan *plan, int i)
{
    return (int64_t)plan->out[i] * plan->in[i];
}

sq_status sq_bit_plan_allocate(sq_bit_plan *plan, double avg_bits)
{
    int nc = plan->n_candidates;
    int *at = calloc((size_t)plan->n, sizeof *at); /* candidate index of each linear */
    if (!at)
        return sq_fail(SQ_ERR_NOMEM, "mixed precision: out of memory");
    int64_t used = 0, total = 0;
    for (int i = 0; i < plan->n; i++) {
        used += plan->candidate_bits[0] * params_of(plan, i);
        total += params_of(plan, i);
    }
    double budget = avg_bits * (double)total;
    for (;;) {
        int best = -1, best_to = 0;
        double best_ratio = 0;
        for (int i = 0; i < plan->n; i++) {
            const double *e = &plan->errors[(size_t)i * nc];
            for (int c = at[i] + 1; c < nc; c++) {
                int64_t extra = (plan->candidate_bits[c] - plan->candidate_bits[at[i]]) * params_of(plan, i);
                if ((double)(used + extra) > budget)
                    continue;
                double ratio = (e[at[i]] - e[c]) / (double)extra;
                if (ratio > best_ratio) {
                    best = i, best_to = c, best_ratio = ratio;
                }
            }
        }
        if (best < 0)
            break;
        used += (plan->candidate_bits[best_to] - plan->candidate_bits[at[best]]) * params_of(plan, best);
        at[best] = best_to;
    }
    for (int i = 0; i < plan->n; i++)
        plan->bits[i] = plan->candidate_bits[at[i]];
    free(at);
    return SQ_OK;
}

double sq_bit_plan_average(const sq_bit_plan *plan, int group_size, bool with_overhead)
{
    double bits = 0, params = 0;
    for (int i = 0; i < plan->n; i++) {
        double p = (double)params_of(plan, i), b = plan->bits[i];
        int groups = group_size > 0 ? (plan->in[i] + group_size - 1) / group_size : 1;
        if (with_overhead)
            b += (16.0 + b) * groups / plan->in[i];
        bits += b * p;
        params += p;
    }
    return params > 0 ? bits / params : 0;
}

int sq_bit_plan_base_bits(const sq_bit_plan *plan)
{
    int best = plan->candidate_bits[0], best_count = -1;
    for (int c = 0; c < plan->n_candidates; c++) {
        int count = 0;
        for (int i = 0; i < plan->n; i++)
            count += plan->bits[i] == plan->candidate_bits[c];
        if (count > best_count)
            best = plan->candidate_bits[c], best_count = count;
    }
    return best;
}

/* ---- the report ----------------------------------------------------------- */

json_t *sq_bit_plan_report(const sq_bit_plan *plan, const sq_quant_options *opt)
{
    json_t *candidates = json_array(), *linears = json_array();
    for (int c = 0; c < plan->n_candidates; c++)
        json_array_append_new(candidates, json_integer(plan->candidate_bits[c]));
    for (int i = 0; i < plan->n; i++) {
        char name[160], width[8];
        sq_bit_plan_linear_name(i, name, sizeof name);
        json_t *errors = json_object();
        for (int c = 0; c < plan->n_candidates; c++) {
            snprintf(width, sizeof width, "%d", plan->candidate_bits[c]);
            json_object_set_new(errors, width, json_real(plan->errors[(size_t)i * plan->n_candidates + c]));
        }
        json_array_append_new(linears, json_pack("{s:s, s:[i,i], s:I, s:o, s:i}", "name", name, "shape", plan->out[i],
                                                 plan->in[i], "params", (json_int_t)params_of(plan, i), "errors",
                                                 errors, "bits", plan->bits[i]));
    }
    return json_pack("{s:s, s:f, s:o, s:i, s:b, s:s, s:s, s:f, s:f, s:o}", "format", "shardq-sensitivity/1",
                     "avg_bits", opt->avg_bits, "candidate_bits", candidates, "group_size", opt->group_size, "sym",
                     opt->sym, "error",
                     "trace((W - Q_b(W)) H (W - Q_b(W))^T): Q_b round-to-nearest at b bits with the step's "
                     "group_size and sym, H = 2/n sum x x^T of the unquantized model's inputs",
                     "budget",
                     "sum(bits * params) <= avg_bits * sum(params): code bits only, scales and zero points not "
                     "counted (achieved_avg_bits_with_overhead adds an fp16 scale and a bits-wide zero per group)",
                     "achieved_avg_bits", sq_bit_plan_average(plan, opt->group_size, false),
                     "achieved_avg_bits_with_overhead", sq_bit_plan_average(plan, opt->group_size, true), "linears",
                     linears);
}

sq_status sq_bit_plan_from_report(sq_bit_plan *plan, const json_t *report, const char *where)
{
    json_t *linears = json_object_get(report, "linears");
    const char *format = json_string_value(json_object_get(report, "format"));
    if (!format || strcmp(format, "shardq-sensitivity/1") != 0)
        return sq_fail(SQ_ERR_FORMAT, "%s: format: not \"shardq-sensitivity/1\"", where);
    if (!json_is_array(linears) || json_array_size(linears) != (size_t)plan->n)
        return sq_fail(SQ_ERR_FORMAT, "%s: linears: must list the model's %d linears", where, plan->n);
    for (int i = 0; i < plan->n; i++) {
        json_t *entry = json_array_get(linears, (size_t)i), *errors = json_object_get(entry, "errors");
        char name[160], width[8];
        sq_bit_plan_linear_name(i, name, sizeof name);
        const char *got = json_string_value(json_object_get(entry, "name"));
        if (!got || strcmp(got, name) != 0 || !json_is_object(errors))
            return sq_fail(SQ_ERR_FORMAT, "%s: linears[%d]: must be %s with its errors", where, i, name);
        json_int_t bits = json_integer_value(json_object_get(entry, "bits"));
        bool candidate = false;
        for (int c = 0; c < plan->n_candidates; c++) {
            snprintf(width, sizeof width, "%d", plan->candidate_bits[c]);
            json_t *e = json_object_get(errors, width);
            if (!json_is_number(e))
                return sq_fail(SQ_ERR_FORMAT, "%s: linears[%d].errors.%s: must be a number", where, i, width);
            plan->errors[(size_t)i * plan->n_candidates + c] = json_number_value(e);
            candidate = candidate || bits == plan->candidate_bits[c];
        }
        if (!candidate)
            return sq_fail(SQ_ERR_FORMAT, "%s: linears[%d].bits: must be one of the candidate widths", where, i);
        plan->bits[i] = (int)bits;
    }
    return SQ_OK;
}
