/* make_tiny_model.c: writes a tiny, deterministic Hugging Face Llama-family checkpoint for tests.
 *
 *   make_tiny_model OUT_DIR [--layers N] [--hidden H] [--intermediate I] [--heads A]
 *                   [--kv-heads K] [--vocab V] [--seed S] [--dtype bf16|fp16|f32]
 *                   [--shards N] [--arch llama|mistral|qwen2] [--tie]
 *
 * Output: config.json, model.safetensors (or N shards model-0000k-of-0000N.safetensors and
 * model.safetensors.index.json), tokenizer.json (byte-level BPE) and tokenizer_config.json.
 *
 * Weights: one splitmix64 stream seeded with --seed gives each tensor, in the fixed order listed
 * by add_tensors(), its own seed (so the same seed gives the same tensors whatever --shards is);
 * inside a tensor, every chunk of CHUNK values has a splitmix64 stream seeded from the tensor's
 * seed and the chunk index, so chunks are drawn in parallel (a 7B-shaped model takes seconds,
 * not minutes) with the same result on any thread count. Normals come from Box-Muller
 * (u1 in (0,1], u2 in [0,1): sqrt(-2 ln u1) cos(2 pi u2), one normal per pair).
 * Scales keep the next-token distribution peaked rather than uniform: embeddings N(0,1), linear
 * weights N(0, (0.5/sqrt(in))^2), biases N(0, 0.1^2), norms 1 + N(0, 0.05^2), lm_head
 * N(0, (2/sqrt(hidden))^2). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/dtype.h"
#include "core/fileio.h"
#include "core/safetensors.h"

#define N_SPECIAL 3 /* <unk>, <s>, </s> */
#define N_BYTE_TOKENS 256

typedef struct {
    int layers, hidden, intermediate, heads, kv_heads, vocab, shards;
    uint64_t seed;
    sq_dtype dtype;
    const char *arch;
    int tie;
} options;

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    void *data; /* stored bytes in the output dtype */
} tensor;

typedef struct {
    tensor *items;
    int count, capacity;
} tensor_list;

/* ---- deterministic random numbers ---- */

#define CHUNK ((size_t)1 << 16)

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *state) { return (double)(splitmix64(state) >> 11) * 0x1p-53; }

