/* validate_job.c: the checks made before a job writes anything (see validate_job.h). */
#include "coordinator/validate_job.h"

#include <stdio.h>
#include <string.h>

#include "jobs/plan.h"
#include "lora/adapter.h"
#include "model/geometry.h"
#include "model/gptq_reader.h"
#include "model/layer.h"
#include "quant/output_format.h"
#include "quant/prune.h"
#include "quant/quant_result.h"
#include "worker/calibrate.h"

/* A calibration step's options against every linear of the model. */
static sq_status check_calibration_step(const sq_job_spec *spec, int step, const sq_model_config *cfg)
{
    const sq_step *s = &spec->steps[step];
    char at[64];
    snprintf(at, sizeof at, "steps[%d].%s", step, sq_step_kind_name(s->kind));
    bool pruning = s->kind != SQ_STEP_GPTQ && s->kind != SQ_STEP_RTN && s->kind != SQ_STEP_SMOOTHQUANT;
    sq_quant_options joint;
    const sq_quant_options *quant = pruning ? NULL : &s->quant;
    if (pruning && s->sparse.bits > 0) {
        joint = sq_sparse_joint_quant_options(&s->sparse);
        quant = &joint;
    }
    int m = pruning ? s->sparse.prune_m : 0;
    if (s->kind == SQ_STEP_SPARSEGPT && m > 0 && s->sparse.block_size % m != 0)
        return sq_fail(SQ_ERR_SPEC, "%s.block_size: %d is not a multiple of the pattern's %d", at, s->sparse.block_size,
                       m);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        int in, out;
        sq_linear_shape(cfg, (sq_linear_id)i, &in, &out);
        if (pruning && sq_sparse_options_check(&s->sparse, out, in, sq_linear_name(i)) != SQ_OK)
            return sq_fail_context(SQ_ERR_SPEC, "%s.%s", at, m > 0 ? "pattern" : "sparsity");
        if (!quant)
            continue;
        if (sq_quant_options_check(quant, in, sq_linear_name(i)) != SQ_OK)
            return sq_fail_context(SQ_ERR_SPEC, "%s", at);
        SQ_TRY(sq_output_format_check(spec->output_format, quant, at, sq_linear_name(i), out, in));
    }
    return SQ_OK;
}

/* Every linear's weight in the safetensors headers has the shape config.json implies. */
static sq_status check_linear_tensors(const sq_checkpoint *ckpt, const sq_model_config *cfg)
{
    for (int layer = 0; layer < cfg->num_layers; layer++) {
        for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
            char name[160];
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, sq_linear_name(i));
            int in, out;
            sq_linear_shape(cfg, (sq_linear_id)i, &in, &out);
            const sq_st_tensor *t = sq_checkpoint_find(ckpt, name);
            if (!t)
                return sq_fail(SQ_ERR_FORMAT, "%s: no tensor %s", sq_checkpoint_dir(ckpt), name);
            if (t->ndim != 2 || t->shape[0] != out || t->shape[1] != in)
                return sq_fail(SQ_ERR_FORMAT, "%s: tensor %s is not [%d, %d] as config.json implies",
                               sq_checkpoint_dir(ckpt), name, out, in);
        }
    }
    return SQ_OK;
}

/* Windows longer than the model's positions would run RoPE where it was never trained. */
static sq_status check_seqlen(const char *at, int seqlen, const sq_model_config *cfg)
{
    if (seqlen > cfg->max_position_embeddings)
        return sq_fail(SQ_ERR_SPEC, "%s: %d is beyond the model's max_position_embeddings (%d)", at, seqlen,
                       cfg->max_position_embeddings);
    return SQ_OK;
}

/* qlora: the adapter against the model (target names, r), the base against base_quant when the
 * step trains on the job's input model, the sequence length, and the data files exist. */
