/* test_lora_train.c: the whole-model LoRA step (lora/trainer.h) on a tiny
 * generated model, checked against a derivative computed another way —
 * central finite differences of the loss along a random direction of all
 * adapter parameters — and for the promises the trainer makes: activation
 * recomputation changes no bit of the gradients, a chunked LM head gives the
 * loss of an unchunked one, and bad adapter shapes are refused by name.
 * (The gradients are compared with PyTorch autograd in tests/python/test_lora_grad.py.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "lora/trainer.h"

enum { BATCH = 2, SEQ = 6, ROWS = BATCH * SEQ };

static char model_dir[256];
static sq_model_config cfg;
static sq_checkpoint *ckpt;
static sq_lora_base base;
static char *all_targets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static int setup(void **state)
{
    (void)state;
    snprintf(model_dir, sizeof model_dir, "/tmp/sq_test_lora_XXXXXX");
    if (!mkdtemp(model_dir) || kn_init(0) != SQ_OK)
        return -1;
    const char *repo = getenv("SHARDQ_ROOT") ? getenv("SHARDQ_ROOT") : ".";
    char cmd[1024], path[512];
    snprintf(cmd, sizeof cmd, "%s/build/tools/make_tiny_model %s/m --layers 2 --hidden 32 --intermediate 64 "
             "--heads 4 --kv-heads 2 --vocab 280 --dtype f32 --seed 5", repo, model_dir);
    if (system(cmd) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/m/config.json", model_dir);
    snprintf(cmd, sizeof cmd, "%s/m", model_dir);
    if (sq_model_config_load(&cfg, path) != SQ_OK || sq_checkpoint_open(&ckpt, cmd) != SQ_OK)
        return -1;
    return sq_lora_base_open(&base, &cfg, ckpt, SQ_LORA_BASE_AS_STORED) == SQ_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sq_lora_base_close(&base);
    sq_checkpoint_close(ckpt);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", model_dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct {
    int32_t ids[ROWS], targets[ROWS];
    float weight[ROWS];
} batch_data;

static void make_batch(batch_data *b)
{
    sq_rng rng;
    sq_rng_seed(&rng, 11);
    for (int i = 0; i < ROWS; i++)
        b->ids[i] = (int32_t)sq_rng_below(&rng, (uint64_t)cfg.vocab_size);
    for (int i = 0; i < ROWS; i++) {
        b->targets[i] = (i + 1) % SEQ ? b->ids[i + 1] : -1;
        b->weight[i] = 1.0f / (BATCH * (SEQ - 1));
    }
}

/* An adapter with every parameter random (B too, so every path has a gradient). */
static void random_adapter(sq_lora_adapter *a)
{
    assert_int_equal(sq_lora_adapter_create(a, &cfg, 3, 6.0f, 0.0f, all_targets, 7), SQ_OK);
    float *p = malloc(sizeof(float) * a->n_params);
    sq_rng rng;
    sq_rng_seed(&rng, 3);
    for (size_t i = 0; i < a->n_params; i++)
        p[i] = (float)((double)(sq_rng_next(&rng) >> 11) / 9007199254740992.0 - 0.5) * 0.4f;
    assert_int_equal(kn_upload(a->params, p, sizeof(float) * a->n_params), SQ_OK);
    free(p);
}

static double run(sq_lora_adapter *a, bool recompute, int vocab_chunk, bool backward)
{
    sq_lora_trainer t;
    batch_data b;
    make_batch(&b);
    double loss;
    assert_int_equal(sq_lora_trainer_init(&t, &base, a, recompute, ROWS, vocab_chunk), SQ_OK);
    assert_int_equal(sq_lora_trainer_run(&t, b.ids, b.targets, b.weight, BATCH, SEQ, backward, 0, &loss, NULL), SQ_OK);
    sq_lora_trainer_free(&t);
    return loss;
}

