/* spec.h: the job spec, a JSON file that says what a shardq job does.
 *
 * {
 *   "name": "tiny-gptq",                     optional, default: file name
 *   "model": "DIR | file://DIR | s3://bucket/prefix",
 *   "data": {"calibration": URI, "format": "text", "nsamples": 128, "seqlen": 2048,
 *            "sampling": "random"},
 *       format "text" (default: tokenized with the model's tokenizer) or "token_ids"
 *       (whitespace-separated ids, already tokenized); eval steps take the same "format".
 *       sampling "random" (default: seeded random windows) or "consecutive" (window i is
 *       ids[i*seqlen, (i+1)*seqlen)); coordinator/calibration_windows.h has the exact rules.
 *   "steps": [ {"gptq": {...}}, {"eval": {...}} ],   each step: an object with one key
 *   "state_uri": URI,                        journal and per-layer artifacts
 *   "output_uri": URI,                       the final checkpoint
 *   "parallel": {"mode": "sequential" | "pipeline", "micro_batch": 4, "blocks": N},
 *   "seed": 0,
 *   "storage": {"endpoint": URL, "region": "us-east-1", "path_style": true,
 *               "part_size_mb": 8, "max_retries": 5, "stall_timeout_s": 30,
 *               "low_speed_bytes": 1024, "request_timeout_s": 300},
 *   "push": {"store": URI, "name": "llama-tiny-w4", "version": "1"},
 *   "output": {"format": "gptq" | "dense" | "compressed-tensors" | "awq"}
 * }
 *
 * Validation collects every error, each with its JSON path, e.g.
 *   steps[1].gptq.bits: must be one of 2,3,4,8
 *   data.nsamples: must be a positive integer
 *   steps[0].gptq.blocksize: unknown key
 * and returns SQ_ERR_SPEC with all of them, one per line, in the message:
 *   "<file>: N errors\n<error>\n<error>..." ("1 error" when there is one); when the
 *   list would not fit the status message it ends "... and K more".
 * A JSON syntax error (duplicate keys included) is "<file>:<line>:<column>: invalid JSON: ...".
 *
 * Rules settled by jobs/spec*.c (decisions where the schema above is silent):
 *  - Required: model, steps (non-empty), state_uri. output_uri when any step other
 *    than eval is present; data.calibration when gptq, awq, sparsegpt or wanda is present,
 *    or qlora without its own train_data. Unknown keys are errors at every level.
 *  - Types are strict: integer fields reject 4.0 and "4"; number fields take both.
 *  - name defaults to the origin's file name without directories and ".json".
 *  - URIs: a local path (kept as written; relative paths resolve against the
 *    working directory of the run), file://PATH, or s3://bucket[/prefix] with a
 *    valid S3 bucket name (3-63 of a-z 0-9 . -). Other schemes are errors.
 *  - group_size is -1 or positive; it need not divide a linear's inputs (the last
 *    group is then shorter, as AutoGPTQ's ceil(in/group_size) groups).
 *  - sparsegpt/wanda/magnitude take exactly one of "sparsity" and "pattern"; with a
 *    pattern, sparsity is set to N/M. sparsegpt: bits 0 (default) or 2,3,4,8;
 *    group_size (default 128) and sym (default true) only with bits > 0.
 *  - gptq.preserve_sparsity (boolean) defaults to true when an earlier step pruned
 *    (sparsegpt, wanda, magnitude), else false; true keeps every zero of the input
 *    weights at exactly 0 (quant/gptq.h). rtn has no such key: a zero always rounds to
 *    the zero point.
 *  - gptq/rtn avg_bits (a number in [2, 8], not with bits) turns on mixed precision
 *    (quant/mixed_precision.h); candidate_bits (only with avg_bits) is a list of
 *    distinct widths from 2,3,4,8, default all four, whose range must hold avg_bits.
 *  - qlora defaults: r 16, alpha 32, dropout 0.05 in [0,1), target_modules all of
 *    q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (no duplicates),
 *    base_quant "gptq" when an earlier step quantized the model else "nf4" (an
 *    explicit "nf4" after a quantizing step is an error), learning_rate 2e-4,
 *    steps 200, batch_size 4, grad_accum 4, seqlen data.seqlen, weight_decay 0,
 *    recompute true, train_data data.calibration, lr_schedule "constant",
 *    warmup_steps 0 (< steps), max_grad_norm 1.0 (0 = no clipping), format "text",
 *    prompt_field "prompt", completion_field "completion" (jsonl only), eval_every 0
 *    (needs eval_data), save_every 50, merge false.
 *  - awq: bits 2,3,4,8 (default 4), group_size (128), sym (false: AWQ's zero points),
 *    n_grid 1..1000 (20), clip (true), then "rtn" (default) or "gptq"; with "gptq" also
 *    desc_act, static_groups, damp_percent, block_size (GPTQ's defaults); a GPTQ key
 *    without "then": "gptq" is an error. awq quantizes the model (a job quantizes once).
 *  - eval: data required; seqlen defaults to data.seqlen; kv_cache_bits 0,2,3,4,8; act_bits 0,4,8;
 *    kv_cache_scales ("model" or a URI), kv_cache_dtype ("int8"/"fp8", needs scales),
 *    kv_cache_kivi 0,2,4; at most one of kv_cache_bits, kv_cache_scales, kv_cache_kivi.
 *  - kv_cache: dtype "fp8" (default) or "int8", strategy "attn_head" (default) or "tensor";
 *    needs data.calibration; produces a model (the input plus its KV scales), so it
 *    cannot follow a compressed-tensors output, and output.format looks past it to
 *    the quantizing step.
 *  - storage: endpoint an http(s):// URL, region a non-empty string, path_style a
 *    boolean, part_size_mb 5..5120 (S3 part limits), max_retries 0..20,
 *    stall_timeout_s and request_timeout_s 1..86400, low_speed_bytes >= 1.
 *  - output.format (default "gptq", quant/output_format.h) is the format of the quantizing
 *    step's checkpoint; another format needs the last model-producing step to quantize,
 *    and no eval step may follow a "compressed-tensors" or "awq" output (shardq reads gptq and
 *    dense checkpoints). Whether the format holds the model's linears is the runner's check.
 *  - push: store and name required, version defaults to "1"; needs a step that
 *    produces a model.
 *  - smoothquant: alpha (0.5) in [0, 1], bits (8) 2,3,4,8 (weights, per channel,
 *    symmetric), act_bits (8) 4 or 8; it quantizes, and its output.format must be
 *    "compressed-tensors" (int-quantized W8A8: bits and act_bits 8) or "dense".
 *  - Step order: pruning (sparsegpt, wanda, magnitude) comes before quantization;
 *    a job quantizes once (rtn, gptq, smoothquant, awq, or sparsegpt with bits > 0); nothing
 *    but eval follows qlora.
 *  - sha256 is over json_dumps(doc, JSON_SORT_KEYS | JSON_COMPACT) of the document
 *    as written (defaults are not added, so spelling out a default changes it). */