static double normal(uint64_t *state)
{
    double u1 = 1.0 - uniform01(state);
    double u2 = uniform01(state);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---- tensors ---- */

static int add_tensor(tensor_list *list, const options *opt, uint64_t *rng, const char *name, int64_t rows,
                      int64_t cols, double mean, double std)
{
    if (list->count == list->capacity) {
        int cap = list->capacity ? list->capacity * 2 : 64;
        tensor *grown = realloc(list->items, (size_t)cap * sizeof *grown);
        if (!grown)
            return -1;
        list->items = grown;
        list->capacity = cap;
    }
    tensor *t = &list->items[list->count];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    size_t n = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    float *values = malloc(n * sizeof *values);
    t->data = malloc(n * sq_dtype_size(opt->dtype));
    if (!values || !t->data) {
        free(values);
        free(t->data);
        return -1;
    }
    uint64_t tensor_seed = splitmix64(rng);
    size_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(dynamic)
    for (size_t c = 0; c < chunks; c++) {
        uint64_t chunk_seed = tensor_seed ^ (0x632be59bd9b4e019ull * (c + 1));
        uint64_t state = splitmix64(&chunk_seed);
        size_t end = (c + 1) * CHUNK < n ? (c + 1) * CHUNK : n;
        for (size_t i = c * CHUNK; i < end; i++)
            values[i] = (float)(mean + std * normal(&state));
    }
    sq_convert_from_f32(t->data, opt->dtype, values, n);
    free(values);
    list->count++;
    return 0;
}

static int add_tensors(tensor_list *list, const options *opt)
{
    uint64_t rng = opt->seed;
    int64_t h = opt->hidden, inter = opt->intermediate, hd = opt->hidden / opt->heads;
    int64_t q_out = opt->heads * hd, kv_out = opt->kv_heads * hd;
    int bias = !strcmp(opt->arch, "qwen2");
    double lin_h = 0.5 / sqrt((double)h), lin_q = 0.5 / sqrt((double)q_out), lin_i = 0.5 / sqrt((double)inter);
    char name[96];
    int rc = add_tensor(list, opt, &rng, "model.embed_tokens.weight", opt->vocab, h, 0, 1.0);
    for (int l = 0; l < opt->layers && rc == 0; l++) {
        static const char *const attn[3] = {"q", "k", "v"};
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        rc |= add_tensor(list, opt, &rng, name, h, 0, 1.0, 0.05);
        for (int p = 0; p < 3 && rc == 0; p++) {
            int64_t out = p == 0 ? q_out : kv_out;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.%s_proj.weight", l, attn[p]);
            rc |= add_tensor(list, opt, &rng, name, out, h, 0, lin_h);
            if (bias) {
                snprintf(name, sizeof name, "model.layers.%d.self_attn.%s_proj.bias", l, attn[p]);
                rc |= add_tensor(list, opt, &rng, name, out, 0, 0, 0.1);
            }
        }
        snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.weight", l);
        rc |= add_tensor(list, opt, &rng, name, h, q_out, 0, lin_q);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        rc |= add_tensor(list, opt, &rng, name, h, 0, 1.0, 0.05);
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
        rc |= add_tensor(list, opt, &rng, name, inter, h, 0, lin_h);
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
        rc |= add_tensor(list, opt, &rng, name, inter, h, 0, lin_h);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        rc |= add_tensor(list, opt, &rng, name, h, inter, 0, lin_i);
    }
    if (rc == 0)
        rc = add_tensor(list, opt, &rng, "model.norm.weight", h, 0, 1.0, 0.05);
    if (rc == 0 && !opt->tie)
        rc = add_tensor(list, opt, &rng, "lm_head.weight", opt->vocab, h, 0, 2.0 / sqrt((double)h));
    return rc;
}

static uint64_t tensor_bytes(const tensor *t, sq_dtype dtype)
{
    return (uint64_t)t->shape[0] * (uint64_t)(t->ndim == 2 ? t->shape[1] : 1) * sq_dtype_size(dtype);
}

/* ---- files ---- */

static int write_json(const char *dir, const char *name, json_t *value)
{
    char *path = sq_path_join(dir, name);
    char *text = json_dumps(value, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    int rc = -1;
    if (path && text) {
        size_t len = strlen(text);
        text[len] = '\n'; /* replaces the NUL; the length below excludes it again */
        rc = sq_write_file_atomic(path, text, len + 1) == SQ_OK ? 0 : -1;
    }
    free(path);
    free(text);
    json_decref(value);
    return rc;
}

static int write_shard(const char *dir, const char *file, const tensor *items, int n, sq_dtype dtype)
{
    sq_st_entry *entries = calloc((size_t)n, sizeof *entries);
    char *path = sq_path_join(dir, file);
    json_t *meta = json_pack("{s:s}", "format", "pt");
    int rc = -1;
    if (entries && path && meta) {
        for (int i = 0; i < n; i++)
            entries[i] = (sq_st_entry){.name = items[i].name, .dtype = dtype, .ndim = items[i].ndim,
                                       .shape = {items[i].shape[0], items[i].shape[1]}, .data = items[i].data};
        rc = sq_st_write(path, entries, n, meta) == SQ_OK ? 0 : -1;
    }
    free(entries);
    free(path);
    json_decref(meta);
    return rc;
}

/* Tensors are cut into `shards` contiguous runs of roughly equal byte size. */
static int write_weights(const char *dir, const tensor_list *list, const options *opt)
{
    if (opt->shards == 1)
        return write_shard(dir, "model.safetensors", list->items, list->count, opt->dtype);
    uint64_t total = 0;
    for (int i = 0; i < list->count; i++)
        total += tensor_bytes(&list->items[i], opt->dtype);
    json_t *weight_map = json_object();
    int start = 0;
    uint64_t done = 0;
    for (int s = 0; s < opt->shards; s++) {
        int end = start + 1; /* every shard gets at least one tensor */
        done += tensor_bytes(&list->items[start], opt->dtype);
        int left_for_others = opt->shards - s - 1;
        while (end < list->count - left_for_others &&
               (s == opt->shards - 1 || done < total * (uint64_t)(s + 1) / (uint64_t)opt->shards))
            done += tensor_bytes(&list->items[end++], opt->dtype);
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, opt->shards);
        if (write_shard(dir, file, list->items + start, end - start, opt->dtype) != 0) {
            json_decref(weight_map);
            return -1;
        }
        for (int i = start; i < end; i++)
            json_object_set_new(weight_map, list->items[i].name, json_string(file));
        start = end;
    }
    json_t *index = json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)total, "weight_map",
                              weight_map);
    return write_json(dir, "model.safetensors.index.json", index);
}

static const char *torch_dtype_name(sq_dtype dtype)
{
    return dtype == SQ_DTYPE_BF16 ? "bfloat16" : dtype == SQ_DTYPE_F16 ? "float16" : "float32";
}

