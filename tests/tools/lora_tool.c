/* lora_tool.c: runs pieces of lora/ on given inputs and writes what they
 * produce, for the Python tests to compare against PyTorch/peft and NumPy.
 *
 *   lora_tool grad MODEL_DIR OUT.safetensors --targets q_proj,v_proj,... [--r R] [--alpha A]
 *             [--batch B] [--seq S] [--seed N] [--base none|nf4|gptq] [--no-recompute] [--vocab-chunk V]
 *       an adapter initialised as peft does (seed N) but with B random too (so that
 *       dA is not zero), random token ids, one forward/backward of the mean
 *       next-token loss; writes ids [B, S], loss [1] and per adapted linear
 *       "L.NAME.A", "L.NAME.B", "L.NAME.dA", "L.NAME.dB".
 *   lora_tool base MODEL_DIR OUT.safetensors nf4|gptq|none
 *       every linear of the base as training sees it (sq_lora_base_read_linear), F32
 *       "L.NAME" [out, in], e.g. "0.self_attn.q_proj".
 *   lora_tool nf4 IN.safetensors OUT.safetensors
 *       NF4-quantizes tensor "w" (F32) and writes packed, qabsmax, absmax2, offset,
 *       code8 and the dequantized "deq" (through the kernels).
 *   lora_tool adamw IN.safetensors OUT.safetensors LR WEIGHT_DECAY MAX_GRAD_NORM WARMUP TOTAL cosine|constant
 *       takes "p" [n] and "g" [steps, n] (F32); runs the adapter optimizer (lora/optimizer.h:
 *       schedule, clipping, AdamW) for each row of g in turn and writes "p" and "lr" [steps]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/safetensors.h"
#include "kernels/kernels.h"
#include "lora/adapter.h"
#include "lora/base.h"
#include "lora/nf4.h"
#include "lora/optimizer.h"
#include "lora/trainer.h"
#include "model/checkpoint.h"
#include "model/config.h"

typedef struct {
    char *targets[SQ_LINEAR_COUNT];
    int n_targets, r, batch, seq, vocab_chunk;
    float alpha;
    uint64_t seed;
    bool recompute;
    const char *base;
} grad_options;

static int parse_grad_options(int argc, char **argv, grad_options *o)
{
    *o = (grad_options){.r = 4, .alpha = 8, .batch = 2, .seq = 8, .seed = 1, .recompute = true, .base = "none"};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-recompute")) {
            o->recompute = false;
            continue;
        }
        if (!v)
            return fprintf(stderr, "%s needs a value\n", a), -1;
        i++;
        if (!strcmp(a, "--targets")) {
            for (char *tok = strtok(argv[i], ","); tok && o->n_targets < SQ_LINEAR_COUNT; tok = strtok(NULL, ","))
                o->targets[o->n_targets++] = tok;
        } else if (!strcmp(a, "--r")) {
            o->r = atoi(v);
        } else if (!strcmp(a, "--alpha")) {
            o->alpha = (float)atof(v);
        } else if (!strcmp(a, "--batch")) {
            o->batch = atoi(v);
        } else if (!strcmp(a, "--seq")) {
            o->seq = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            o->seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--vocab-chunk")) {
            o->vocab_chunk = atoi(v);
        } else if (!strcmp(a, "--base")) {
            o->base = v;
        } else {
            return fprintf(stderr, "unknown option %s\n", a), -1;
        }
    }
    return o->n_targets > 0 ? 0 : (fprintf(stderr, "--targets is required\n"), -1);
}

/* B random (uniform ±0.2) after peft's init, so every gradient path carries signal. */
static sq_status randomise_b(sq_lora_adapter *a, uint64_t seed)
{
    float *host = malloc(a->n_params * sizeof *host);
    if (!host)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = kn_download(host, a->params, a->n_params * sizeof *host);
    sq_rng rng;
    sq_rng_seed(&rng, seed ^ 0xb);
    for (int i = 0; st == SQ_OK && i < a->n_modules; i++) {
        const sq_lora_module *m = &a->modules[i];
        for (size_t j = 0; j < (size_t)m->out_features * a->r; j++)
            host[m->b_offset + j] = (float)(((double)(sq_rng_next(&rng) >> 11) / 9007199254740992.0 - 0.5) * 0.4);
    }
    if (st == SQ_OK)
        st = kn_upload(a->params, host, a->n_params * sizeof *host);
    free(host);
    return st;
}

