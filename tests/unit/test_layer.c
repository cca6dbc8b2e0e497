/* test_layer.c: the decoder layer's contract with calibration code: the hook
 * sees every linear's input in order with the right shape (q/k/v one input,
 * gate/up one input), weights written through the public pointers take
 * effect, and a failing hook stops the pass with its message kept. The
 * layer's numerics are checked end to end against NumPy in
 * tests/python/test_forward_reference.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/layer.h"

enum { BATCH = 2, SEQ = 5, ROWS = BATCH * SEQ };

static sq_model_config tiny_config(void)
{
    sq_model_config cfg = {0};
    cfg.hidden_size = 32;
    cfg.intermediate_size = 48;
    cfg.num_layers = 1;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.vocab_size = 64;
    cfg.rms_norm_eps = 1e-5f;
    cfg.rope_theta = 10000.0f;
    cfg.attention_bias = true;
    return cfg;
}

static void fill(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
    }
}

typedef struct {
    int calls;
    const char *names[16];
    int rows[16], in_features[16];
    const float *inputs[16];
    float first_values[16];
} hook_log;

static sq_status record_hook(void *ctx, const char *name, const float *input, int rows, int in_features)
{
    hook_log *log = ctx;
    log->names[log->calls] = name;
    log->rows[log->calls] = rows;
    log->in_features[log->calls] = in_features;
    log->inputs[log->calls] = input;
    log->first_values[log->calls] = input[0];
    log->calls++;
    return SQ_OK;
}

static void setup_layer(sq_model_config *cfg, sq_layer_weights *w, sq_layer_scratch *s)
{
    assert_int_equal(kn_init(0), SQ_OK);
    assert_int_equal(sq_layer_weights_alloc(w, cfg), SQ_OK);
    assert_int_equal(sq_layer_scratch_alloc(s, cfg, ROWS), SQ_OK);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        sq_linear *lin = &w->linear[i];
        fill(lin->weight, (size_t)lin->in_features * lin->out_features, 100u + i);
        if (lin->bias)
            fill(lin->bias, (size_t)lin->out_features, 200u + i);
    }
    fill(w->input_norm, (size_t)cfg->hidden_size, 7);
    fill(w->post_attention_norm, (size_t)cfg->hidden_size, 8);
}

static void test_hook_sees_each_linear_input(void **state)
{
    (void)state;
    sq_model_config cfg = tiny_config();
    sq_layer_weights w;
    sq_layer_scratch s;
    setup_layer(&cfg, &w, &s);
    assert_non_null(w.linear[SQ_LINEAR_Q].bias);
    assert_null(w.linear[SQ_LINEAR_O].bias);
    float x[ROWS * 32];
    fill(x, ROWS * 32, 3);
    hook_log log = {0};
    sq_layer_options opt = {.hook = record_hook, .hook_ctx = &log};
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH, SEQ, &s, &opt), SQ_OK);

    const char *expected[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                              "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    const int in_features[] = {32, 32, 32, 32, 32, 32, 48};
    assert_int_equal(log.calls, 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(log.names[i], expected[i]);
        assert_string_equal(sq_linear_name((sq_linear_id)i), expected[i]);
        assert_int_equal(log.rows[i], ROWS);
        assert_int_equal(log.in_features[i], in_features[i]);
    }
    /* q, k, v read the same normalised input; gate and up too */
    assert_ptr_equal(log.inputs[0], log.inputs[1]);
    assert_ptr_equal(log.inputs[0], log.inputs[2]);
    assert_ptr_equal(log.inputs[4], log.inputs[5]);
    assert_true(log.first_values[0] == log.first_values[2]);
    for (int i = 0; i < ROWS * 32; i++)
        assert_true(isfinite(x[i]));
    sq_layer_scratch_free(&s);
    sq_layer_weights_free(&w);
}

static void test_zero_output_projections_make_the_layer_identity(void **state)
{
    (void)state;
    /* with o_proj and down_proj zero (as a quantizer may write them), both residual branches add nothing */
    sq_model_config cfg = tiny_config();
    sq_layer_weights w;
    sq_layer_scratch s;
    setup_layer(&cfg, &w, &s);
    float x[ROWS * 32], before[ROWS * 32];
    fill(x, ROWS * 32, 4);
    memcpy(before, x, sizeof x);
    sq_layer_options opt = {0};
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH, SEQ, &s, &opt), SQ_OK);
    assert_memory_not_equal(x, before, sizeof x);

    memcpy(x, before, sizeof x);
    assert_int_equal(kn_fill(w.linear[SQ_LINEAR_O].weight, 0.0f, 32 * 32), SQ_OK);
    assert_int_equal(kn_fill(w.linear[SQ_LINEAR_DOWN].weight, 0.0f, 32 * 48), SQ_OK);
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH, SEQ, &s, &opt), SQ_OK);
    assert_memory_equal(x, before, sizeof x);
    sq_layer_scratch_free(&s);
    sq_layer_weights_free(&w);
}

static sq_status failing_hook(void *ctx, const char *name, const float *input, int rows, int in_features)
{
    (void)ctx, (void)input, (void)rows, (void)in_features;
    if (!strcmp(name, "mlp.up_proj"))
        return sq_fail(SQ_ERR_NOMEM, "cannot grow the Hessian");
    return SQ_OK;
}

static sq_status stopping_hook(void *ctx, const char *name, const float *input, int rows, int in_features)
{
    SQ_TRY(record_hook(ctx, name, input, rows, in_features));
    return strcmp(name, "self_attn.o_proj") ? SQ_OK : SQ_STOPPED;
}

static void test_failing_hook_stops_the_pass(void **state)
{
    (void)state;
    sq_model_config cfg = tiny_config();
    sq_layer_weights w;
    sq_layer_scratch s;
    setup_layer(&cfg, &w, &s);
    float x[ROWS * 32];
    fill(x, ROWS * 32, 5);
    sq_layer_options opt = {.hook = failing_hook};
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH, SEQ, &s, &opt), SQ_ERR_NOMEM);
    assert_non_null(strstr(sq_last_error(), "mlp.up_proj hook: cannot grow the Hessian"));
    /* SQ_STOPPED is a request, not a failure: it comes back unchanged and the later linears never run */
    hook_log log = {0};
    opt.hook = stopping_hook;
    opt.hook_ctx = &log;
    sq_clear_error();
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH, SEQ, &s, &opt), SQ_STOPPED);
    assert_int_equal(log.calls, 4);
    assert_string_equal(sq_last_error(), "");
    /* more rows than the scratch holds is refused */
    assert_int_equal(sq_layer_forward(&w, &cfg, x, BATCH + 1, SEQ, &s, &opt), SQ_ERR_ARG);
    sq_layer_scratch_free(&s);
    sq_layer_weights_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook_sees_each_linear_input),
        cmocka_unit_test(test_zero_output_projections_make_the_layer_identity),
        cmocka_unit_test(test_failing_hook_stops_the_pass),
    };
    return cmocka_run_group_tests_name("layer", tests, NULL, NULL);
}