static int write_config(const char *dir, const options *opt)
{
    int qwen2 = !strcmp(opt->arch, "qwen2"), mistral = !strcmp(opt->arch, "mistral");
    const char *architecture = qwen2 ? "Qwen2ForCausalLM" : mistral ? "MistralForCausalLM" : "LlamaForCausalLM";
    json_t *cfg = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:i, s:b, s:s, s:i, s:i, s:s, s:b}",
        "architectures", architecture, "model_type", opt->arch, "hidden_size", opt->hidden, "intermediate_size",
        opt->intermediate, "num_hidden_layers", opt->layers, "num_attention_heads", opt->heads,
        "num_key_value_heads", opt->kv_heads, "head_dim", opt->hidden / opt->heads, "vocab_size", opt->vocab,
        "rms_norm_eps", 1e-5, "rope_theta", qwen2 ? 1000000.0 : 10000.0, "max_position_embeddings", 2048,
        "tie_word_embeddings", opt->tie, "torch_dtype", torch_dtype_name(opt->dtype), "bos_token_id", 1,
        "eos_token_id", 2, "hidden_act", "silu", "use_cache", 1);
    if (!cfg)
        return -1;
    if (qwen2)
        json_object_set_new(cfg, "use_sliding_window", json_false());
    else
        json_object_set_new(cfg, "attention_bias", json_false());
    if (mistral)
        json_object_set_new(cfg, "sliding_window", json_null());
    return write_json(dir, "config.json", cfg);
}

/* GPT-2's reversible byte -> unicode map: printable Latin-1 bytes map to themselves, the other
 * 68 bytes to U+0100 upwards in byte order. Writes the UTF-8 of byte b's symbol into out. */
static void byte_symbol(int b, char out[3])
{
    int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    int cp = b;
    if (!printable) {
        int k = 0;
        for (int c = 0; c < b; c++)
            k += !((c >= '!' && c <= '~') || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff));
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static json_t *special_token(int id, const char *content)
{
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content, "single_word", 0,
                     "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

/* A few merges so BPE merging is exercised ("Ġ" is the symbol of the space byte). */
static const char *const merges[][2] = {
    {"\xc4\xa0", "t"}, {"h", "e"}, {"i", "n"}, {"\xc4\xa0", "a"}, {"e", "r"}, {"\xc4\xa0t", "he"},
};
#define N_MERGES ((int)(sizeof merges / sizeof merges[0]))

static int write_tokenizer(const char *dir)
{
    static const char *const specials[N_SPECIAL] = {"<unk>", "<s>", "</s>"};
    json_t *vocab = json_object(), *added = json_array(), *merge_list = json_array();
    for (int i = 0; i < N_SPECIAL; i++) {
        json_object_set_new(vocab, specials[i], json_integer(i));
        json_array_append_new(added, special_token(i, specials[i]));
    }
    for (int b = 0; b < N_BYTE_TOKENS; b++) {
        char sym[3];
        byte_symbol(b, sym);
        json_object_set_new(vocab, sym, json_integer(N_SPECIAL + b));
    }
    for (int m = 0; m < N_MERGES; m++) {
        char joined[16], pair[16];
        snprintf(joined, sizeof joined, "%s%s", merges[m][0], merges[m][1]);
        snprintf(pair, sizeof pair, "%s %s", merges[m][0], merges[m][1]);
        json_object_set_new(vocab, joined, json_integer(N_SPECIAL + N_BYTE_TOKENS + m));
        json_array_append_new(merge_list, json_string(pair));
    }
    json_t *tok = json_pack(
        "{s:s, s:n, s:n, s:o, s:n,"
        " s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}], s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}],"
        "    s:{s:{s:s, s:[i], s:[s]}}},"
        " s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer",
        "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
        "post_processor", "type", "TemplateProcessing",
        "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "pair", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id", "A", "type_id", 0,
        "SpecialToken", "id", "<s>", "type_id", 1, "Sequence", "id", "B", "type_id", 1,
        "special_tokens", "<s>", "id", "<s>", "ids", 1, "tokens", "<s>",
        "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1,
        "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
        "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merge_list);
    if (!tok)
        return -1;
    if (write_json(dir, "tokenizer.json", tok) != 0)
        return -1;
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:b, s:s}", "bos_token", "<s>", "eos_token", "</s>", "unk_token",
                            "<unk>", "add_bos_token", 1, "add_eos_token", 0, "tokenizer_class",
                            "PreTrainedTokenizerFast");
    return write_json(dir, "tokenizer_config.json", cfg);
}

/* ---- command line ---- */

static int usage(void)
{
    fprintf(stderr, "usage: make_tiny_model OUT_DIR [--layers N] [--hidden H] [--intermediate I] [--heads A]\n"
                    "       [--kv-heads K] [--vocab V] [--seed S] [--dtype bf16|fp16|f32] [--shards N]\n"
                    "       [--arch llama|mistral|qwen2] [--tie]\n");
    return 2;
}

static int parse_positive(const char *flag, const char *text, int *out)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (*text == '\0' || *end != '\0' || v <= 0 || v > 1 << 24) {
        fprintf(stderr, "make_tiny_model: %s needs a positive integer, got \"%s\"\n", flag, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_args(int argc, char **argv, options *opt, const char **out_dir)
{
    *opt = (options){.layers = 2, .hidden = 64, .intermediate = 160, .heads = 4, .kv_heads = 2, .vocab = 512,
                     .shards = 1, .seed = 0, .dtype = SQ_DTYPE_BF16, .arch = "llama", .tie = 0};
    *out_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--tie")) {
            opt->tie = 1;
            continue;
        }
        if (a[0] != '-') {
            if (*out_dir)
                return -1;
            *out_dir = a;
            continue;
        }
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        int rc = 0;
        if (!strcmp(a, "--layers")) rc = parse_positive(a, v, &opt->layers);
        else if (!strcmp(a, "--hidden")) rc = parse_positive(a, v, &opt->hidden);
        else if (!strcmp(a, "--intermediate")) rc = parse_positive(a, v, &opt->intermediate);
        else if (!strcmp(a, "--heads")) rc = parse_positive(a, v, &opt->heads);
        else if (!strcmp(a, "--kv-heads")) rc = parse_positive(a, v, &opt->kv_heads);
        else if (!strcmp(a, "--vocab")) rc = parse_positive(a, v, &opt->vocab);
        else if (!strcmp(a, "--shards")) rc = parse_positive(a, v, &opt->shards);
        else if (!strcmp(a, "--seed")) {
            char *end;
            opt->seed = strtoull(v, &end, 10);
            rc = (*v == '\0' || *end != '\0') ? -1 : 0;
        } else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "bf16")) opt->dtype = SQ_DTYPE_BF16;
            else if (!strcmp(v, "fp16")) opt->dtype = SQ_DTYPE_F16;
            else if (!strcmp(v, "f32")) opt->dtype = SQ_DTYPE_F32;
            else rc = -1;
        } else if (!strcmp(a, "--arch")) {
            if (strcmp(v, "llama") && strcmp(v, "mistral") && strcmp(v, "qwen2"))
                rc = -1;
            opt->arch = v;
        } else
            rc = -1;
        if (rc != 0)
            return -1;
    }
    return *out_dir ? 0 : -1;
}

