/* test_config.c: config.json parsing for Llama, Mistral and Qwen2 (defaults, GQA, head_dim, rope
 * scaling in both layouts — top-level rope_theta/rope_scaling and transformers 5's rope_parameters —
 * biases, token ids, dtype) and precise SQ_ERR_FORMAT messages for bad configs; RoPE frequencies
 * against values computed by hand; hostile widths and doubles refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/config.h"

#define BASE "\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":2,\"num_attention_heads\":4," \
             "\"vocab_size\":512"

static sq_status parse(sq_model_config *cfg, const char *json)
{
    return sq_model_config_parse(cfg, "cfg.json", json, strlen(json));
}

static void expect_format_error(const char *json, const char *fault)
{
    sq_model_config cfg;
    sq_status st = parse(&cfg, json);
    if (st != SQ_ERR_FORMAT)
        fail_msg("expected format error for %s, got %d (%s)", json, st, sq_last_error());
    if (!strstr(sq_last_error(), "cfg.json") || !strstr(sq_last_error(), fault))
        fail_msg("message \"%s\" should name cfg.json and \"%s\"", sq_last_error(), fault);
}

static void test_llama_defaults(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE "}"), SQ_OK);
    assert_string_equal(c.architecture, "LlamaForCausalLM");
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden_size, 64);
    assert_int_equal(c.intermediate_size, 160);
    assert_int_equal(c.num_layers, 2);
    assert_int_equal(c.num_heads, 4);
    assert_int_equal(c.num_kv_heads, 4); /* no GQA unless stated */
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.vocab_size, 512);
    assert_true(c.rope_theta == 10000.0f);
    assert_true(c.rms_norm_eps == 1e-6f);
    assert_int_equal(c.rope_scaling, SQ_ROPE_SCALING_NONE);
    assert_false(c.tie_word_embeddings);
    assert_false(c.attention_bias);
    assert_false(c.o_proj_bias);
    assert_false(c.mlp_bias);
    assert_int_equal(c.bos_token_id, -1);
    assert_int_equal(c.eos_token_id, -1);
    assert_int_equal(c.torch_dtype, SQ_DTYPE_F32);
}

static void test_llama3_config(void **state)
{
    (void)state;
    sq_model_config c;
    const char *json = "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\"," BASE
                       ",\"num_key_value_heads\":2,\"head_dim\":32,\"rope_theta\":500000.0,"
                       "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                       "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
                       "\"attention_bias\":true,\"mlp_bias\":true,\"tie_word_embeddings\":true,"
                       "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],"
                       "\"torch_dtype\":\"bfloat16\",\"rms_norm_eps\":1e-05,\"max_position_embeddings\":131072}";
    assert_int_equal(parse(&c, json), SQ_OK);
    assert_int_equal(c.num_kv_heads, 2);
    assert_int_equal(c.head_dim, 32);
    assert_true(c.rope_theta == 500000.0f);
    assert_int_equal(c.rope_scaling, SQ_ROPE_SCALING_LLAMA3);
    assert_true(c.rope_factor == 8.0f);
    assert_true(c.rope_low_freq_factor == 1.0f);
    assert_true(c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_position, 8192);
    assert_int_equal(c.max_position_embeddings, 131072);
    assert_true(c.attention_bias && c.o_proj_bias && c.mlp_bias && c.tie_word_embeddings);
    assert_int_equal(c.bos_token_id, 128000);
    assert_int_equal(c.eos_token_id, 128001);
    assert_int_equal(c.torch_dtype, SQ_DTYPE_BF16);
    assert_true(c.rms_norm_eps == 1e-5f);
}

static void test_qwen2_and_mistral(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"Qwen2ForCausalLM\"]," BASE
                               ",\"tie_word_embeddings\":false,\"torch_dtype\":\"float16\"}"),
                     SQ_OK);
    assert_string_equal(c.model_type, "qwen2");
    assert_true(c.attention_bias);
    assert_false(c.o_proj_bias);
    assert_int_equal(c.torch_dtype, SQ_DTYPE_F16);
    /* model_type alone identifies the architecture; null fields mean "default". */
    assert_int_equal(parse(&c, "{\"model_type\":\"mistral\"," BASE ",\"head_dim\":null,\"sliding_window\":null,"
                               "\"rope_scaling\":null,\"num_key_value_heads\":1}"),
                     SQ_OK);
    assert_string_equal(c.architecture, "MistralForCausalLM");
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.num_kv_heads, 1);
}

static void test_linear_scaling_old_key(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE
                               ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}"),
                     SQ_OK);
    assert_int_equal(c.rope_scaling, SQ_ROPE_SCALING_LINEAR);
    assert_true(c.rope_factor == 2.0f);
}