#ifndef SQ_JOBS_SPEC_H
#define SQ_JOBS_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "model/kv_scales.h"
#include "quant/awq.h"
#include "quant/output_format.h"
#include "quant/prune.h"
#include "quant/quant_result.h"
#include "quant/smoothquant.h"
#include "store/store.h"

typedef enum {
    SQ_STEP_RTN,
    SQ_STEP_GPTQ,
    SQ_STEP_SPARSEGPT,
    SQ_STEP_WANDA,
    SQ_STEP_MAGNITUDE,
    SQ_STEP_QLORA,
    SQ_STEP_EVAL,
    SQ_STEP_SMOOTHQUANT,
    SQ_STEP_KV_CACHE,
    SQ_STEP_AWQ
} sq_step_kind;

typedef enum { SQ_PARALLEL_SEQUENTIAL, SQ_PARALLEL_PIPELINE } sq_parallel_mode;

/* qlora. */
typedef struct {
    int r;
    double alpha;
    double dropout;
    char **target_modules; /* e.g. q_proj, v_proj */
    int n_target_modules;
    char *base_quant;   /* "nf4" or "gptq" */
    double learning_rate;
    int steps;
    int batch_size;
    int grad_accum;
    int seqlen;
    double weight_decay;
    bool recompute;     /* activation recomputation */
    char *train_data;   /* URI; defaults to data.calibration */
    bool jsonl;         /* format "jsonl": one {"prompt", "completion"} object per line (default "text") */
    bool token_ids;     /* format "token_ids": whitespace-separated ids, already tokenized */
    char *prompt_field;     /* default "prompt" */
    char *completion_field; /* default "completion" */
    char *eval_data;    /* URI of held-out data (same format), NULL: none */
    int eval_every;     /* steps between held-out evaluations (default 0: at the end only) */
    int save_every;     /* steps between journal checkpoints (default 50) */
    bool merge;         /* also write the merged model (dequantized base + s B A) */
    bool cosine;        /* lr_schedule "cosine" (default "constant") */
    int warmup_steps;   /* default 0 */
    double max_grad_norm; /* global-norm clipping, 0 = off (default 1.0) */
} sq_lora_options;