static int check_options(const options *opt, int n_tensors)
{
    const char *why = NULL;
    if (opt->hidden % opt->heads != 0)
        why = "--hidden must be a multiple of --heads";
    else if ((opt->hidden / opt->heads) % 2 != 0)
        why = "head dim (hidden/heads) must be even for RoPE";
    else if (opt->heads % opt->kv_heads != 0)
        why = "--heads must be a multiple of --kv-heads";
    else if (opt->vocab < N_SPECIAL + N_BYTE_TOKENS + N_MERGES)
        why = "--vocab must be at least the tokenizer's size (265)";
    else if (opt->shards > n_tensors)
        why = "--shards exceeds the number of tensors";
    if (why)
        fprintf(stderr, "make_tiny_model: %s\n", why);
    return why ? -1 : 0;
}

int main(int argc, char **argv)
{
    options opt;
    const char *dir;
    if (parse_args(argc, argv, &opt, &dir) != 0)
        return usage();
    int n_tensors = 1 + opt.layers * (9 + (!strcmp(opt.arch, "qwen2") ? 3 : 0)) + 1 + !opt.tie;
    if (check_options(&opt, n_tensors) != 0)
        return 2;
    if (sq_make_dirs(dir) != SQ_OK) {
        fprintf(stderr, "make_tiny_model: %s\n", sq_last_error());
        return 1;
    }
    tensor_list list = {0};
    int rc = add_tensors(&list, &opt);
    if (rc == 0)
        rc = write_weights(dir, &list, &opt);
    if (rc == 0)
        rc = write_config(dir, &opt);
    if (rc == 0)
        rc = write_tokenizer(dir);
    for (int i = 0; i < list.count; i++)
        free(list.items[i].data);
    free(list.items);
    if (rc != 0) {
        fprintf(stderr, "make_tiny_model: cannot write %s: %s\n", dir, sq_last_error());
        return 1;
    }
    return 0;
}
