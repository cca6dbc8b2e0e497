/* qlora_step.c: the qlora training loop on every rank (qlora_step.h). */
#include "lora/qlora_step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/sha256.h"
#include "kernels/kernels.h"
#include "lora/adapter.h"
#include "lora/base.h"
#include "lora/data.h"
#include "lora/optimizer.h"
#include "lora/peft_export.h"
#include "lora/train_state.h"
#include "lora/trainer.h"
#include "model/corpus.h"
#include "worker/fault.h"
#include "worker/signals.h"

typedef struct {
    const sq_qlora_job *job;
    const sq_lora_options *opt;
    sq_lora_base base;
    sq_lora_adapter adapter;
    sq_lora_optimizer optim;
    sq_lora_trainer trainer;
    sq_lora_data train, eval;
    float *other, *total; /* device [n_params]: another rank's micro-batch gradient, the ordered sum */
    int32_t *ids, *targets;      /* host [batch * seqlen] */
    float *weights;
    double started;
    int first_step;
} qlora_state;

/* ---- data: rank 0 reads, every rank receives ---------------------------- */

static sq_status read_data(const qlora_state *s, const char *path, sq_lora_data *d)
{
    const sq_qlora_job *job = s->job;
    const sq_lora_options *o = s->opt;
    if (o->jsonl)
        return sq_lora_data_from_jsonl(d, job->model_dir, path, o->prompt_field, o->completion_field, o->seqlen,
                                       job->spec->seed);
    int32_t *ids = NULL;
    size_t n = 0;
    SQ_TRY(sq_load_corpus(job->model_dir, path, o->token_ids, job->cfg->vocab_size, &ids, &n));
    sq_status st = sq_lora_data_from_tokens(d, ids, n, o->seqlen, job->spec->seed, path);
    free(ids);
    return st;
}

static sq_status share_data(qlora_state *s, const char *path, sq_lora_data *d)
{
    const sq_comm *comm = s->job->comm;
    sq_status mine = comm->rank == 0 ? read_data(s, path, d) : SQ_OK, worst;
    SQ_TRY(sq_comm_agree(mine, &worst));
    if (mine != SQ_OK)
        return mine;
    if (worst != SQ_OK)
        return sq_fail(worst, "reading the training data failed on rank 0 (see its message)");
    int n_windows = d->n_windows;
    SQ_TRY(sq_comm_bcast_host(&n_windows, sizeof n_windows, 0));
    if (comm->rank != 0) {
        size_t count = (size_t)n_windows * s->opt->seqlen;
        int32_t *tokens = malloc(count * sizeof *tokens);
        uint8_t *mask = malloc(count);
        if (!tokens || !mask) {
            free(tokens), free(mask);
            return sq_fail(SQ_ERR_NOMEM, "cannot hold %d training windows", n_windows);
        }
        sq_lora_data_adopt(d, tokens, mask, n_windows, s->opt->seqlen, s->job->spec->seed);
    }
    size_t count = (size_t)n_windows * s->opt->seqlen;
    SQ_TRY(sq_comm_bcast_host(d->tokens, count * sizeof *d->tokens, 0));
    return sq_comm_bcast_host(d->mask, count, 0);
}

/* Rows of `batch` sequences starting at global sequence k: ids, targets (-1 where no loss) and weights. */
static sq_status fill_batch(qlora_state *s, sq_lora_data *d, long long k, int batch, float weight)
{
    const int seq = s->opt->seqlen;
    for (int b = 0; b < batch; b++) {
        const int32_t *tok;
        const uint8_t *mask;
        SQ_TRY(sq_lora_data_sequence(d, k + b, &tok, &mask));
        for (int t = 0; t < seq; t++) {
            int row = b * seq + t;
            s->ids[row] = tok[t];
            s->targets[row] = t + 1 < seq && mask[t + 1] ? tok[t + 1] : -1;
            s->weights[row] = weight;
        }
    }
    return SQ_OK;
}

/* Loss tokens of global sequences [k, k + count). */
static sq_status count_targets(sq_lora_data *d, long long k, int count, long long *targets)
{
    *targets = 0;
    for (int i = 0; i < count; i++) {
        const int32_t *tok;
        const uint8_t *mask;
        SQ_TRY(sq_lora_data_sequence(d, k + i, &tok, &mask));
        for (int t = 1; t < d->seqlen; t++)
            *targets += mask[t];
    }
    return SQ_OK;
}

/* ---- one training step ------------------------------------------------- */