static sq_status write_grads(const char *out, const sq_lora_adapter *a, const int32_t *ids, int batch, int seq,
                             float loss)
{
    float *p = malloc(a->n_params * sizeof *p), *g = malloc(a->n_params * sizeof *g);
    int n = 2 + 4 * a->n_modules;
    sq_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[64] = calloc((size_t)n, 64);
    if (!p || !g || !e || !names)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = kn_download(p, a->params, a->n_params * sizeof *p);
    if (st == SQ_OK)
        st = kn_download(g, a->grads, a->n_params * sizeof *g);
    e[0] = (sq_st_entry){.name = "ids", .dtype = SQ_DTYPE_I32, .ndim = 2, .shape = {batch, seq}, .data = ids};
    e[1] = (sq_st_entry){.name = "loss", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss};
    for (int i = 0; i < a->n_modules; i++) {
        const sq_lora_module *m = &a->modules[i];
        const char *suffix[4] = {"A", "B", "dA", "dB"};
        for (int k = 0; k < 4; k++) {
            int at = 2 + 4 * i + k;
            bool is_a = k % 2 == 0;
            snprintf(names[at], 64, "%d.%s.%s", m->layer, sq_lora_target_name(m->id), suffix[k]);
            e[at] = (sq_st_entry){.name = names[at], .dtype = SQ_DTYPE_F32, .ndim = 2,
                                  .shape = {is_a ? a->r : m->out_features, is_a ? m->in_features : a->r},
                                  .data = (k < 2 ? p : g) + (is_a ? m->a_offset : m->b_offset)};
        }
    }
    if (st == SQ_OK)
        st = sq_st_write(out, e, n, NULL);
    free(p), free(g), free(e), free(names);
    return st;
}

static sq_status run_grad(const char *model_dir, const char *out, grad_options *o)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    sq_model_config cfg;
    sq_checkpoint *ckpt = NULL;
    sq_lora_base base = {0};
    sq_lora_adapter adapter = {0};
    sq_lora_trainer trainer = {0};
    sq_lora_base_kind kind;
    const int rows = o->batch * o->seq;
    int32_t *ids = malloc(sizeof(int32_t) * rows), *targets = malloc(sizeof(int32_t) * rows);
    float *weight = malloc(sizeof(float) * rows);
    if (!ids || !targets || !weight)
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st;
    SQ_TRY_GOTO(st, sq_model_config_load(&cfg, path), done);
    SQ_TRY_GOTO(st, sq_checkpoint_open(&ckpt, model_dir), done);
    SQ_TRY_GOTO(st, sq_lora_base_kind_parse(o->base, &kind), done);
    SQ_TRY_GOTO(st, sq_lora_base_open(&base, &cfg, ckpt, kind), done);
    SQ_TRY_GOTO(st, sq_lora_adapter_create(&adapter, &cfg, o->r, o->alpha, 0.0f, o->targets, o->n_targets), done);
    SQ_TRY_GOTO(st, sq_lora_adapter_init(&adapter, o->seed), done);
    SQ_TRY_GOTO(st, randomise_b(&adapter, o->seed), done);
    SQ_TRY_GOTO(st, sq_lora_trainer_init(&trainer, &base, &adapter, o->recompute, rows, o->vocab_chunk), done);
    sq_rng rng;
    sq_rng_seed(&rng, o->seed ^ 0x1d5);
    for (int i = 0; i < rows; i++)
        ids[i] = (int32_t)sq_rng_below(&rng, (uint64_t)cfg.vocab_size);
    for (int i = 0; i < rows; i++) { /* next-token targets; the last position of a sequence has none */
        targets[i] = (i + 1) % o->seq ? ids[i + 1] : -1;
        weight[i] = 1.0f / (float)(o->batch * (o->seq - 1));
    }
    double loss;
    SQ_TRY_GOTO(st, sq_lora_trainer_run(&trainer, ids, targets, weight, o->batch, o->seq, true, o->seed, &loss, NULL),
                done);
    st = write_grads(out, &adapter, ids, o->batch, o->seq, (float)loss);
