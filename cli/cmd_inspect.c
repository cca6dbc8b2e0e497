/* cmd_inspect.c: `shardq inspect DIR|FILE` — a model directory's config and tensor table, or one
 * safetensors file's tensor table, with totals. Every file is validated as it is opened, so
 * inspect is also the quickest way to check a checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "core/safetensors.h"
#include "model/checkpoint.h"
#include "model/config.h"

static const char *torch_name(sq_dtype dtype)
{
    switch (dtype) {
    case SQ_DTYPE_BF16: return "bfloat16";
    case SQ_DTYPE_F16: return "float16";
    default: return "float32";
    }
}

/* Where a setting came from: the config.json field, or the default where none gives it. */
static const char *origin_of(const char *field) { return field[0] ? field : "not in config.json: the default"; }

static void print_config(const char *path, const sq_model_config *c)
{
    printf("config: %s\n", path);
    printf("  %-24s %s (%s)\n", "architecture", c->architecture, c->model_type);
    printf("  %-24s %d\n", "num_hidden_layers", c->num_layers);
    printf("  %-24s %d\n", "hidden_size", c->hidden_size);
    printf("  %-24s %d\n", "intermediate_size", c->intermediate_size);
    printf("  %-24s %d (kv heads %d, head_dim %d)\n", "num_attention_heads", c->num_heads, c->num_kv_heads,
           c->head_dim);
    printf("  %-24s %d\n", "vocab_size", c->vocab_size);
    printf("  %-24s %d\n", "max_position_embeddings", c->max_position_embeddings);
    printf("  %-24s %g\n", "rms_norm_eps", c->rms_norm_eps);
    printf("  %-24s %g (%s)\n", "rope_theta", c->rope_theta, origin_of(c->rope_theta_from));
    if (c->rope_scaling == SQ_ROPE_SCALING_LLAMA3)
        printf("  %-24s llama3 (factor %g, low_freq_factor %g, high_freq_factor %g, original %d; %s)\n",
               "rope_type", c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
               c->rope_original_max_position, origin_of(c->rope_type_from));
    else if (c->rope_scaling == SQ_ROPE_SCALING_LINEAR)
        printf("  %-24s linear (factor %g; %s)\n", "rope_type", c->rope_factor, origin_of(c->rope_type_from));
    else
        printf("  %-24s default (%s)\n", "rope_type", origin_of(c->rope_type_from));
    printf("  %-24s %s\n", "tie_word_embeddings", c->tie_word_embeddings ? "true" : "false");
    printf("  %-24s q/k/v %s, o %s, mlp %s\n", "biases", c->attention_bias ? "yes" : "no",
           c->o_proj_bias ? "yes" : "no", c->mlp_bias ? "yes" : "no");
    printf("  %-24s bos %d, eos %d\n", "token ids", c->bos_token_id, c->eos_token_id);
    printf("  %-24s %s\n", "torch_dtype", torch_name(c->torch_dtype));
}

static void format_shape(const sq_st_tensor *t, char *out, size_t size)
{
    size_t used = (size_t)snprintf(out, size, "[");
    for (int d = 0; d < t->ndim && used < size; d++)
        used += (size_t)snprintf(out + used, size - used, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (used < size)
        snprintf(out + used, size - used, "]");
}

typedef struct {
    int count;
    unsigned long long bytes, params;
} totals;

static void print_row(const sq_st_tensor *t, const char *file, totals *sum)
{
    char shape[128];
    format_shape(t, shape, sizeof shape);
    printf("%-56s %-5s %-18s %-36s %12llu\n", t->name, sq_dtype_name(t->dtype), shape, file,
           (unsigned long long)t->nbytes);
    sum->count++;
    sum->bytes += t->nbytes;
    sum->params += sq_st_numel(t);
}

static void print_header(void) { printf("%-56s %-5s %-18s %-36s %12s\n", "tensor", "dtype", "shape", "file", "bytes"); }

static void print_totals(const totals *sum)
{
    printf("total: %d tensors, %llu parameters, %llu bytes\n", sum->count, sum->params, sum->bytes);
}

static int inspect_file(const char *path)
{
    sq_st_file f;
    if (sq_st_open(&f, path) != SQ_OK) {
        fprintf(stderr, "shardq inspect: %s\n", sq_last_error());
        return 1;
    }
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    totals sum = {0};
    print_header();
    for (int i = 0; i < f.header.n_tensors; i++)
        print_row(&f.header.tensors[i], base, &sum);
    print_totals(&sum);
    sq_st_close(&f);
    return 0;
}

static int inspect_dir(const char *dir)
{
    char *config_path = sq_path_join(dir, "config.json");
    uint64_t size;
    if (config_path && sq_file_size(config_path, &size) == SQ_OK) {
        sq_model_config cfg;
        if (sq_model_config_load(&cfg, config_path) != SQ_OK) {
            fprintf(stderr, "shardq inspect: %s\n", sq_last_error());
            free(config_path);
            return 1;
        }
        print_config(config_path, &cfg);
    }
    free(config_path);
    sq_checkpoint *ckpt;
    if (sq_checkpoint_open(&ckpt, dir) != SQ_OK) {
        fprintf(stderr, "shardq inspect: %s\n", sq_last_error());
        return 1;
    }
    totals sum = {0};
    print_header();
    for (int i = 0; i < sq_checkpoint_tensor_count(ckpt); i++)
        print_row(sq_checkpoint_tensor_at(ckpt, i), sq_checkpoint_tensor_file(ckpt, i), &sum);
    print_totals(&sum);
    sq_checkpoint_close(ckpt);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: shardq inspect DIR|FILE.safetensors\n");
        return 2;
    }
    struct stat sb;
    if (stat(argv[1], &sb) != 0) {
        fprintf(stderr, "shardq inspect: %s: no such file or directory\n", argv[1]);
        return 1;
    }
    return S_ISDIR(sb.st_mode) ? inspect_dir(argv[1]) : inspect_file(argv[1]);
}
