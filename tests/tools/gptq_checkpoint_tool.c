/* gptq_checkpoint_tool.c: drives the GPTQ checkpoint writer and reader for tests.
 *
 *   gptq_checkpoint_tool write SRC OUT --linears a,b,... [--bits 4] [--group-size 128]
 *                        [--sym 1] [--max-shard-bytes N]
 *       RTN-quantizes the named linears of the model in SRC and writes a GPTQ
 *       checkpoint to OUT (RTN gives the same tensors GPTQ would, without calibration).
 *   gptq_checkpoint_tool read DIR LINEAR OUT.f32
 *       prints "OUT IN BITS" and writes the dequantized weight as raw little-endian fp32.
 *   gptq_checkpoint_tool is-gptq DIR
 *       prints "gptq" or "dense". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "kernels/kernels.h"
#include "model/gptq_reader.h"
#include "quant/gptq_checkpoint.h"
#include "quant/rtn.h"

typedef struct {
    char **names;
    sq_gptq_packed *packed;
    int n;
} packed_set;

static sq_status hand_over(void *ctx, const char *linear, sq_gptq_packed *out)
{
    packed_set *set = ctx;
    for (int k = 0; k < set->n; k++)
        if (strcmp(set->names[k], linear) == 0) {
            *out = set->packed[k];
            memset(&set->packed[k], 0, sizeof set->packed[k]);
            return SQ_OK;
        }
    return sq_fail(SQ_ERR_NOT_FOUND, "no packed result for %s", linear);
}

static const char *arg(int argc, char **argv, const char *name, const char *fallback)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return fallback;
}

static sq_status quantize_linear(const sq_checkpoint *ckpt, const char *linear, const sq_quant_options *opt,
                                 sq_gptq_packed *packed)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", linear);
    const sq_st_tensor *t = sq_checkpoint_find(ckpt, name);
    if (!t || t->ndim != 2)
        return sq_fail(SQ_ERR_NOT_FOUND, "%s: no matrix '%s'", sq_checkpoint_dir(ckpt), name);
    int rows = (int)t->shape[0], cols = (int)t->shape[1];
    float *W = NULL;
    sq_quant_result res = {0};
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&W, (size_t)rows * cols * sizeof(float)), done);
    SQ_TRY_GOTO(st, sq_checkpoint_read_f32(ckpt, name, W, (size_t)rows * cols), done);
    SQ_TRY_GOTO(st, sq_rtn_quantize(W, rows, cols, opt, &res), done);
    st = sq_gptq_pack(&res, linear, packed);
done:
    sq_quant_result_free(&res);
    kn_free(W);
    return st;
}

static int do_write(int argc, char **argv)
{
    sq_quant_options opt = {
        .bits = atoi(arg(argc, argv, "--bits", "4")),
        .group_size = atoi(arg(argc, argv, "--group-size", "128")),
        .sym = atoi(arg(argc, argv, "--sym", "1")),
        .damp_percent = 0.01,
        .block_size = 128,
        .true_sequential = true,
    };
    char *list = strdup(arg(argc, argv, "--linears", ""));
    packed_set set = {.names = calloc(64, sizeof(char *)), .packed = calloc(64, sizeof(sq_gptq_packed))};
    for (char *tok = strtok(list, ","); tok && set.n < 64; tok = strtok(NULL, ","))
        set.names[set.n++] = tok;
    sq_checkpoint *ckpt = NULL;
    sq_status st = sq_checkpoint_open(&ckpt, argv[2]);
    for (int k = 0; k < set.n && st == SQ_OK; k++)
        st = quantize_linear(ckpt, set.names[k], &opt, &set.packed[k]);
    if (st == SQ_OK) {
        sq_gptq_checkpoint_request req = {
            .source = ckpt,
            .linears = (const char *const *)set.names,
            .n_linears = set.n,
            .get_linear = hand_over,
            .ctx = &set,
            .options = &opt,
            .max_shard_bytes = strtoull(arg(argc, argv, "--max-shard-bytes", "0"), NULL, 10),
        };
        st = sq_gptq_checkpoint_write(&req, argv[3]);
    }
    for (int k = 0; k < set.n; k++)
        sq_gptq_packed_free(&set.packed[k]);
    free(set.names), free(set.packed), free(list);
    if (ckpt)
        sq_checkpoint_close(ckpt);
    return st;
}

static int do_read(char **argv)
{
    sq_checkpoint *ckpt = NULL;
    int out, in, bits;
    float *W = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, sq_checkpoint_open(&ckpt, argv[2]), done);
    SQ_TRY_GOTO(st, sq_gptq_linear_shape(ckpt, argv[3], &out, &in, &bits), done);
    W = malloc((size_t)out * in * sizeof(float));
    SQ_TRY_GOTO(st, sq_gptq_read_linear_f32(ckpt, argv[3], W, (size_t)out * in), done);
    SQ_TRY_GOTO(st, sq_write_file_atomic(argv[4], W, (size_t)out * in * sizeof(float)), done);
    printf("%d %d %d\n", out, in, bits);
done:
    free(W);
    if (ckpt)
        sq_checkpoint_close(ckpt);
    return st;
}

int main(int argc, char **argv)
{
    if (kn_init(0) != SQ_OK)
        return 1;
    sq_status st = SQ_ERR_ARG;
    if (argc >= 4 && strcmp(argv[1], "write") == 0)
        st = do_write(argc, argv);
    else if (argc == 5 && strcmp(argv[1], "read") == 0)
        st = do_read(argv);
    else if (argc == 3 && strcmp(argv[1], "is-gptq") == 0) {
        sq_checkpoint *ckpt = NULL;
        st = sq_checkpoint_open(&ckpt, argv[2]);
        if (st == SQ_OK) {
            printf("%s\n", sq_checkpoint_is_gptq(ckpt) ? "gptq" : "dense");
            sq_checkpoint_close(ckpt);
        }
    } else {
        fprintf(stderr, "usage: gptq_checkpoint_tool write SRC OUT --linears a,b | read DIR LINEAR OUT.f32 | "
                        "is-gptq DIR\n");
        return 2;
    }
    if (st != SQ_OK)
        fprintf(stderr, "gptq_checkpoint_tool: %s\n", sq_last_error());
    return st == SQ_OK ? 0 : 1;
}
