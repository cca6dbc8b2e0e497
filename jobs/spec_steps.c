/* spec_steps.c: the options of each step kind (rtn, gptq, sparsegpt, wanda,
 * magnitude, qlora, eval): allowed keys, types, ranges and defaults. Checks
 * that involve several steps or the rest of the spec live in spec.c. */
#include "jobs/spec_steps.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const step_names[] = {"rtn",  "gptq",        "sparsegpt", "wanda", "magnitude", "qlora",
                                          "eval", "smoothquant", "kv_cache",  NULL};

static const char *const lora_modules[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                           "gate_proj", "up_proj", "down_proj", NULL};
#define N_LORA_MODULES 7

static const int quant_bits[] = {2, 3, 4, 8};
static const int sparse_bits[] = {0, 2, 3, 4, 8};

const char *sq_step_kind_name(sq_step_kind kind)
{
    if ((unsigned)kind < sizeof step_names / sizeof step_names[0] - 1)
        return step_names[kind];
    return "unknown";
}

/* -1 (per channel) or a positive group size. */
static void read_group_size(sq_spec_errors *errs, json_t *obj, const char *path, int *out)
{
    int v;
    if (!sq_spec_int(errs, obj, path, "group_size", -1, INT_MAX, "must be -1 or a positive integer", &v))
        return;
    if (v == 0) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, "group_size");
        sq_spec_error(errs, at, "must be -1 or a positive integer");
        return;
    }
    *out = v;
}

/* avg_bits and candidate_bits (mixed precision, quant/mixed_precision.h). */
static void parse_mixed_bits(sq_spec_errors *errs, json_t *obj, const char *path, sq_quant_options *q)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *list = json_object_get(obj, "candidate_bits");
    if (list) {
        sq_spec_path(at, path, "candidate_bits");
        bool seen[9] = {false};
        size_t i, n = json_is_array(list) ? json_array_size(list) : 0;
        json_t *v;
        bool ok = n > 0 && n <= 4;
        json_array_foreach(list, i, v) {
            json_int_t b = json_is_integer(v) ? json_integer_value(v) : 0;
            if (b != 2 && b != 3 && b != 4 && b != 8)
                ok = false;
            else if (seen[b])
                ok = false;
            else
                seen[b] = true;
        }
        if (!ok) {
            sq_spec_error(errs, at, "must be a non-empty list of distinct widths from 2,3,4,8");
        } else {
            q->n_candidates = 0;
            for (int b = 2; b <= 8; b++)
                if (seen[b])
                    q->candidate_bits[q->n_candidates++] = b;
        }
    }
    if (!json_object_get(obj, "avg_bits")) {
        if (list)
            sq_spec_error(errs, at, "applies only with avg_bits");
        return;
    }
    sq_spec_number(errs, obj, path, "avg_bits", 2, true, 8, true, "must be a number in [2, 8]", &q->avg_bits);
    if (json_object_get(obj, "bits")) {
        sq_spec_path(at, path, "bits");
        sq_spec_error(errs, at, "give bits or avg_bits, not both");
    }
    int lo = q->candidate_bits[0], hi = q->candidate_bits[q->n_candidates - 1];
    if (q->avg_bits > 0 && (q->avg_bits < lo || q->avg_bits > hi)) {
        sq_spec_path(at, path, "avg_bits");
        sq_spec_error(errs, at, "%g is outside the candidate widths' range [%d, %d]", q->avg_bits, lo, hi);
    }
}

static void parse_quant(sq_spec_errors *errs, json_t *obj, const char *path, sq_step_kind kind,
                        sq_quant_options *q)
{
    static const char *const rtn_keys[] = {"bits", "group_size", "sym", "avg_bits", "candidate_bits", NULL};
    static const char *const gptq_keys[] = {"bits", "group_size", "sym", "desc_act", "static_groups",
                                            "damp_percent", "block_size", "true_sequential",
                                            "preserve_sparsity", "avg_bits", "candidate_bits", NULL};
    *q = (sq_quant_options){.bits = 4, .group_size = 128, .sym = true, .desc_act = false,
                            .static_groups = false, .damp_percent = 0.01, .block_size = 128,
                            .true_sequential = true, .candidate_bits = {2, 3, 4, 8}, .n_candidates = 4};
    sq_spec_check_keys(errs, obj, path, kind == SQ_STEP_GPTQ ? gptq_keys : rtn_keys);
    sq_spec_int_choice(errs, obj, path, "bits", quant_bits, 4, "2,3,4,8", &q->bits);
    read_group_size(errs, obj, path, &q->group_size);
    sq_spec_bool(errs, obj, path, "sym", &q->sym);
    parse_mixed_bits(errs, obj, path, q);
    if (kind != SQ_STEP_GPTQ)
        return;
    sq_spec_bool(errs, obj, path, "desc_act", &q->desc_act);
    sq_spec_bool(errs, obj, path, "static_groups", &q->static_groups);
    sq_spec_number(errs, obj, path, "damp_percent", 0, false, 1, false, "must be a number in (0, 1)",
                   &q->damp_percent);
    sq_spec_int(errs, obj, path, "block_size", 1, INT_MAX, "must be a positive integer", &q->block_size);
    sq_spec_bool(errs, obj, path, "true_sequential", &q->true_sequential);
    sq_spec_bool(errs, obj, path, "preserve_sparsity", &q->preserve_sparsity); /* default: spec.c */
}