static void test_gradient_matches_finite_differences(void **state)
{
    (void)state;
    sq_lora_adapter a;
    random_adapter(&a);
    run(&a, true, 50, true);
    size_t n = a.n_params;
    float *p = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *q = malloc(sizeof(float) * n);
    assert_int_equal(kn_download(p, a.params, sizeof(float) * n), SQ_OK);
    assert_int_equal(kn_download(g, a.grads, sizeof(float) * n), SQ_OK);
    sq_rng rng;
    sq_rng_seed(&rng, 17);
    double analytic = 0.0, h = 1e-3;
    float *delta = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) {
        delta[i] = sq_rng_next(&rng) & 1 ? 1.0f : -1.0f;
        analytic += (double)g[i] * delta[i];
    }
    double loss[2];
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < n; i++)
            q[i] = p[i] + (float)((side ? -h : h) * delta[i]);
        assert_int_equal(kn_upload(a.params, q, sizeof(float) * n), SQ_OK);
        loss[side] = run(&a, true, 50, false);
    }
    double numeric = (loss[0] - loss[1]) / (2 * h);
    printf("# directional derivative: backward %.6f, finite differences %.6f\n", analytic, numeric);
    assert_true(fabs(analytic) > 1e-2);
    assert_true(fabs(analytic - numeric) <= 2e-3 * fabs(analytic));
    free(p), free(g), free(q), free(delta);
    sq_lora_adapter_free(&a);
}

static void test_recompute_and_chunks_change_nothing(void **state)
{
    (void)state;
    sq_lora_adapter a, b;
    random_adapter(&a);
    random_adapter(&b);
    double la = run(&a, true, 37, true), lb = run(&b, false, 0, true);
    assert_true(fabs(la - lb) <= 1e-6 * fabs(la)); /* chunked vs whole vocabulary: summation order only */
    sq_lora_adapter c;
    random_adapter(&c);
    double lc = run(&c, false, 37, true);
    assert_true(la == lc); /* recomputation on/off, same chunks: bit-identical */
    float *ga = malloc(sizeof(float) * a.n_params), *gc = malloc(sizeof(float) * a.n_params);
    assert_int_equal(kn_download(ga, a.grads, sizeof(float) * a.n_params), SQ_OK);
    assert_int_equal(kn_download(gc, c.grads, sizeof(float) * a.n_params), SQ_OK);
    assert_memory_equal(ga, gc, sizeof(float) * a.n_params);
    free(ga), free(gc);
    sq_lora_adapter_free(&a), sq_lora_adapter_free(&b), sq_lora_adapter_free(&c);
}

static void test_bad_adapters_are_refused(void **state)
{
    (void)state;
    sq_lora_adapter a;
    char *unknown[] = {"qkv_proj"};
    assert_int_equal(sq_lora_adapter_create(&a, &cfg, 4, 8, 0, unknown, 1), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "qkv_proj"));
    char *k[] = {"k_proj"}; /* k_proj is [16, 32]: r 17 does not fit */
    assert_int_equal(sq_lora_adapter_create(&a, &cfg, 17, 8, 0, k, 1), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "r 17"));
}

static void test_peft_initialisation(void **state)
{
    (void)state;
    sq_lora_adapter a;
    char *q[] = {"q_proj"};
    assert_int_equal(sq_lora_adapter_create(&a, &cfg, 4, 8, 0, q, 1), SQ_OK);
    assert_int_equal(sq_lora_adapter_init(&a, 9), SQ_OK);
    float *p = malloc(sizeof(float) * a.n_params);
    assert_int_equal(kn_download(p, a.params, sizeof(float) * a.n_params), SQ_OK);
    const sq_lora_module *m = sq_lora_find(&a, 1, SQ_LINEAR_Q);
    double bound = 1.0 / sqrt(32.0), max_abs = 0;
    for (int i = 0; i < 4 * 32; i++)
        max_abs = fmax(max_abs, fabs(p[m->a_offset + i]));
    assert_true(max_abs <= bound && max_abs > 0.8 * bound); /* U(-1/sqrt(in), 1/sqrt(in)) */
    for (int i = 0; i < m->out_features * 4; i++)
        assert_true(p[m->b_offset + i] == 0.0f);
    free(p);
    sq_lora_adapter_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient_matches_finite_differences),
        cmocka_unit_test(test_recompute_and_chunks_change_nothing),
        cmocka_unit_test(test_bad_adapters_are_refused),
        cmocka_unit_test(test_peft_initialisation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