done:
    sq_lora_trainer_free(&trainer);
    sq_lora_adapter_free(&adapter);
    sq_lora_base_close(&base);
    sq_checkpoint_close(ckpt);
    free(ids), free(targets), free(weight);
    return st;
}

static sq_status run_base(const char *model_dir, const char *out, const char *kind_name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", model_dir);
    sq_model_config cfg;
    sq_checkpoint *ckpt = NULL;
    sq_lora_base base = {0};
    sq_lora_base_kind kind;
    SQ_TRY(sq_lora_base_kind_parse(kind_name, &kind));
    SQ_TRY(sq_model_config_load(&cfg, path));
    SQ_TRY(sq_checkpoint_open(&ckpt, model_dir));
    int n = cfg.num_layers * SQ_LINEAR_COUNT;
    sq_st_entry *e = calloc((size_t)n, sizeof *e);
    char (*names)[64] = calloc((size_t)n, 64);
    sq_status st = e && names ? sq_lora_base_open(&base, &cfg, ckpt, kind) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    for (int i = 0; st == SQ_OK && i < n; i++) {
        int layer = i / SQ_LINEAR_COUNT;
        sq_linear_id id = (sq_linear_id)(i % SQ_LINEAR_COUNT);
        const sq_linear *lin = &base.model.layer.linear[id];
        float *W = malloc(sizeof(float) * (size_t)lin->out_features * lin->in_features);
        if (!W) {
            st = sq_fail(SQ_ERR_NOMEM, "out of memory");
            break;
        }
        snprintf(names[i], 64, "%d.%s", layer, sq_linear_name(id));
        e[i] = (sq_st_entry){.name = names[i], .dtype = SQ_DTYPE_F32, .ndim = 2,
                             .shape = {lin->out_features, lin->in_features}, .data = W};
        st = sq_lora_base_read_linear(&base, layer, id, W);
    }
    if (st == SQ_OK)
        st = sq_st_write(out, e, n, NULL);
    for (int i = 0; e && i < n; i++)
        free((void *)e[i].data);
    free(e), free(names);
    sq_lora_base_close(&base);
    sq_checkpoint_close(ckpt);
    return st;
}

static sq_status run_nf4(const char *in, const char *out)
{
    sq_st_file f;
    SQ_TRY(sq_st_open(&f, in));
    sq_status st = SQ_OK;
    const sq_st_tensor *t = NULL;
    for (int i = 0; i < f.header.n_tensors; i++)
        if (!strcmp(f.header.tensors[i].name, "w"))
            t = &f.header.tensors[i];
    if (!t || t->dtype != SQ_DTYPE_F32) {
        sq_st_close(&f);
        return sq_fail(SQ_ERR_FORMAT, "%s: needs an F32 tensor \"w\"", in);
    }
    size_t n = t->nbytes / sizeof(float), blocks = n / SQ_NF4_BLOCK;
    size_t blocks2 = (blocks + SQ_NF4_ABSMAX_BLOCK - 1) / SQ_NF4_ABSMAX_BLOCK;
    sq_nf4_tensor q;
    float code8[256], *absmax = malloc(sizeof(float) * (blocks + 1)), *deq = malloc(sizeof(float) * n);
    sq_nf4_code8(code8);
    st = absmax && deq ? sq_nf4_quantize(sq_st_data(&f, t), n, "w", &q) : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK) {
        st = kn_dequantize_blockwise8(absmax, q.qabsmax, code8, q.absmax2, q.offset, blocks);
        if (st == SQ_OK)
            st = kn_dequantize_nf4(deq, q.packed, absmax, n);
        sq_st_entry e[] = {
            {.name = "packed", .dtype = SQ_DTYPE_U8, .ndim = 1, .shape = {(int64_t)n / 2}, .data = q.packed},
            {.name = "qabsmax", .dtype = SQ_DTYPE_U8, .ndim = 1, .shape = {(int64_t)blocks}, .data = q.qabsmax},
            {.name = "absmax2", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {(int64_t)blocks2}, .data = q.absmax2},
            {.name = "offset", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &q.offset},
            {.name = "code8", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {256}, .data = code8},
            {.name = "deq", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {(int64_t)n}, .data = deq},
        };
        if (st == SQ_OK)
            st = sq_st_write(out, e, 6, NULL);
        sq_nf4_free(&q);
    }
    free(absmax), free(deq);
    sq_st_close(&f);
    return st;
}