/* "N:M" with 0 < N < M, digits only. */
static bool parse_pattern(const char *text, int *n, int *m)
{
    char *end;
    if (text[0] < '0' || text[0] > '9')
        return false;
    long a = strtol(text, &end, 10);
    if (*end != ':' || end[1] < '0' || end[1] > '9')
        return false;
    long b = strtol(end + 1, &end, 10);
    if (*end != '\0' || a <= 0 || b <= a || b > 1024)
        return false;
    *n = (int)a;
    *m = (int)b;
    return true;
}

static void parse_sparse(sq_spec_errors *errs, json_t *obj, const char *path, sq_step_kind kind,
                         sq_sparse_options *s)
{
    static const char *const prune_keys[] = {"sparsity", "pattern", NULL};
    static const char *const sparsegpt_keys[] = {"sparsity", "pattern", "block_size", "damp_percent",
                                                 "bits", "group_size", "sym", NULL};
    *s = (sq_sparse_options){.sparsity = 0, .prune_n = 0, .prune_m = 0, .block_size = 128,
                             .damp_percent = 0.01, .bits = 0, .group_size = 128, .sym = true};
    sq_spec_check_keys(errs, obj, path, kind == SQ_STEP_SPARSEGPT ? sparsegpt_keys : prune_keys);

    json_t *sparsity = json_object_get(obj, "sparsity");
    json_t *pattern = json_object_get(obj, "pattern");
    if (!sparsity && !pattern)
        sq_spec_error(errs, path, "needs \"sparsity\" (unstructured) or \"pattern\" (N:M)");
    else if (sparsity && pattern)
        sq_spec_error(errs, path, "give \"sparsity\" or \"pattern\", not both");
    sq_spec_number(errs, obj, path, "sparsity", 0, true, 1, false, "must be a number in [0, 1)", &s->sparsity);
    if (pattern) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, "pattern");
        if (json_is_string(pattern) && parse_pattern(json_string_value(pattern), &s->prune_n, &s->prune_m))
            s->sparsity = (double)s->prune_n / s->prune_m;
        else
            sq_spec_error(errs, at, "must be \"N:M\" with 0 < N < M (e.g. \"2:4\")");
    }
    if (kind != SQ_STEP_SPARSEGPT)
        return;
    sq_spec_int(errs, obj, path, "block_size", 1, INT_MAX, "must be a positive integer", &s->block_size);
    sq_spec_number(errs, obj, path, "damp_percent", 0, false, 1, false, "must be a number in (0, 1)",
                   &s->damp_percent);
    sq_spec_int_choice(errs, obj, path, "bits", sparse_bits, 5, "0 (no quantization),2,3,4,8", &s->bits);
    read_group_size(errs, obj, path, &s->group_size);
    sq_spec_bool(errs, obj, path, "sym", &s->sym);
    json_t *bits = json_object_get(obj, "bits");
    bool quantizes = bits && !(json_is_integer(bits) && json_integer_value(bits) == 0);
    for (int i = 0; !quantizes && i < 2; i++) {
        const char *key = i ? "sym" : "group_size";
        if (json_object_get(obj, key)) {
            char at[SQ_SPEC_PATH_MAX];
            sq_spec_path(at, path, key);
            sq_spec_error(errs, at, "applies only with bits > 0");
        }
    }
}

