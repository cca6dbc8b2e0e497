/* cmd_eval.c: `shardq eval` — perplexity of a model directory over a text
 * file (tokenized with the model's tokenizer) or a file of token ids, with
 * an optional simulated quantized KV cache; prints progress (after layers, at
 * least every --progress-every seconds, so long windows are not silent) and
 * the result, and writes metrics JSON with --out. A seqlen beyond the model's
 * max_position_embeddings is refused unless --allow-long. With --adapter DIR, a
 * PEFT LoRA adapter is applied to the model (lora/eval.h), the base quantized to
 * NF4 first when the adapter was trained on an NF4 base (its manifest says so).
 * --kv-cache-scales / --kv-cache-dtype / --kv-cache-kivi: a quantized KV cache with
 * calibrated static scales or KIVI's (model/kv_cache_request.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cmds.h"
#include "core/fileio.h"
#include "core/log.h"
#include "kernels/kernels.h"
#include "lora/eval.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/corpus.h"
#include "model/forward.h"
#include "model/kv_cache_request.h"
#include "model/perplexity.h"
#include "model/token_ids.h"

typedef struct {
    const char *model_dir;
    const char *data_path;
    const char *data_ids_path;
    const char *out_path;
    bool allow_long;
    const char *adapter_dir;    /* --adapter: a PEFT LoRA adapter applied to the model */
    const char *token_nll_path; /* --token-nll: every scored token's NLL, one per line (with --adapter) */
    sq_perplexity_options ppl;
    sq_kv_cache_request kv;     /* --kv-cache-scales, --kv-cache-dtype, --kv-cache-kivi */
} eval_args;

static void eval_usage(FILE *out)
{
    fprintf(out, "usage: shardq eval --model DIR (--data TEXT_FILE | --data-ids IDS_FILE) [--seqlen N]\n"
                 "                   [--max-windows K] [--batch B] [--kv-cache-bits BITS] [--logits-chunk ROWS]\n"
                 "                   [--allow-long] [--progress-every SECONDS] [--out METRICS.json]\n"
                 "                   [--act-bits BITS]\n"
                 "                   [--kv-cache-scales PATH|model [--kv-cache-dtype int8|fp8]]\n"
                 "                   [--kv-cache-kivi BITS]\n"
                 "                   [--adapter DIR [--token-nll FILE]]\n"
                 "  perplexity over non-overlapping windows of N tokens (default: min(2048, max positions))\n"
                 "  --max-windows K  score the first K windows (0, the default: all)\n"
                 "  --allow-long  accept a seqlen beyond the model's max_position_embeddings\n"
                 "  --progress-every S  a progress line after a layer once S seconds passed since the last\n"
                 "               (default %d; 0: after every layer)\n"
                 "  --data       a text file, tokenized whole with the model's tokenizer.json\n"
                 "  --data-ids   whitespace-separated token ids instead of text\n"
                 "  --kv-cache-bits B  simulate a B-bit KV cache: each token's key (after RoPE) and value\n"
                 "               fake-quantized per head on an asymmetric min/max grid (0: off)\n"
                 "  --act-bits B  simulate B-bit dynamic activations (W8A8's A8): every decoder linear's\n"
                 "               input fake-quantized per token, symmetric, scale max|x|/(2^(B-1)-1) (0: off)\n"
                 "  --kv-cache-scales PATH|model  a KV cache with static per-head scales: a kv_cache_scales.json,\n"
                 "               or \"model\", the k_scale/v_scale tensors of the model (a kv_cache step's output)\n"
                 "  --kv-cache-dtype int8|fp8  the cache's grid (default: the one the scales were made for);\n"
                 "               fp8 is e4m3, rounded to nearest even and saturating at 448\n"
                 "  --kv-cache-kivi BITS  KIVI (2 or 4 bits): keys per channel over groups of 32 tokens, values per\n"
                 "               token, asymmetric; a window's last (seqlen mod 32) tokens stay in full precision\n"
                 "  --batch      windows per layer call (default: as many as fit 4 GiB of scratch)\n"
                 "  --logits-chunk ROWS  rows per LM-head call (default: as many as fit 128 MiB of logits)\n"
                 "  --adapter DIR  apply a PEFT LoRA adapter (a qlora step's output); an adapter trained on an\n"
                 "               NF4 base quantizes the model to NF4 first, as training saw it\n"
                 "  --token-nll FILE  with --adapter: each scored token's NLL, one per line\n",
            (int)SQ_PROGRESS_SECONDS);
}