#define LLAMA_BASE "{\"architectures\":[\"LlamaForCausalLM\"]," BASE
#define LLAMA3_PARAMS "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192"

/* The config parses, with this theta and rope type, each read from the field named ("": default). */
static void expect_rope(sq_model_config *c, const char *json, float theta, sq_rope_scaling_type type,
                        const char *theta_from, const char *type_from)
{
    sq_status st = parse(c, json);
    if (st != SQ_OK)
        fail_msg("%s: %s", json, sq_last_error());
    assert_true(c->rope_theta == theta);
    assert_int_equal(c->rope_scaling, type);
    assert_string_equal(c->rope_theta_from, theta_from);
    assert_string_equal(c->rope_type_from, type_from);
}

/* transformers 5 writes rope_parameters (and dtype for torch_dtype); SmolLM2-135M's settings first. */
static void test_rope_parameters_layout(void **state)
{
    (void)state;
    sq_model_config c;
    expect_rope(&c, LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":100000.0,\"rope_type\":\"default\"},"
                      "\"dtype\":\"bfloat16\"}",
                100000.0f, SQ_ROPE_SCALING_NONE, "rope_parameters.rope_theta", "rope_parameters.rope_type");
    assert_int_equal(c.torch_dtype, SQ_DTYPE_BF16);
    expect_rope(&c, LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":500000.0,\"rope_type\":\"llama3\"," LLAMA3_PARAMS "}}",
                500000.0f, SQ_ROPE_SCALING_LLAMA3, "rope_parameters.rope_theta", "rope_parameters.rope_type");
    assert_true(c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f && c.rope_high_freq_factor == 4.0f);
    assert_int_equal(c.rope_original_max_position, 8192);
    expect_rope(&c, LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":20000,\"rope_type\":\"linear\",\"factor\":4}}",
                20000.0f, SQ_ROPE_SCALING_LINEAR, "rope_parameters.rope_theta", "rope_parameters.rope_type");
    assert_true(c.rope_factor == 4.0f);
    /* Absent everywhere: transformers' default, and no field claimed. */
    expect_rope(&c, LLAMA_BASE "}", 10000.0f, SQ_ROPE_SCALING_NONE, "", "");
}

/* Both layouts present: each setting is taken from wherever it is given, and equal values agree. */
static void test_rope_layouts_combined(void **state)
{
    (void)state;
    sq_model_config c;
    expect_rope(&c, LLAMA_BASE ",\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\"," LLAMA3_PARAMS "},"
                      "\"rope_parameters\":{\"rope_theta\":500000,\"rope_type\":\"llama3\"," LLAMA3_PARAMS "}}",
                500000.0f, SQ_ROPE_SCALING_LLAMA3, "rope_parameters.rope_theta", "rope_parameters.rope_type");
    /* theta only in rope_parameters, the scaling only in rope_scaling: neither falls back to a default. */
    expect_rope(&c, LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":2},"
                      "\"rope_parameters\":{\"rope_theta\":100000.0}}",
                100000.0f, SQ_ROPE_SCALING_LINEAR, "rope_parameters.rope_theta", "rope_scaling.type");
    assert_true(c.rope_factor == 2.0f);
}

static void expect_disagreement(const char *json, const char *first, const char *second)
{
    expect_format_error(json, "disagree");
    if (!strstr(sq_last_error(), first) || !strstr(sq_last_error(), second))
        fail_msg("message \"%s\" should name \"%s\" and \"%s\"", sq_last_error(), first, second);
}

static void test_rope_layouts_disagree(void **state)
{
    (void)state;
    expect_disagreement(LLAMA_BASE ",\"rope_theta\":10000.0,\"rope_parameters\":{\"rope_theta\":100000.0,"
                              "\"rope_type\":\"default\"}}",
                        "\"rope_theta\" (10000)", "\"rope_parameters.rope_theta\" (100000)");
    expect_disagreement(LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8},"
                              "\"rope_parameters\":{\"rope_type\":\"llama3\"," LLAMA3_PARAMS "}}",
                        "\"rope_scaling.rope_type\" (\"linear\")", "\"rope_parameters.rope_type\" (\"llama3\")");
    expect_disagreement(LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":8},"
                              "\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":4}}",
                        "\"rope_scaling.factor\" (8)", "\"rope_parameters.factor\" (4)");
    expect_disagreement(LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"default\"},"
                              "\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":4}}",
                        "\"rope_scaling.rope_type\" (\"default\")", "\"rope_parameters.rope_type\" (\"linear\")");
    expect_format_error(LLAMA_BASE ",\"rope_parameters\":{\"rope_type\":\"linear\"}}",
                        "missing required field \"rope_parameters.factor\"");
    expect_format_error(LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":-1}}",
                        "\"rope_parameters.rope_theta\" must be a positive number");
    expect_format_error(LLAMA_BASE ",\"rope_parameters\":\"default\"}", "\"rope_parameters\" must be an object");
}