static uint64_t micro_seed(uint64_t seed, int step, int micro)
{
    return (seed ^ 0x51ed270b27a3c9b5ull) + (uint64_t)step * 0x9e3779b97f4a7c15ull + (uint64_t)micro * 0xbf58476d1ce4e5b9ull;
}

/* Micro-batch gradients, summed in micro-batch order on every rank; the step's loss too.
 * The sums stay in device memory: on one rank nothing leaves the GPU, on several each
 * micro-batch gradient is broadcast from the rank that computed it (NCCL on CUDA). */
static sq_status step_gradient(qlora_state *s, int t, double *loss)
{
    const sq_comm *comm = s->job->comm;
    const sq_lora_options *o = s->opt;
    const size_t bytes = s->adapter.n_params * sizeof(float);
    const long long k0 = (long long)(t - 1) * o->batch_size * o->grad_accum;
    long long targets;
    SQ_TRY(count_targets(&s->train, k0, o->batch_size * o->grad_accum, &targets));
    float weight = targets > 0 ? (float)(1.0 / (double)targets) : 0.0f;
    SQ_TRY(kn_zero(s->total, bytes));
    *loss = 0.0;
    for (int round = 0; round * comm->world_size < o->grad_accum; round++) {
        int j = round * comm->world_size + comm->rank;
        double my_loss = 0.0;
        if (j < o->grad_accum) { /* adapter.grads is zero here: it receives micro-batch j alone */
            SQ_TRY(fill_batch(s, &s->train, k0 + (long long)j * o->batch_size, o->batch_size, weight));
            SQ_TRY(sq_lora_trainer_run(&s->trainer, s->ids, s->targets, s->weights, o->batch_size, o->seqlen, true,
                                       micro_seed(s->job->spec->seed, t, j), &my_loss, NULL));
        }
        for (int q = 0; q < comm->world_size && round * comm->world_size + q < o->grad_accum; q++) {
            float *g = q == comm->rank ? s->adapter.grads : s->other;
            double l = my_loss;
            SQ_TRY(sq_comm_bcast_device(g, bytes, q));
            SQ_TRY(sq_comm_bcast_host(&l, sizeof l, q));
            SQ_TRY(kn_add_inplace(s->total, g, s->adapter.n_params));
            *loss += l;
        }
        if (j < o->grad_accum)
            SQ_TRY(kn_zero(s->adapter.grads, bytes));
    }
    return kn_copy(s->adapter.grads, s->total, bytes);
}

/* Mean next-token loss over the held-out windows (rank 0). */
static sq_status held_out_loss(qlora_state *s, double *nll)
{
    const int batch = s->opt->batch_size;
    long long targets;
    SQ_TRY(count_targets(&s->eval, 0, s->eval.n_windows, &targets));
    double sum = 0.0;
    for (int k = 0; k < s->eval.n_windows; k += batch) {
        int b = s->eval.n_windows - k < batch ? s->eval.n_windows - k : batch;
        double part;
        for (int i = 0; i < b; i++) { /* held-out windows in file order, not shuffled */
            size_t row = (size_t)(k + i) * s->opt->seqlen;
            for (int t = 0; t < s->opt->seqlen; t++) {
                s->ids[i * s->opt->seqlen + t] = s->eval.tokens[row + t];
                bool has = t + 1 < s->opt->seqlen && s->eval.mask[row + t + 1];
                s->targets[i * s->opt->seqlen + t] = has ? s->eval.tokens[row + t + 1] : -1;
                s->weights[i * s->opt->seqlen + t] = 1.0f;
            }
        }
        SQ_TRY(sq_lora_trainer_run(&s->trainer, s->ids, s->targets, s->weights, b, s->opt->seqlen, false, 0, &part,
                                   NULL));
        sum += part;
    }
    *nll = targets > 0 ? sum / (double)targets : 0.0;
    return SQ_OK;
}

/* ---- the journal ------------------------------------------------------- */

static sq_status save_checkpoint(qlora_state *s)
{
    const sq_qlora_job *job = s->job;
    char name[64], sha[SQ_SHA256_HEX_LEN + 1];
    snprintf(name, sizeof name, "step%d/train_%06d.safetensors", job->step, s->optim.step);
    char *path = sq_journal_artifact_path(job->journal, name);
    if (!path)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    char *dir = strdup(path);
    sq_status st = dir ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK) {
        *strrchr(dir, '/') = '\0';
        st = sq_make_dirs(dir);
    }
    if (st == SQ_OK)
        st = sq_lora_state_write(path, &s->adapter, &s->optim);
    if (st == SQ_OK)
        st = sq_sha256_file(path, sha);
    if (st == SQ_OK)
        st = sq_journal_publish_artifact(job->journal, name);
    if (st == SQ_OK)
        st = sq_journal_record_checkpoint(job->journal, job->step, s->optim.step, name, sha);
    free(dir);
    free(path);
    if (st == SQ_OK)
        sq_fault_point("after-checkpoint", s->optim.step);
    return st;
}