static void parse_target_modules(sq_spec_errors *errs, json_t *obj, const char *path, sq_lora_options *l)
{
    char at[SQ_SPEC_PATH_MAX];
    json_t *list = json_object_get(obj, "target_modules");
    sq_spec_path(at, path, "target_modules");
    if (list && (!json_is_array(list) || json_array_size(list) == 0)) {
        sq_spec_error(errs, at, "must be a non-empty list of module names "
                                "(q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
        return;
    }
    size_t n = list ? json_array_size(list) : N_LORA_MODULES;
    l->target_modules = calloc(n, sizeof *l->target_modules);
    if (!l->target_modules) {
        errs->nomem = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = list ? json_string_value(json_array_get(list, i)) : lora_modules[i];
        char item[SQ_SPEC_PATH_MAX + 24];
        snprintf(item, sizeof item, "%s[%zu]", at, i);
        int known = -1;
        for (int k = 0; name && lora_modules[k]; k++)
            if (!strcmp(name, lora_modules[k]))
                known = k;
        if (known < 0) {
            sq_spec_error(errs, item, "must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
            continue;
        }
        bool duplicate = false;
        for (int k = 0; k < l->n_target_modules; k++)
            duplicate |= !strcmp(l->target_modules[k], name);
        if (duplicate) {
            sq_spec_error(errs, item, "duplicate module \"%s\"", name);
            continue;
        }
        l->target_modules[l->n_target_modules] = strdup(name);
        if (!l->target_modules[l->n_target_modules]) {
            errs->nomem = true;
            return;
        }
        l->n_target_modules++;
    }
}

static void parse_lora(sq_spec_errors *errs, json_t *obj, const char *path, sq_lora_options *l)
{
    static const char *const keys[] = {"r", "alpha", "dropout", "target_modules", "base_quant",
                                       "learning_rate", "steps", "batch_size", "grad_accum", "seqlen",
                                       "weight_decay", "recompute", "train_data", "lr_schedule", "warmup_steps",
                                       "max_grad_norm", "format", "prompt_field", "completion_field",
                                       "eval_data", "eval_every", "save_every", "merge", NULL};
    static const char *const formats[] = {"text", "jsonl", "token_ids", NULL};
    static const char *const base_quants[] = {"nf4", "gptq", NULL};
    static const char *const schedules[] = {"constant", "cosine", NULL};
    *l = (sq_lora_options){.r = 16, .alpha = 32, .dropout = 0.05, .learning_rate = 2e-4, .steps = 200,
                           .batch_size = 4, .grad_accum = 4, .seqlen = 0, .weight_decay = 0,
                           .recompute = true, .max_grad_norm = 1.0, .save_every = 50};
    sq_spec_check_keys(errs, obj, path, keys);
    sq_spec_int(errs, obj, path, "r", 1, INT_MAX, "must be a positive integer", &l->r);
    sq_spec_number(errs, obj, path, "alpha", 0, false, HUGE_VAL, false, "must be a positive number", &l->alpha);
    sq_spec_number(errs, obj, path, "dropout", 0, true, 1, false, "must be a number in [0, 1)", &l->dropout);
    parse_target_modules(errs, obj, path, l);
    int base = -1;
    if (sq_spec_choice(errs, obj, path, "base_quant", base_quants, &base)) {
        l->base_quant = strdup(base_quants[base]);
        if (!l->base_quant)
            errs->nomem = true;
    }
    sq_spec_number(errs, obj, path, "learning_rate", 0, false, HUGE_VAL, false, "must be a positive number",
                   &l->learning_rate);
    sq_spec_int(errs, obj, path, "steps", 1, INT_MAX, "must be a positive integer", &l->steps);
    sq_spec_int(errs, obj, path, "batch_size", 1, INT_MAX, "must be a positive integer", &l->batch_size);
    sq_spec_int(errs, obj, path, "grad_accum", 1, INT_MAX, "must be a positive integer", &l->grad_accum);
    sq_spec_int(errs, obj, path, "seqlen", 1, INT_MAX, "must be a positive integer", &l->seqlen);
    sq_spec_number(errs, obj, path, "weight_decay", 0, true, HUGE_VAL, false, "must be a non-negative number",
                   &l->weight_decay);
    sq_spec_bool(errs, obj, path, "recompute", &l->recompute);
    sq_spec_uri(errs, obj, path, "train_data", &l->train_data);
    int schedule = 0;
    if (sq_spec_choice(errs, obj, path, "lr_schedule", schedules, &schedule))
        l->cosine = schedule == 1;
    if (sq_spec_int(errs, obj, path, "warmup_steps", 0, INT_MAX, "must be a non-negative integer", &l->warmup_steps) &&
        l->warmup_steps >= l->steps) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, "warmup_steps");
        sq_spec_error(errs, at, "must be less than steps (%d)", l->steps);
    }
    sq_spec_number(errs, obj, path, "max_grad_norm", 0, true, HUGE_VAL, false, "must be a non-negative number",
                   &l->max_grad_norm);
    int format = 0;
    if (sq_spec_choice(errs, obj, path, "format", formats, &format)) {
        l->jsonl = format == 1;
        l->token_ids = format == 2;
    }
    const char *fields[2] = {"prompt_field", "completion_field"};
    char **field_out[2] = {&l->prompt_field, &l->completion_field};
    for (int i = 0; i < 2; i++) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, fields[i]);
        if (json_object_get(obj, fields[i]) && !l->jsonl)
            sq_spec_error(errs, at, "applies only with \"format\": \"jsonl\"");
        if (!(l->jsonl && sq_spec_string(errs, obj, path, fields[i], field_out[i])) &&
            !(*field_out[i] = strdup(i ? "completion" : "prompt")))
            errs->nomem = true;
    }
    sq_spec_uri(errs, obj, path, "eval_data", &l->eval_data);
    if (sq_spec_int(errs, obj, path, "eval_every", 1, INT_MAX, "must be a positive integer", &l->eval_every) &&
        !l->eval_data) {
        char at[SQ_SPEC_PATH_MAX];
        sq_spec_path(at, path, "eval_every");
        sq_spec_error(errs, at, "needs \"eval_data\"");
    }
    sq_spec_int(errs, obj, path, "save_every", 1, INT_MAX, "must be a positive integer", &l->save_every);
    sq_spec_bool(errs, obj, path, "merge", &l->merge);
}