/* Rope types not implemented are refused by name and by the field that names them. */
static void test_rope_types_refused(void **state)
{
    (void)state;
    static const char *const refused[] = {"yarn", "dynamic", "longrope", "proportional"};
    sq_model_config c;
    char json[512], want[96];
    for (int i = 0; i < 4; i++) {
        snprintf(json, sizeof json, LLAMA_BASE ",\"rope_parameters\":{\"rope_theta\":1e4,\"rope_type\":\"%s\","
                                          "\"factor\":4}}", refused[i]);
        assert_int_equal(parse(&c, json), SQ_ERR_UNSUPPORTED);
        snprintf(want, sizeof want, "\"rope_parameters.rope_type\": rope type \"%s\" is not supported", refused[i]);
        if (!strstr(sq_last_error(), want))
            fail_msg("message \"%s\" should contain %s", sq_last_error(), want);
    }
    assert_int_equal(parse(&c, LLAMA_BASE ",\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}}"),
                     SQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(sq_last_error(), "rope_parameters.full_attention"));
}

static void test_bad_configs(void **state)
{
    (void)state;
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"],", "invalid JSON");
    expect_format_error("[1]", "must be a JSON object");
    expect_format_error("{" BASE "}", "\"architectures\"");
    expect_format_error("{\"architectures\":\"LlamaForCausalLM\"," BASE "}", "\"architectures\" must be a list");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"],\"intermediate_size\":160,\"num_hidden_layers\":2,"
                        "\"num_attention_heads\":4,\"vocab_size\":512}",
                        "missing required field \"hidden_size\"");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\",\"intermediate_size\":160,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":512}",
                        "\"hidden_size\" must be an integer");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":160,"
                        "\"num_hidden_layers\":-2,\"num_attention_heads\":4,\"vocab_size\":512}",
                        "\"num_hidden_layers\" must be an integer >= 1");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"num_key_value_heads\":3}",
                        "\"num_key_value_heads\" (3) must divide");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":66,\"intermediate_size\":160,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":512}",
                        "not a multiple of num_attention_heads");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"head_dim\":15}", "\"head_dim\" (15)");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"rope_theta\":\"big\"}",
                        "\"rope_theta\" must be a positive number");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"tie_word_embeddings\":1}",
                        "\"tie_word_embeddings\" must be true or false");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"eos_token_id\":[\"x\"]}",
                        "\"eos_token_id\"");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"torch_dtype\":\"int4\"}",
                        "unknown dtype \"int4\"");
    expect_format_error(LLAMA_BASE ",\"dtype\":\"int4\"}", "field \"dtype\": unknown dtype \"int4\"");
    expect_format_error(LLAMA_BASE ",\"torch_dtype\":\"float16\",\"dtype\":\"bfloat16\"}",
                        "fields \"torch_dtype\" (float16) and \"dtype\" (bfloat16) disagree");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\","
                        "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0}}",
                        "missing required field \"rope_scaling.original_max_position_embeddings\"");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"rope_scaling\":[1]}",
                        "\"rope_scaling\" must be an object");
    expect_format_error("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"hidden_size\":64}", "duplicate");
}

/* Hostile values: widths whose products overflow int, doubles beyond float, values
 * that make RoPE or RMSNorm meaningless. Each is refused naming the field. */
static void test_hostile_configs(void **state)
{
    (void)state;
#define LLAMA "{\"architectures\":[\"LlamaForCausalLM\"],"
    /* 65536 * 65536 = 2^32 wraps to 0 in int */
    expect_format_error(LLAMA "\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":65536,\"head_dim\":65536,\"vocab_size\":512}",
                        "num_attention_heads * head_dim is 4294967296, outside 1..1048576");
    expect_format_error(LLAMA "\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":1073741824,"
                              "\"vocab_size\":512}",
                        "num_attention_heads * head_dim is 4294967296");
    expect_format_error(LLAMA "\"hidden_size\":1073741824,\"intermediate_size\":160,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":4,\"vocab_size\":512}",
                        "field \"hidden_size\" is 1073741824, outside 1..1048576");
    expect_format_error(LLAMA "\"hidden_size\":64,\"intermediate_size\":2000000,\"num_hidden_layers\":2,"
                              "\"num_attention_heads\":4,\"vocab_size\":512}",
                        "field \"intermediate_size\" is 2000000");
    expect_format_error(LLAMA "\"hidden_size\":64,\"intermediate_size\":160,\"num_hidden_layers\":1000000,"
                              "\"num_attention_heads\":4,\"vocab_size\":512}",
                        "field \"num_hidden_layers\" is 1000000, outside 1..65536");
    expect_format_error(LLAMA BASE ",\"rope_theta\":1e300}", "\"rope_theta\" must be a positive number no larger than");
    expect_format_error(LLAMA BASE ",\"rope_theta\":0.5}", "\"rope_theta\" must be above 1");
    expect_format_error(LLAMA BASE ",\"rms_norm_eps\":1e39}", "\"rms_norm_eps\" must be a positive number");
    expect_format_error(LLAMA BASE ",\"rms_norm_eps\":2}", "\"rms_norm_eps\" must be below 1");
    expect_format_error(LLAMA BASE ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":1e300}}",
                        "\"rope_scaling.factor\" must be a positive number no larger than");
    /* distinct doubles that are the same float: the llama3 smoothing would divide by zero */
    expect_format_error(LLAMA BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,"
                              "\"low_freq_factor\":1.0,\"high_freq_factor\":1.00000001,"
                              "\"original_max_position_embeddings\":8192}}",
                        "\"rope_scaling.high_freq_factor\" must exceed low_freq_factor");
#undef LLAMA
}