/* Rank 0 loads the latest checkpoint whose bytes match the journal; every rank receives it. */
static sq_status resume(qlora_state *s)
{
    const sq_qlora_job *job = s->job;
    sq_status mine = SQ_OK, worst;
    if (job->comm->rank == 0) {
        int train_step = 0;
        const char *sha = NULL;
        const char *name = sq_journal_checkpoint(job->journal, job->step, &train_step, &sha);
        char *path = NULL;
        if (name)
            mine = sq_journal_fetch_artifact(job->journal, name, sha, &path);
        if (mine == SQ_OK && path)
            mine = sq_lora_state_read(path, &s->adapter, &s->optim);
        if (mine == SQ_OK && name)
            sq_log_info("step %d qlora: resuming after train step %d from %s", job->step, s->optim.step, name);
        free(path);
    }
    SQ_TRY(sq_comm_agree(mine, &worst));
    if (mine != SQ_OK)
        return mine;
    if (worst != SQ_OK)
        return sq_fail(worst, "loading the training checkpoint failed on rank 0 (see its message)");
    const size_t bytes = s->adapter.n_params * sizeof(float);
    SQ_TRY(sq_comm_bcast_host(&s->optim.step, sizeof s->optim.step, 0));
    SQ_TRY(sq_comm_bcast_device(s->adapter.params, bytes, 0));
    SQ_TRY(sq_comm_bcast_device(s->optim.m, bytes, 0));
    return sq_comm_bcast_device(s->optim.v, bytes, 0);
}

static sq_status check_stop(qlora_state *s)
{
    sq_fault_layer_delay();
    sq_status worst;
    SQ_TRY(sq_comm_agree(sq_stop_requested() ? SQ_ERR_INTERRUPTED : SQ_OK, &worst));
    if (worst != SQ_ERR_INTERRUPTED)
        return SQ_OK;
    if (s->job->comm->rank == 0 && s->optim.step % s->opt->save_every)
        SQ_TRY(save_checkpoint(s));
    return sq_fail(SQ_ERR_INTERRUPTED, "stopped by a signal after train step %d; the journal is consistent: run the "
                   "same command to resume", s->optim.step);
}

/* ---- set-up, loop, output ---------------------------------------------- */

static sq_status setup(qlora_state *s)
{
    const sq_qlora_job *job = s->job;
    const sq_lora_options *o = s->opt;
    sq_lora_base_kind kind;
    SQ_TRY(sq_lora_base_kind_parse(o->base_quant, &kind));
    /* every refusal that needs only the config comes before any reading or writing */
    SQ_TRY(sq_lora_adapter_create(&s->adapter, job->cfg, o->r, (float)o->alpha, (float)o->dropout,
                                  o->target_modules, o->n_target_modules));
    SQ_TRY(sq_lora_base_open(&s->base, job->cfg, job->ckpt, kind));
    SQ_TRY(share_data(s, job->train_path, &s->train));
    if (o->eval_data)
        SQ_TRY(share_data(s, job->eval_path, &s->eval));
    SQ_TRY(sq_lora_adapter_init(&s->adapter, job->spec->seed));
    sq_lora_optim_options oo = {.learning_rate = o->learning_rate, .weight_decay = o->weight_decay,
                                .max_grad_norm = o->max_grad_norm, .cosine = o->cosine,
                                .warmup_steps = o->warmup_steps, .total_steps = o->steps};
    SQ_TRY(sq_lora_optimizer_init(&s->optim, &s->adapter, &oo));
    SQ_TRY(sq_lora_trainer_init(&s->trainer, &s->base, &s->adapter, o->recompute, o->batch_size * o->seqlen, 0));
    const size_t n = s->adapter.n_params, rows = (size_t)o->batch_size * o->seqlen;
    SQ_TRY(kn_alloc((void **)&s->total, n * sizeof(float)));
    if (job->comm->world_size > 1)
        SQ_TRY(kn_alloc((void **)&s->other, n * sizeof(float)));
    s->ids = malloc(rows * sizeof *s->ids);
    s->targets = malloc(rows * sizeof *s->targets);
    s->weights = malloc(rows * sizeof *s->weights);
    if (!s->ids || !s->targets || !s->weights)
        return sq_fail(SQ_ERR_NOMEM, "qlora: cannot allocate the step buffers");
    return resume(s);
}