static int parse_int_arg(const char *flag, const char *text, int min, int *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v < min || v > 1 << 30) {
        fprintf(stderr, "shardq eval: %s expects an integer >= %d, got '%s'\n", flag, min, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* 0: parsed; 1: help printed; 2: usage error. */
static int parse_eval_args(eval_args *a, int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, NULL, 'm'},        {"data", required_argument, NULL, 'd'},
        {"data-ids", required_argument, NULL, 'i'},     {"seqlen", required_argument, NULL, 's'},
        {"max-windows", required_argument, NULL, 'w'}, {"batch", required_argument, NULL, 'b'},
        {"kv-cache-bits", required_argument, NULL, 'k'}, {"out", required_argument, NULL, 'o'},
        {"logits-chunk", required_argument, NULL, 'l'}, {"adapter", required_argument, NULL, 'a'},
        {"token-nll", required_argument, NULL, 't'},    {"allow-long", no_argument, NULL, 'L'},
        {"progress-every", required_argument, NULL, 'p'}, {"act-bits", required_argument, NULL, 'A'},
        {"kv-cache-scales", required_argument, NULL, 'S'}, {"kv-cache-dtype", required_argument, NULL, 'D'},
        {"kv-cache-kivi", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},               {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    int progress_seconds = (int)SQ_PROGRESS_SECONDS;
    if (sq_cmd_help_requested(argc, argv)) {
        eval_usage(stdout);
        return 1;
    }
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'm': a->model_dir = optarg; break;
        case 'd': a->data_path = optarg; break;
        case 'i': a->data_ids_path = optarg; break;
        case 'o': a->out_path = optarg; break;
        case 'a': a->adapter_dir = optarg; break;
        case 't': a->token_nll_path = optarg; break;
        case 's': bad = parse_int_arg("--seqlen", optarg, 2, &a->ppl.seqlen); break;
        case 'w': bad = parse_int_arg("--max-windows", optarg, 0, &a->ppl.max_windows); break;
        case 'b': bad = parse_int_arg("--batch", optarg, 1, &a->ppl.micro_batch); break;
        case 'l': bad = parse_int_arg("--logits-chunk", optarg, 1, &a->ppl.logits_chunk_rows); break;
        case 'k': bad = parse_int_arg("--kv-cache-bits", optarg, 0, &a->ppl.kv_cache_bits); break;
        case 'A': bad = parse_int_arg("--act-bits", optarg, 0, &a->ppl.act_bits); break;
        case 'p': bad = parse_int_arg("--progress-every", optarg, 0, &progress_seconds); break;
        case 'S': a->kv.scales = optarg; break;
        case 'D': a->kv.dtype = optarg; break;
        case 'K': bad = parse_int_arg("--kv-cache-kivi", optarg, 1, &a->kv.kivi_bits); break;
        case 'L': a->allow_long = true; break;
        case 'h': eval_usage(stdout); return 1;
        default: bad = 1; break;
        }
        if (bad) {
            eval_usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !a->model_dir || !a->data_path == !a->data_ids_path) {
        fprintf(stderr, "shardq eval: need --model and exactly one of --data / --data-ids\n");
        eval_usage(stderr);
        return 2;
    }
    if ((a->token_nll_path && !a->adapter_dir) || (a->adapter_dir && (a->ppl.kv_cache_bits || a->ppl.act_bits))) {
        fprintf(stderr, "shardq eval: --token-nll needs --adapter, and --adapter does not take --kv-cache-bits or "
                        "--act-bits\n");
        return 2;
    }
    if (a->ppl.act_bits == 1 || a->ppl.act_bits > 16) {
        fprintf(stderr, "shardq eval: --act-bits must be between 2 and 16 (0: off)\n");
        return 2;
    }
    if (a->ppl.kv_cache_bits > 16) {
        fprintf(stderr, "shardq eval: --kv-cache-bits must be between 1 and 16 (0: off)\n");
        return 2;
    }
    if (sq_kv_cache_requested(&a->kv) && (a->adapter_dir || a->ppl.kv_cache_bits)) {
        fprintf(stderr, "shardq eval: --kv-cache-scales / --kv-cache-kivi exclude --kv-cache-bits and --adapter\n");
        return 2;
    }
    if (sq_kv_cache_request_check(&a->kv, "shardq eval") != SQ_OK) {
        fprintf(stderr, "%s\n", sq_last_error());
        return 2;
    }
    a->ppl.progress_seconds = progress_seconds;
    return 0;
}

static sq_status load_tokens(const eval_args *a, const sq_model_config *cfg, int32_t **ids, size_t *n)
{
    if (a->data_ids_path)
        return sq_read_token_ids(a->data_ids_path, cfg->vocab_size, ids, n);
    return sq_load_corpus_tokens(a->model_dir, a->data_path, ids, n);
}

static sq_status write_metrics(const eval_args *a, const sq_perplexity_result *r, const sq_kv_cache *kv)
{
    json_t *doc = json_pack("{s:s, s:s, s:s, s:i, s:i, s:I, s:I, s:f, s:f, s:i, s:s}", "model", a->model_dir, "data",
                            a->data_ids_path ? a->data_ids_path : a->data_path, "data_format",
                            a->data_ids_path ? "token_ids" : "text", "seqlen", a->ppl.seqlen, "windows", r->windows,
                            "tokens", (json_int_t)r->tokens, "data_tokens", (json_int_t)r->data_tokens, "nll", r->nll, "ppl", r->ppl, "kv_cache_bits",
                            a->ppl.kv_cache_bits, "backend", kn_backend_name());
    if (doc)
        json_object_set_new(doc, "act_bits", json_integer(a->ppl.act_bits));
    if (!doc)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot build metrics JSON", a->out_path);
    if (sq_kv_cache_requested(&a->kv))
        sq_kv_cache_request_describe(&a->kv, kv, doc);
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(doc);
    if (!text)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot serialise metrics JSON", a->out_path);
    size_t len = strlen(text);
    sq_status st = sq_write_file_atomic(a->out_path, text, len);
    free(text);
    return st;
}

static sq_status write_token_nll(const char *path, const float *nll, long n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return sq_fail(SQ_ERR_IO, "%s: cannot write", path);
    for (long i = 0; i < n; i++)
        fprintf(f, "%.9g\n", nll[i]);
    return fclose(f) == 0 ? SQ_OK : sq_fail(SQ_ERR_IO, "%s: write failed", path);
}

/* Perplexity of the checkpoint with the adapter of a->adapter_dir applied. */
static sq_status eval_with_adapter(const eval_args *a, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                   const int32_t *ids, size_t n_ids, sq_perplexity_result *result)
{
    float *token_nll = NULL;
    if (a->token_nll_path && !(token_nll = malloc(sizeof(float) * (n_ids + 1))))
        return sq_fail(SQ_ERR_NOMEM, "out of memory");
    sq_status st = sq_lora_eval_adapter(a->adapter_dir, cfg, ckpt, ids, n_ids, a->ppl.seqlen, a->ppl.max_windows,
                                        result, token_nll);
    if (st == SQ_OK && a->token_nll_path)
        st = write_token_nll(a->token_nll_path, token_nll, result->tokens);
    free(token_nll);
    return st;
}

static sq_status run_eval(eval_args *a)
{
    sq_model_config cfg;
    char *config_path = sq_path_join(a->model_dir, "config.json");
    if (!config_path)
        return sq_fail(SQ_ERR_NOMEM, "cannot build the config path");
    sq_status st = sq_model_config_load(&cfg, config_path);
    free(config_path);
    SQ_TRY(st);
    if (a->ppl.seqlen == 0)
        a->ppl.seqlen = cfg.max_position_embeddings > 0 && cfg.max_position_embeddings < 2048
                            ? cfg.max_position_embeddings
                            : 2048;
    if (cfg.max_position_embeddings > 0 && a->ppl.seqlen > cfg.max_position_embeddings) {
        if (!a->allow_long)
            return sq_fail(SQ_ERR_ARG,
                           "--seqlen %d exceeds %s/config.json's max_position_embeddings %d (positions the model "
                           "was not trained on); pass --allow-long to evaluate anyway",
                           a->ppl.seqlen, a->model_dir, cfg.max_position_embeddings);
        sq_log_info("eval: warning: seqlen %d exceeds the model's max_position_embeddings %d (--allow-long)",
                    a->ppl.seqlen, cfg.max_position_embeddings);
    }
    SQ_TRY(kn_init(0));
    int32_t *ids = NULL;
    size_t n_ids = 0;
    sq_checkpoint *ckpt = NULL;
    sq_model model = {0};
    sq_kv_cache kv = {0};
    SQ_TRY_GOTO(st, load_tokens(a, &cfg, &ids, &n_ids), done);
    sq_log_info("eval: %s on %s, %zu tokens, seqlen %d, %s", a->model_dir,
                a->data_ids_path ? a->data_ids_path : a->data_path, n_ids, a->ppl.seqlen, kn_device_description());
    SQ_TRY_GOTO(st, sq_checkpoint_open(&ckpt, a->model_dir), done);
    sq_perplexity_result result;
    if (a->adapter_dir) {
        SQ_TRY_GOTO(st, eval_with_adapter(a, &cfg, ckpt, ids, n_ids, &result), done);
    } else {
        SQ_TRY_GOTO(st, sq_model_open(&model, &cfg, ckpt), done);
        if (sq_kv_cache_requested(&a->kv)) {
            SQ_TRY_GOTO(st, sq_kv_cache_open(&kv, &a->kv, a->model_dir, ckpt, &cfg), done);
            a->ppl.kv_cache = &kv;
        }
        SQ_TRY_GOTO(st, sq_perplexity(&model, ids, n_ids, &a->ppl, &result), done);
    }
    printf("windows %d  tokens %ld  nll %.6f  ppl %.4f\n", result.windows, result.tokens, result.nll, result.ppl);
    if (a->out_path)
        SQ_TRY_GOTO(st, write_metrics(a, &result, &kv), done);
done:
    sq_kv_cache_free(&kv);
    sq_model_close(&model);
    if (ckpt)
        sq_checkpoint_close(ckpt);
    free(ids);
    kn_shutdown();
    return st;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a;
    int parsed = parse_eval_args(&a, argc, argv);
    if (parsed)
        return parsed == 1 ? 0 : 2;
    if (run_eval(&a) != SQ_OK) {
        fprintf(stderr, "shardq eval: %s\n", sq_last_error());
        return 1;
    }
    return 0;
}