static void parse_eval(sq_spec_errors *errs, json_t *obj, const char *path, sq_eval_options *e)
{
    static const char *const keys[] = {"data",           "format",          "seqlen",        "max_windows",
                                       "kv_cache_bits",  "act_bits",        "kv_cache_scales", "kv_cache_dtype",
                                       "kv_cache_kivi",  NULL};
    static const char *const kv_dtypes[] = {"int8", "fp8", NULL};
    static const int kivi_bits[] = {0, 2, 4};
    static const char *const formats[] = {"text", "token_ids", NULL};
    static const int kv_bits[] = {0, 2, 3, 4, 8};
    static const int act_bits[] = {0, 4, 8};
    int format = 0, kv_dtype = -1;
    *e = (sq_eval_options){.data = NULL, .seqlen = 0, .max_windows = 0, .kv_cache_bits = 0};
    sq_spec_check_keys(errs, obj, path, keys);
    if (sq_spec_require(errs, obj, path, "data"))
        sq_spec_uri(errs, obj, path, "data", &e->data);
    if (sq_spec_choice(errs, obj, path, "format", formats, &format))
        e->token_ids = format == 1;
    sq_spec_int(errs, obj, path, "seqlen", 1, INT_MAX, "must be a positive integer", &e->seqlen);
    sq_spec_int(errs, obj, path, "max_windows", 0, INT_MAX, "must be a non-negative integer", &e->max_windows);
    sq_spec_int_choice(errs, obj, path, "kv_cache_bits", kv_bits, 5, "0 (off),2,3,4,8", &e->kv_cache_bits);
    sq_spec_int_choice(errs, obj, path, "act_bits", act_bits, 3, "0 (off),4,8", &e->act_bits);
    sq_spec_string(errs, obj, path, "kv_cache_scales", &e->kv_cache_scales);
    if (sq_spec_choice(errs, obj, path, "kv_cache_dtype", kv_dtypes, &kv_dtype))
        e->kv_cache_dtype = strdup(kv_dtypes[kv_dtype]);
    sq_spec_int_choice(errs, obj, path, "kv_cache_kivi", kivi_bits, 3, "0 (off),2,4", &e->kv_cache_kivi);
    char at[SQ_SPEC_PATH_MAX];
    if (e->kv_cache_dtype && !e->kv_cache_scales) {
        sq_spec_path(at, path, "kv_cache_dtype");
        sq_spec_error(errs, at, "needs \"kv_cache_scales\"");
    }
    if ((e->kv_cache_bits > 0) + (e->kv_cache_scales != NULL) + (e->kv_cache_kivi > 0) > 1)
        sq_spec_error(errs, path, "at most one of kv_cache_bits, kv_cache_scales and kv_cache_kivi");
}