static void teardown(qlora_state *s)
{
    sq_lora_trainer_free(&s->trainer);
    sq_lora_optimizer_free(&s->optim);
    sq_lora_adapter_free(&s->adapter);
    sq_lora_base_close(&s->base);
    sq_lora_data_free(&s->train);
    sq_lora_data_free(&s->eval);
    kn_free(s->other), kn_free(s->total);
    free(s->ids), free(s->targets), free(s->weights);
}

static void log_step(const qlora_state *s, double loss, double grad_norm)
{
    const sq_lora_options *o = s->opt;
    int t = s->optim.step, done = t - s->first_step;
    double elapsed = sq_now_seconds() - s->started;
    double tokens = (double)done * o->batch_size * o->grad_accum * o->seqlen;
    sq_log_info("step %d qlora: train step %d/%d loss %.4f lr %.3g grad_norm %.4f tokens/s %.0f ETA %.1fs",
                s->job->step, t, o->steps, loss, sq_lora_learning_rate(&s->optim.opt, t), grad_norm,
                elapsed > 0 ? tokens / elapsed : 0.0, done > 0 ? elapsed / done * (o->steps - t) : 0.0);
}

static sq_status train(qlora_state *s, double *last_loss, json_t *evals)
{
    const sq_lora_options *o = s->opt;
    const bool rank0 = s->job->comm->rank == 0;
    s->first_step = s->optim.step;
    s->started = sq_now_seconds();
    double optimizer_seconds = 0.0, comm_before = sq_comm_seconds();
    while (s->optim.step < o->steps) {
        double grad_norm;
        SQ_TRY(step_gradient(s, s->optim.step + 1, last_loss));
        double t0 = sq_now_seconds();
        SQ_TRY(sq_lora_optimizer_step(&s->optim, &s->adapter, &grad_norm));
        optimizer_seconds += sq_now_seconds() - t0; /* the step ends with a download: synchronized */
        if (rank0)
            log_step(s, *last_loss, grad_norm);
        bool eval_now = o->eval_data && ((o->eval_every && s->optim.step % o->eval_every == 0) ||
                                         s->optim.step == o->steps);
        if (rank0 && eval_now) {
            double nll;
            SQ_TRY(held_out_loss(s, &nll));
            sq_log_info("step %d qlora: train step %d held-out loss %.4f ppl %.4f", s->job->step, s->optim.step, nll,
                        exp(nll));
            json_array_append_new(evals, json_pack("{s:i, s:f, s:f}", "train_step", s->optim.step, "loss", nll,
                                                   "ppl", exp(nll)));
        }
        if (rank0 && (s->optim.step % o->save_every == 0 || s->optim.step == o->steps))
            SQ_TRY(save_checkpoint(s));
        if (s->optim.step < o->steps)
            SQ_TRY(check_stop(s));
    }
    if (rank0) {
        char phases[256];
        sq_lora_trainer_phases(&s->trainer, phases, sizeof phases);
        sq_log_info("step %d qlora: phases %s, optimizer %.2fs, gradient exchange and other communication %.2fs "
                    "(train steps %d..%d, held-out passes included)",
                    s->job->step, phases, optimizer_seconds, sq_comm_seconds() - comm_before, s->first_step + 1,
                    s->optim.step);
    }
    return SQ_OK;
}

static sq_status write_output(qlora_state *s, double last_loss, json_t *evals)
{
    const sq_qlora_job *job = s->job;
    const sq_lora_options *o = s->opt;
    /* a job resumed after its last step has no fresh training loss: null */
    json_t *metrics = json_pack("{s:i, s:o, s:O}", "train_steps", s->optim.step, "train_loss",
                                isfinite(last_loss) ? json_real(last_loss) : json_null(), "eval", evals);
    if (!metrics)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = sq_peft_export(&s->adapter, o->target_modules, o->n_target_modules, job->base_uri, o->base_quant,
                                  metrics, job->output_dir);
    json_object_update(job->result, metrics);
    json_decref(metrics);
    return st;
}

sq_status sq_qlora_run(const sq_qlora_job *job)
{
    qlora_state s = {.job = job, .opt = &job->spec->steps[job->step].lora};
    json_t *evals = json_array();
    double last_loss = NAN;
    sq_status st = evals ? setup(&s) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK && s.optim.step < s.opt->steps)
        st = train(&s, &last_loss, evals);
    if (st == SQ_OK && job->comm->rank == 0)
        st = write_output(&s, last_loss, evals);
    teardown(&s);
    json_decref(evals);
    return st;
}