static void test_unsupported(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}"), SQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(sq_last_error(), "GPT2LMHeadModel"));
    assert_int_equal(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE
                               ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}"),
                     SQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(sq_last_error(), "yarn"));
}

static void test_load_missing_file(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(sq_model_config_load(&c, "/nonexistent/config.json"), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), "/nonexistent/config.json"));
}

/* head_dim 8, theta 10000: inv_freq[i] = 10000^(-2i/8) = 1, 0.1, 0.01, 0.001. */
static void test_inv_freq_plain_and_linear(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"head_dim\":8}"), SQ_OK);
    float f[4];
    sq_model_rope_inv_freq(&c, f);
    const float want[4] = {1.0f, 0.1f, 0.01f, 0.001f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(f[i], want[i], want[i] * 1e-6f);
    c.rope_scaling = SQ_ROPE_SCALING_LINEAR;
    c.rope_factor = 4.0f;
    sq_model_rope_inv_freq(&c, f);
    for (int i = 0; i < 4; i++)
        assert_float_equal(f[i], want[i] / 4, want[i] * 1e-6f);
}

/* llama3 with head_dim 8, theta 10000, factor 8, low 1, high 4, original 8192 (so the low-frequency
 * wavelength bound is 8192 and the high one 2048). Wavelengths 2*pi/f:
 *   f=1     -> 6.28     < 2048: kept, 1
 *   f=0.1   -> 62.8     < 2048: kept, 0.1
 *   f=0.01  -> 628.3    < 2048: kept, 0.01
 *   f=0.001 -> 6283.19  between: smooth = (8192/6283.185 - 1)/3 = 0.1012658,
 *              f' = (1 - smooth)*0.001/8 + smooth*0.001 = 0.000213608
 * and with theta 1e6 the last one, 1e-4.5 = 3.1623e-5 (wavelength 198691 > 8192), is divided by 8. */
static void test_inv_freq_llama3_by_hand(void **state)
{
    (void)state;
    sq_model_config c;
    assert_int_equal(parse(&c, "{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"head_dim\":8,"
                               "\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,"
                               "\"high_freq_factor\":4,\"original_max_position_embeddings\":8192}}"),
                     SQ_OK);
    float f[4];
    sq_model_rope_inv_freq(&c, f);
    assert_float_equal(f[0], 1.0f, 1e-6f);
    assert_float_equal(f[1], 0.1f, 1e-7f);
    assert_float_equal(f[2], 0.01f, 1e-8f);
    double smooth = (8192.0 / (2 * M_PI / 0.001) - 1.0) / 3.0;
    assert_float_equal(smooth, 0.1012658, 1e-6);
    assert_float_equal(f[3], 0.000213608f, 1e-9f);
    c.rope_theta = 1e6f;
    sq_model_rope_inv_freq(&c, f);
    assert_float_equal(f[3], 3.16227766e-5f / 8, 1e-11f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_defaults),         cmocka_unit_test(test_llama3_config),
        cmocka_unit_test(test_qwen2_and_mistral),      cmocka_unit_test(test_linear_scaling_old_key),
        cmocka_unit_test(test_bad_configs),            cmocka_unit_test(test_hostile_configs),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_load_missing_file),      cmocka_unit_test(test_inv_freq_plain_and_linear),
        cmocka_unit_test(test_inv_freq_llama3_by_hand),  cmocka_unit_test(test_rope_parameters_layout),
        cmocka_unit_test(test_rope_layouts_combined),    cmocka_unit_test(test_rope_layouts_disagree),
        cmocka_unit_test(test_rope_types_refused),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