/* smoothquant: alpha, weight bits (per channel, symmetric) and the activation bits. */
static void parse_smoothquant(sq_spec_errors *errs, json_t *obj, const char *path, sq_quant_options *q,
                              sq_smooth_options *s)
{
    static const char *const keys[] = {"alpha", "bits", "act_bits", NULL};
    static const int act_bits[] = {4, 8};
    *q = (sq_quant_options){.bits = 8, .group_size = -1, .sym = true, .true_sequential = false};
    *s = (sq_smooth_options){.alpha = 0.5, .act_bits = 8};
    sq_spec_check_keys(errs, obj, path, keys);
    sq_spec_number(errs, obj, path, "alpha", 0, true, 1, true, "must be a number in [0, 1]", &s->alpha);
    sq_spec_int_choice(errs, obj, path, "bits", quant_bits, 4, "2,3,4,8", &q->bits);
    sq_spec_int_choice(errs, obj, path, "act_bits", act_bits, 2, "4,8", &s->act_bits);
}

/* "rtn, gptq, ...": every step name, for messages. */
static void step_name_list(char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; step_names[k] && used < size; k++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", k ? ", " : "", step_names[k]);
}

static void parse_kv_cache(sq_spec_errors *errs, json_t *obj, const char *path, sq_kv_calibration_options *kv)
{
    static const char *const keys[] = {"dtype", "strategy", NULL};
    static const char *const dtypes[] = {"int8", "fp8", NULL}; /* kn_kv_format order */
    static const char *const strategies[] = {"attn_head", "tensor", NULL};
    int dtype = KN_KV_FP8, strategy = 0;
    sq_spec_check_keys(errs, obj, path, keys);
    sq_spec_choice(errs, obj, path, "dtype", dtypes, &dtype);
    sq_spec_choice(errs, obj, path, "strategy", strategies, &strategy);
    *kv = (sq_kv_calibration_options){.format = (kn_kv_format)dtype, .per_head = strategy == 0};
}

bool sq_spec_parse_step(sq_spec_errors *errs, json_t *value, int index, sq_step *step)
{
    char path[SQ_SPEC_PATH_MAX], names[256];
    step_name_list(names, sizeof names);
    snprintf(path, sizeof path, "steps[%d]", index);
    if (!json_is_object(value) || json_object_size(value) != 1) {
        sq_spec_error(errs, path, "a step is an object with exactly one key (%s)", names);
        return false;
    }
    const char *name = json_object_iter_key(json_object_iter(value));
    json_t *options = json_object_iter_value(json_object_iter(value));
    int kind = -1;
    for (int k = 0; step_names[k]; k++)
        if (!strcmp(name, step_names[k]))
            kind = k;
    char at[SQ_SPEC_PATH_MAX];
    sq_spec_path(at, path, name);
    if (kind < 0) {
        sq_spec_error(errs, at, "unknown step (%s)", names);
        return false;
    }
    if (!json_is_object(options)) {
        sq_spec_error(errs, at, "must be an object");
        return false;
    }
    step->kind = (sq_step_kind)kind;
    switch (step->kind) {
    case SQ_STEP_RTN:
    case SQ_STEP_GPTQ: parse_quant(errs, options, at, step->kind, &step->quant); break;
    case SQ_STEP_SPARSEGPT:
    case SQ_STEP_WANDA:
    case SQ_STEP_MAGNITUDE: parse_sparse(errs, options, at, step->kind, &step->sparse); break;
    case SQ_STEP_QLORA: parse_lora(errs, options, at, &step->lora); break;
    case SQ_STEP_EVAL: parse_eval(errs, options, at, &step->eval); break;
    case SQ_STEP_SMOOTHQUANT: parse_smoothquant(errs, options, at, &step->quant, &step->smooth); break;
    case SQ_STEP_KV_CACHE: parse_kv_cache(errs, options, at, &step->kv_cache); break;
    }
    return true;
}

void sq_spec_free_step(sq_step *step)
{
    if (step->kind == SQ_STEP_QLORA) {
        for (int i = 0; i < step->lora.n_target_modules; i++)
            free(step->lora.target_modules[i]);
        free(step->lora.target_modules);
        free(step->lora.base_quant);
        free(step->lora.train_data);
        free(step->lora.prompt_field);
        free(step->lora.completion_field);
        free(step->lora.eval_data);
    } else if (step->kind == SQ_STEP_EVAL) {
        free(step->eval.data);
        free(step->eval.kv_cache_scales);
        free(step->eval.kv_cache_dtype);
    }
    memset(step, 0, sizeof *step);
}