static const sq_st_tensor *find_f32(const sq_st_file *f, const char *name)
{
    for (int i = 0; i < f->header.n_tensors; i++)
        if (!strcmp(f->header.tensors[i].name, name) && f->header.tensors[i].dtype == SQ_DTYPE_F32)
            return &f->header.tensors[i];
    return NULL;
}

static sq_status run_adamw(char **argv)
{
    sq_st_file f;
    SQ_TRY(sq_st_open(&f, argv[2]));
    const sq_st_tensor *tp = find_f32(&f, "p"), *tg = find_f32(&f, "g");
    if (!tp || !tg || tg->ndim != 2) {
        sq_st_close(&f);
        return sq_fail(SQ_ERR_FORMAT, "%s: needs F32 \"p\" [n] and \"g\" [steps, n]", argv[2]);
    }
    int steps = (int)tg->shape[0];
    size_t n = (size_t)tg->shape[1];
    sq_lora_optim_options opt = {.learning_rate = atof(argv[4]), .weight_decay = atof(argv[5]),
                                 .max_grad_norm = atof(argv[6]), .warmup_steps = atoi(argv[7]),
                                 .total_steps = atoi(argv[8]), .cosine = !strcmp(argv[9], "cosine")};
    /* a one-module stand-in adapter whose flat vectors are p and g */
    sq_lora_adapter a = {.n_params = n};
    sq_lora_optimizer o = {0};
    float *lr = malloc(sizeof(float) * (size_t)steps), *p = malloc(sizeof(float) * n);
    sq_status st = lr && p ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "out of memory");
    if (st == SQ_OK)
        st = kn_alloc((void **)&a.params, n * sizeof(float));
    if (st == SQ_OK)
        st = kn_alloc((void **)&a.grads, n * sizeof(float));
    if (st == SQ_OK)
        st = kn_upload(a.params, sq_st_data(&f, tp), n * sizeof(float));
    if (st == SQ_OK)
        st = sq_lora_optimizer_init(&o, &a, &opt);
    for (int t = 0; st == SQ_OK && t < steps; t++) {
        st = kn_upload(a.grads, (const float *)sq_st_data(&f, tg) + (size_t)t * n, n * sizeof(float));
        lr[t] = (float)sq_lora_learning_rate(&opt, t + 1);
        if (st == SQ_OK)
            st = sq_lora_optimizer_step(&o, &a, NULL);
    }
    if (st == SQ_OK)
        st = kn_download(p, a.params, n * sizeof(float));
    sq_st_entry e[] = {{.name = "p", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {(int64_t)n}, .data = p},
                       {.name = "lr", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {steps}, .data = lr}};
    if (st == SQ_OK)
        st = sq_st_write(argv[3], e, 2, NULL);
    sq_lora_optimizer_free(&o);
    kn_free(a.params);
    kn_free(a.grads);
    free(lr), free(p);
    sq_st_close(&f);
    return st;
}

int main(int argc, char **argv)
{
    if (kn_init(0) != SQ_OK) {
        fprintf(stderr, "lora_tool: %s\n", sq_last_error());
        return 1;
    }
    sq_status st;
    grad_options o;
    if (argc >= 4 && !strcmp(argv[1], "grad")) {
        if (parse_grad_options(argc - 4, argv + 4, &o))
            return 2;
        st = run_grad(argv[2], argv[3], &o);
    } else if (argc == 10 && !strcmp(argv[1], "adamw")) {
        st = run_adamw(argv);
    } else if (argc == 5 && !strcmp(argv[1], "base")) {
        st = run_base(argv[2], argv[3], argv[4]);
    } else if (argc == 4 && !strcmp(argv[1], "nf4")) {
        st = run_nf4(argv[2], argv[3]);
    } else {
        fprintf(stderr, "usage: lora_tool grad MODEL OUT --targets LIST [options] | lora_tool base MODEL OUT KIND | "
                        "lora_tool nf4 IN OUT\n");
        return 2;
    }
    if (st != SQ_OK) {
        fprintf(stderr, "lora_tool: %s\n", sq_last_error());
        return 1;
    }
    return 0;
}