/* eval: perplexity over non-overlapping windows. */
typedef struct {
    char *data;       /* URI of the text; required */
    int seqlen;       /* default: data.seqlen or 2048 */
    int max_windows;  /* 0 = all */
    int kv_cache_bits;/* 0 = off; else simulate a quantized KV cache */
    int act_bits;     /* 0 = off; else simulate per-token dynamic int activations (W8A8) */
    bool token_ids;   /* "format": "token_ids": data holds ids, not text */
    char *kv_cache_scales; /* "model" or the URI of a kv_cache_scales.json; NULL: none */
    char *kv_cache_dtype;  /* "int8" / "fp8"; NULL: the scales' own */
    int kv_cache_kivi;     /* 0 = off; 2 or 4: KIVI (model/kv_cache.h) */
} sq_eval_options;

typedef struct {
    sq_step_kind kind;
    sq_quant_options quant;   /* rtn, gptq, awq (its quantization); smoothquant's weights (per channel, symmetric) */
    sq_smooth_options smooth; /* smoothquant */
    sq_sparse_options sparse; /* sparsegpt, wanda, magnitude */
    sq_lora_options lora;     /* qlora */
    sq_eval_options eval;     /* eval */
    sq_kv_calibration_options kv_cache; /* kv_cache */
    sq_awq_options awq;       /* awq (its search; the quantization is in quant) */
} sq_step;

typedef struct {
    char *store;   /* URI of the model store; NULL: no push */
    char *name;
    char *version;
} sq_push_options;

/* data.sampling: how the calibration windows are cut from the token stream. */
typedef enum {
    SQ_SAMPLING_RANDOM,     /* "random" (default): seeded random starts */
    SQ_SAMPLING_CONSECUTIVE /* "consecutive": window i = ids[i*seqlen, (i+1)*seqlen) */
} sq_window_sampling;

typedef struct {
    char *name;
    char *model_uri;
    char *calibration_uri; /* data.calibration (required when a calibration step is present) */
    bool calibration_token_ids; /* data.format "token_ids" */
    sq_window_sampling sampling; /* data.sampling, default random */
    int nsamples;          /* default 128 */
    int seqlen;            /* default 2048 */
    sq_step *steps;
    int n_steps;
    char *state_uri;
    char *output_uri;      /* required when a step produces a model */
    sq_parallel_mode mode;
    int micro_batch;       /* pipeline micro-batch size, default 4 */
    int pipeline_blocks;   /* pipeline: number of layer blocks; 0 (default) = one per rank.
                              The quantized model depends on the block cut, not on the rank
                              count, so a fixed "blocks" gives the same model on any -np. */
    uint64_t seed;
    sq_storage_options storage;
    sq_push_options push;
    sq_output_format output_format; /* "output": {"format"}; default SQ_OUTPUT_GPTQ */
    uint64_t max_shard_bytes;       /* "output": {"max_shard_bytes"}; 0: each writer's default */
    char sha256[65];       /* hash of the canonical spec JSON, for the journal */
} sq_job_spec;

/* Parse and validate spec text; `origin` names the file in messages. */
sq_status sq_job_spec_parse(sq_job_spec *spec, const char *origin, const char *text);
/* Read a spec file and parse it. */
sq_status sq_job_spec_load(sq_job_spec *spec, const char *path);
void sq_job_spec_free(sq_job_spec *spec);

const char *sq_step_kind_name(sq_step_kind kind);

#endif