static sq_status check_qlora_step(sq_job_storage *io, const sq_job_spec *spec, int step, const sq_job_model *model,
                                  bool on_input_model)
{
    const sq_lora_options *l = &spec->steps[step].lora;
    char at[64];
    unsigned targets;
    snprintf(at, sizeof at, "steps[%d].qlora", step);
    if (sq_lora_adapter_check(&model->cfg, l->r, l->target_modules, l->n_target_modules, &targets) != SQ_OK)
        return sq_fail_context(SQ_ERR_SPEC, "%s", at);
    bool gptq = sq_checkpoint_is_gptq(model->ckpt);
    if (on_input_model && gptq != !strcmp(l->base_quant, "gptq"))
        return sq_fail(SQ_ERR_SPEC, "%s.base_quant: \"%s\" needs %s; %s is %s", at, l->base_quant,
                       gptq ? "dense weights" : "a GPTQ checkpoint (config.json with a GPTQ quantization_config)",
                       spec->model_uri, gptq ? "GPTQ-quantized (use \"gptq\")" : "dense (use \"nf4\")");
    snprintf(at, sizeof at, "steps[%d].qlora.seqlen", step);
    SQ_TRY(check_seqlen(at, l->seqlen, &model->cfg));
    const char *files[2] = {l->train_data, l->eval_data};
    for (int i = 0; i < 2; i++) {
        sq_object_info info;
        if (files[i] && sq_store_head(io->store, files[i], &info) != SQ_OK)
            return sq_fail_context(SQ_ERR_SPEC, "steps[%d].qlora.%s", step, i ? "eval_data" : "train_data");
    }
    return SQ_OK;
}

sq_status sq_validate_job(sq_job_storage *io, const sq_job_spec *spec, int world_size)
{
    sq_job_model model;
    SQ_TRY(sq_job_model_open(io, spec->model_uri, &model));
    sq_status st = SQ_OK;
    bool calibrates = false;
    for (int step = 0; step < spec->n_steps && st == SQ_OK; step++) {
        sq_step_kind kind = spec->steps[step].kind;
        if (sq_calibration_runs(kind)) {
            calibrates = true;
            st = check_calibration_step(spec, step, &model.cfg);
            if (st == SQ_OK && sq_calibration_needs_samples(&spec->steps[step]))
                st = check_seqlen("data.seqlen", spec->seqlen, &model.cfg);
        } else if (kind == SQ_STEP_QLORA) {
            st = check_qlora_step(io, spec, step, &model, !calibrates);
        } else if (kind == SQ_STEP_EVAL) {
            char at[64];
            snprintf(at, sizeof at, "steps[%d].eval.seqlen", step);
            st = check_seqlen(at, spec->steps[step].eval.seqlen, &model.cfg);
            sq_object_info info; /* the data is read only after the steps before: it must exist now */
            if (st == SQ_OK && sq_store_head(io->store, spec->steps[step].eval.data, &info) != SQ_OK)
                st = sq_fail_context(SQ_ERR_SPEC, "steps[%d].eval.data", step);
            const char *scales = spec->steps[step].eval.kv_cache_scales;
            if (st == SQ_OK && scales && strcmp(scales, "model") != 0 &&
                sq_store_head(io->store, scales, &info) != SQ_OK)
                st = sq_fail_context(SQ_ERR_SPEC, "steps[%d].eval.kv_cache_scales", step);
        } else if (kind == SQ_STEP_KV_CACHE) {
            st = check_seqlen("data.seqlen", spec->seqlen, &model.cfg);
        }
    }
    if (st == SQ_OK && calibrates) /* the dense weights a calibration reads (eval also reads GPTQ checkpoints) */
        st = check_linear_tensors(model.ckpt, &model.cfg);
    if (st == SQ_OK && calibrates) {
        sq_plan plan;
        sq_plan_request rq = sq_job_plan_request(spec, world_size, model.cfg.num_layers);
        if (sq_plan_build(&plan, &rq) != SQ_OK)
            st = sq_fail_context(SQ_ERR_SPEC, "parallel (%d ranks, %d layers)", world_size, model.cfg.num_layers);
    }
    sq_job_model_close(&model);
    return st;
}
