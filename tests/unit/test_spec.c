/* test_spec.c: job spec parsing and validation. Every example spec validates;
 * each kind of mistake is reported with its exact JSON path and message; all
 * errors are reported at once; syntax errors name line and column; defaults are
 * filled; the spec hash ignores formatting and key order but not values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "jobs/spec.h"

static char *example_path(const char *name)
{
    const char *root = getenv("SHARDQ_ROOT");
    static char path[4096];
    snprintf(path, sizeof path, "%s/jobs/examples/%s", root ? root : ".", name);
    return path;
}

static sq_job_spec load_example(const char *name)
{
    sq_job_spec spec;
    sq_status st = sq_job_spec_load(&spec, example_path(name));
    if (st != SQ_OK)
        fail_msg("%s: %s", name, sq_last_error());
    return spec;
}

static void test_every_example_validates(void **state)
{
    (void)state;
    const char *names[] = {"demo_gptq.json", "gptq_llama2_7b_s3.json", "rtn.json",
                           "sparsegpt_2of4_then_gptq.json", "qlora_nf4.json", "qlora_jsonl.json",
                           "eval_only.json", "stories260k_gptq_dense.json", "stories260k_smoothquant_w8a8.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        sq_job_spec spec = load_example(names[i]);
        assert_true(spec.n_steps > 0);
        assert_int_equal(strlen(spec.sha256), 64);
        sq_job_spec_free(&spec);
    }
}

static void test_demo_example_values(void **state)
{
    (void)state;
    sq_job_spec spec = load_example("demo_gptq.json");
    assert_string_equal(spec.model_uri, "build/fixtures/tiny-llama");
    assert_string_equal(spec.calibration_uri, "build/demo/calibration.txt");
    assert_int_equal(spec.n_steps, 3);
    assert_int_equal(spec.steps[0].kind, SQ_STEP_EVAL);
    assert_int_equal(spec.steps[1].kind, SQ_STEP_GPTQ);
    assert_int_equal(spec.steps[1].quant.bits, 4);
    assert_int_equal(spec.steps[1].quant.group_size, 32);
    assert_int_equal(spec.steps[2].kind, SQ_STEP_EVAL);
    assert_string_equal(spec.steps[2].eval.data, "build/demo/evaluation.txt");
    assert_int_equal(spec.steps[2].eval.seqlen, 128);
    assert_int_equal(spec.steps[2].eval.max_windows, 16);
    assert_string_equal(spec.state_uri, "build/demo/state");
    assert_string_equal(spec.output_uri, "build/demo/output");
    assert_int_equal(spec.output_format, SQ_OUTPUT_GPTQ);
    sq_job_spec_free(&spec);
    spec = load_example("stories260k_gptq_dense.json");
    assert_int_equal(spec.output_format, SQ_OUTPUT_DENSE);
    sq_job_spec_free(&spec);

    spec = load_example("gptq_llama2_7b_s3.json");
    assert_int_equal(spec.mode, SQ_PARALLEL_PIPELINE);
    assert_int_equal(spec.micro_batch, 8);
    assert_int_equal(spec.seed, 1234);
    assert_string_equal(spec.storage.endpoint, "https://s3.cluster.internal:9000");
    assert_int_equal(spec.storage.path_style, 1);
    assert_int_equal(spec.storage.part_size_mb, 64);
    assert_int_equal(spec.storage.stall_timeout_s, 60);
    assert_int_equal(spec.storage.request_timeout_s, 600);
    assert_string_equal(spec.push.store, "s3://model-store/quantized");
    assert_string_equal(spec.push.version, "1");
    sq_job_spec_free(&spec);

    spec = load_example("sparsegpt_2of4_then_gptq.json");
    assert_int_equal(spec.steps[0].sparse.prune_n, 2);
    assert_int_equal(spec.steps[0].sparse.prune_m, 4);
    assert_int_equal(spec.steps[0].sparse.bits, 0);
    sq_job_spec_free(&spec);
}

#define MINIMAL "\"model\": \"m\", \"state_uri\": \"s\""
#define OUT ", \"output_uri\": \"o\""
#define CALIB ", \"data\": {\"calibration\": \"c.txt\"}"

typedef struct {
    const char *json;
    const char *error; /* one full line of the message */
} bad_spec;

static const bad_spec bad_specs[] = {
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"bits\": 4}}], \"output\": {\"format\": \"awq\"}}",
     "output.format: must be one of \"gptq\", \"dense\", \"compressed-tensors\""},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"bits\": 4}}], \"output\": {\"formats\": \"dense\"}}",
     "output.formats: unknown key"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": 0.5}}], \"output\": {\"format\": \"dense\"}}",
     "output.format: \"dense\" applies to a quantized output; the last step that produces a model (magnitude) "
     "does not quantize"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"bits\": 4}}, {\"eval\": {\"data\": \"t\"}}], "
     "\"output\": {\"format\": \"compressed-tensors\"}}",
     "steps[1]: eval reads gptq and dense checkpoints, not the compressed-tensors output: evaluate a \"dense\" "
     "output instead"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"eval\": {\"data\": \"t\"}}, {\"gptq\": {\"bits\": 5}}]}",
     "steps[1].gptq.bits: must be one of 2,3,4,8"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"bits\": 4.0}}]}", "steps[0].rtn.bits: must be one of 2,3,4,8"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"bits\": \"4\"}}]}", "steps[0].rtn.bits: must be one of 2,3,4,8"},
    {"{" MINIMAL ", \"data\": {\"calibration\": \"c\", \"nsamples\": 0}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "data.nsamples: must be an integer in 1..262144"},
    {"{" MINIMAL ", \"data\": {\"calibration\": \"c\", \"nsamples\": 262145}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "data.nsamples: must be at most 262144"},
    {"{" MINIMAL ", \"data\": {\"nsamples\": \"128\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "data.nsamples: must be an integer in 1..262144"},
    {"{" MINIMAL ", \"data\": {\"seqlen\": 3000000000}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "data.seqlen: must be at most 2147483647"},
    {"{" MINIMAL ", \"data\": {\"samples\": 4}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "data.samples: unknown key"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"blocksize\": 64}}]}", "steps[0].gptq.blocksize: unknown key"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"damp_percent\": 0.1}}]}", "steps[0].rtn.damp_percent: unknown key"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\"}}], \"extra\": 1}", "extra: unknown key"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {}}, {\"eval\": {\"data\": \"t\"}}, {}]}",
     "steps[2]: a step is an object with exactly one key (rtn, gptq, sparsegpt, wanda, magnitude, qlora, eval, smoothquant, kv_cache)"},
    {"{" MINIMAL ", \"steps\": [{\"rtn\": {}, \"eval\": {\"data\": \"t\"}}]}",
     "steps[0]: a step is an object with exactly one key (rtn, gptq, sparsegpt, wanda, magnitude, qlora, eval, smoothquant, kv_cache)"},
    {"{" MINIMAL ", \"steps\": [\"gptq\"]}",
     "steps[0]: a step is an object with exactly one key (rtn, gptq, sparsegpt, wanda, magnitude, qlora, eval, smoothquant, kv_cache)"},
    {"{" MINIMAL ", \"steps\": [{\"awq\": {}}]}",
     "steps[0].awq: unknown step (rtn, gptq, sparsegpt, wanda, magnitude, qlora, eval, smoothquant, kv_cache)"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": 3}]}", "steps[0].eval: must be an object"},
    {"{" MINIMAL ", \"steps\": []}", "steps: must be a non-empty list of steps"},
    {"{" MINIMAL "}", "steps: required"},
    {"{\"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "model: required"},
    {"{\"model\": \"m\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "state_uri: required"},
    {"{" MINIMAL CALIB ", \"steps\": [{\"gptq\": {}}]}", "output_uri: required because step gptq produces a model"},
    {"{" MINIMAL OUT ", \"steps\": [{\"gptq\": {}}]}", "data.calibration: required because step gptq needs calibration data"},
    {"{" MINIMAL OUT ", \"steps\": [{\"wanda\": {\"sparsity\": 0.5}}]}",
     "data.calibration: required because step wanda needs calibration data"},
    {"{" MINIMAL OUT ", \"steps\": [{\"qlora\": {}}]}", "data.calibration: required because step qlora needs calibration data"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"group_size\": 0}}]}",
     "steps[0].gptq.group_size: must be -1 or a positive integer"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"group_size\": -2}}]}",
     "steps[0].gptq.group_size: must be -1 or a positive integer"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"damp_percent\": 1}}]}",
     "steps[0].gptq.damp_percent: must be a number in (0, 1)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"damp_percent\": 0}}]}",
     "steps[0].gptq.damp_percent: must be a number in (0, 1)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"desc_act\": 1}}]}", "steps[0].gptq.desc_act: must be true or false"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {\"block_size\": 0}}]}",
     "steps[0].gptq.block_size: must be a positive integer"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": 1.0}}]}",
     "steps[0].magnitude.sparsity: must be a number in [0, 1)"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": -0.1}}]}",
     "steps[0].magnitude.sparsity: must be a number in [0, 1)"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"pattern\": \"4:2\"}}]}",
     "steps[0].magnitude.pattern: must be \"N:M\" with 0 < N < M (e.g. \"2:4\")"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"pattern\": \"0:4\"}}]}",
     "steps[0].magnitude.pattern: must be \"N:M\" with 0 < N < M (e.g. \"2:4\")"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"pattern\": \"2:4x\"}}]}",
     "steps[0].magnitude.pattern: must be \"N:M\" with 0 < N < M (e.g. \"2:4\")"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {}}]}",
     "steps[0].magnitude: needs \"sparsity\" (unstructured) or \"pattern\" (N:M)"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": 0.5, \"pattern\": \"2:4\"}}]}",
     "steps[0].magnitude: give \"sparsity\" or \"pattern\", not both"},
    {"{" MINIMAL OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": 0.5, \"bits\": 4}}]}",
     "steps[0].magnitude.bits: unknown key"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"sparsegpt\": {\"sparsity\": 0.5, \"group_size\": 64}}]}",
     "steps[0].sparsegpt.group_size: applies only with bits > 0"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"sparsegpt\": {\"sparsity\": 0.5, \"bits\": 1}}]}",
     "steps[0].sparsegpt.bits: must be one of 0 (no quantization),2,3,4,8"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"magnitude\": {\"sparsity\": 0.5}}, "
     "{\"gptq\": {\"preserve_sparsity\": 1}}]}",
     "steps[1].gptq.preserve_sparsity: must be true or false"},
    {"{" MINIMAL OUT ", \"steps\": [{\"rtn\": {\"preserve_sparsity\": true}}]}",
     "steps[0].rtn.preserve_sparsity: unknown key"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {}}, {\"sparsegpt\": {\"sparsity\": 0.5}}]}",
     "steps[1]: pruning must come before quantization (steps[0] is gptq)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"sparsegpt\": {\"sparsity\": 0.5, \"bits\": 4}}, {\"rtn\": {}}]}",
     "steps[1]: the model is already quantized by steps[0] (sparsegpt)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {}}, {\"rtn\": {}}]}",
     "steps[1]: rtn cannot follow qlora (steps[0]): the adapter is trained on the final base"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"gptq\": {}}, {\"qlora\": {\"base_quant\": \"nf4\"}}]}",
     "steps[1].qlora.base_quant: cannot be \"nf4\": steps[0] (gptq) already quantized the model; use \"gptq\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"r\": 0}}]}", "steps[0].qlora.r: must be a positive integer"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"target_modules\": []}}]}",
     "steps[0].qlora.target_modules: must be a non-empty list of module names "
     "(q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"target_modules\": [\"q_proj\", \"lm_head\"]}}]}",
     "steps[0].qlora.target_modules[1]: must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"target_modules\": [\"q_proj\", 3]}}]}",
     "steps[0].qlora.target_modules[1]: must be one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"target_modules\": [\"v_proj\", \"v_proj\"]}}]}",
     "steps[0].qlora.target_modules[1]: duplicate module \"v_proj\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"base_quant\": \"int4\"}}]}",
     "steps[0].qlora.base_quant: must be one of \"nf4\", \"gptq\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"learning_rate\": 0}}]}",
     "steps[0].qlora.learning_rate: must be a positive number"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"dropout\": 1}}]}", "steps[0].qlora.dropout: must be a number in [0, 1)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"recompute\": \"yes\"}}]}",
     "steps[0].qlora.recompute: must be true or false"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"steps\": 10, \"warmup_steps\": 10}}]}",
     "steps[0].qlora.warmup_steps: must be less than steps (10)"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"lr_schedule\": \"linear\"}}]}",
     "steps[0].qlora.lr_schedule: must be one of \"constant\", \"cosine\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"prompt_field\": \"q\"}}]}",
     "steps[0].qlora.prompt_field: applies only with \"format\": \"jsonl\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"eval_every\": 5}}]}",
     "steps[0].qlora.eval_every: needs \"eval_data\""},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"max_grad_norm\": -1}}]}",
     "steps[0].qlora.max_grad_norm: must be a non-negative number"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"qlora\": {\"format\": \"csv\"}}]}",
     "steps[0].qlora.format: must be one of \"text\", \"jsonl\", \"token_ids\""},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"seqlen\": 128}}]}", "steps[0].eval.data: required"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"act_bits\": 3}}]}",
     "steps[0].eval.act_bits: must be one of 0 (off),4,8"},
    {"{" MINIMAL CALIB OUT ", \"output\": {\"format\": \"dense\"}, \"steps\": [{\"smoothquant\": {\"alpha\": -0.1}}]}",
     "steps[0].smoothquant.alpha: must be a number in [0, 1]"},
    {"{" MINIMAL CALIB OUT ", \"output\": {\"format\": \"dense\"}, \"steps\": [{\"smoothquant\": {\"act_bits\": 3}}]}",
     "steps[0].smoothquant.act_bits: must be one of 4,8"},
    {"{" MINIMAL CALIB OUT ", \"output\": {\"format\": \"compressed-tensors\"}, "
     "\"steps\": [{\"smoothquant\": {\"act_bits\": 4}}]}",
     "steps[0].smoothquant.act_bits: 4; compressed-tensors int-quantized W8A8 declares 8-bit activations: use 8, or "
     "\"output\": {\"format\": \"dense\"}"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"smoothquant\": {}}]}",
     "output.format: steps[0] (smoothquant) writes \"compressed-tensors\" (int-quantized W8A8) or \"dense\", not "
     "GPTQ v1: set \"output\": {\"format\": ...}"},
    {"{" MINIMAL OUT ", \"output\": {\"format\": \"dense\"}, \"steps\": [{\"smoothquant\": {}}]}",
     "data.calibration: required because step smoothquant needs calibration data"},
    {"{" MINIMAL CALIB OUT ", \"output\": {\"format\": \"dense\"}, "
     "\"steps\": [{\"smoothquant\": {}}, {\"rtn\": {\"bits\": 4}}]}",
     "steps[1]: the model is already quantized by steps[0] (smoothquant)"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"kv_cache_bits\": 16}}]}",
     "steps[0].eval.kv_cache_bits: must be one of 0 (off),2,3,4,8"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"kv_cache_dtype\": \"fp8\"}}]}",
     "steps[0].eval.kv_cache_dtype: needs \"kv_cache_scales\""},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"kv_cache_kivi\": 4, \"kv_cache_bits\": 4}}]}",
     "steps[0].eval: at most one of kv_cache_bits, kv_cache_scales and kv_cache_kivi"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"kv_cache_kivi\": 3}}]}",
     "steps[0].eval.kv_cache_kivi: must be one of 0 (off),2,4"},
    {"{" MINIMAL CALIB OUT ", \"steps\": [{\"kv_cache\": {\"dtype\": \"fp16\"}}]}",
     "steps[0].kv_cache.dtype: must be one of \"int8\", \"fp8\""},
    {"{" MINIMAL OUT ", \"steps\": [{\"kv_cache\": {}}]}",
     "data.calibration: required because step kv_cache needs calibration data"},
    {"{" MINIMAL CALIB OUT ", \"output\": {\"format\": \"compressed-tensors\"}, \"steps\": [{\"gptq\": {}}, "
     "{\"kv_cache\": {}}]}",
     "steps[1]: kv_cache reads gptq and dense checkpoints, not the compressed-tensors output: use a \"dense\" or "
     "\"gptq\" output"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"t\", \"max_windows\": -1}}]}",
     "steps[0].eval.max_windows: must be a non-negative integer"},
    {"{" MINIMAL ", \"steps\": [{\"eval\": {\"data\": \"\"}}]}",
     "steps[0].eval.data: must be a non-empty string (a path, file:///PATH or s3://bucket/prefix)"},
    {"{\"model\": \"s3:///llama\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: s3:///llama: an s3 URI must name a bucket (s3://bucket/prefix)"},
    {"{\"model\": \"s3://\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: s3://: an s3 URI must name a bucket (s3://bucket/prefix)"},
    {"{\"model\": \"s3://My_Bucket/x\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: s3://My_Bucket/x: invalid bucket name \"My_Bucket\" (3-63 characters of a-z, 0-9, '.', '-')"},
    {"{\"model\": \"gs://b/x\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: gs://b/x: unsupported URI scheme (use a path, file:///PATH or s3://bucket/prefix)"},
    {"{\"model\": \"file://\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: file://: a file:// URI needs an absolute path (file:///PATH)"},
    /* the store's parser decides, so a spec never holds a URI the store would refuse */
    {"{\"model\": \"m\", \"state_uri\": \"s\", \"output_uri\": \"file://rel/out\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "output_uri: file://rel/out: a file:// URI needs an absolute path (file:///PATH)"},
    {"{\"model\": 7, \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "model: must be a non-empty string (a path, file:///PATH or s3://bucket/prefix)"},
    {"{" MINIMAL ", \"name\": \"\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "name: must be a non-empty string"},
    {"{" MINIMAL ", \"data\": {\"calibration\": \"c\", \"sampling\": \"sequential\"}, \"steps\": [{\"eval\": "
     "{\"data\": \"t\"}}]}",
     "data.sampling: must be one of \"random\", \"consecutive\""},
    {"{" MINIMAL ", \"parallel\": {\"mode\": \"tensor\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "parallel.mode: must be one of \"sequential\", \"pipeline\""},
    {"{" MINIMAL ", \"parallel\": {\"micro_batch\": 0}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "parallel.micro_batch: must be a positive integer"},
    {"{" MINIMAL ", \"parallel\": \"pipeline\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "parallel: must be an object"},
    {"{" MINIMAL ", \"seed\": -1, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "seed: must be a non-negative integer"},
    {"{" MINIMAL ", \"seed\": 1.5, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "seed: must be a non-negative integer"},
    {"{" MINIMAL ", \"storage\": {\"endpoint\": \"minio:9000\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.endpoint: must be an http:// or https:// URL"},
    {"{" MINIMAL ", \"storage\": {\"path_style\": \"yes\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.path_style: must be true or false"},
    {"{" MINIMAL ", \"storage\": {\"part_size_mb\": 4}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.part_size_mb: must be an integer from 5 to 5120 (S3 multipart part sizes)"},
    {"{" MINIMAL ", \"storage\": {\"max_retries\": -1}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.max_retries: must be an integer from 0 to 20"},
    {"{" MINIMAL ", \"storage\": {\"max_retries\": 21}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.max_retries: must be at most 20"},
    {"{" MINIMAL ", \"storage\": {\"stall_timeout_s\": 0}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.stall_timeout_s: must be an integer from 1 to 86400"},
    {"{" MINIMAL ", \"storage\": {\"request_timeout_s\": \"60\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.request_timeout_s: must be an integer from 1 to 86400"},
    {"{" MINIMAL ", \"storage\": {\"low_speed_bytes\": 0}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.low_speed_bytes: must be a positive integer"},
    {"{" MINIMAL ", \"storage\": {\"region\": 1}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "storage.region: must be a non-empty string"},
    {"{" MINIMAL ", \"storage\": {\"bucket\": \"b\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}", "storage.bucket: unknown key"},
    {"{" MINIMAL OUT ", \"push\": {\"name\": \"x\"}, \"steps\": [{\"rtn\": {}}]}", "push.store: required"},
    {"{" MINIMAL OUT ", \"push\": {\"store\": \"s3://models\"}, \"steps\": [{\"rtn\": {}}]}", "push.name: required"},
    {"{" MINIMAL ", \"push\": {\"store\": \"s3://models\", \"name\": \"x\"}, \"steps\": [{\"eval\": {\"data\": \"t\"}}]}",
     "push: needs a step that produces a model"},
    {"[1, 2]", "(root): must be an object"},
};

static void test_bad_specs_name_path_and_rule(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_specs / sizeof bad_specs[0]; i++) {
        sq_job_spec spec;
        sq_status st = sq_job_spec_parse(&spec, "bad.json", bad_specs[i].json);
        if (st != SQ_ERR_SPEC)
            fail_msg("case %zu (%s): status %d, want SQ_ERR_SPEC", i, bad_specs[i].json, st);
        const char *message = sq_last_error();
        if (strncmp(message, "bad.json: 1 error\n", 18))
            fail_msg("case %zu: message does not start with 'bad.json: 1 error':\n%s", i, message);
        char line[1024];
        snprintf(line, sizeof line, "\n%s", bad_specs[i].error);
        const char *found = strstr(message, line);
        if (!found || (found[strlen(line)] != '\0' && found[strlen(line)] != '\n'))
            fail_msg("case %zu: want line '%s' in:\n%s", i, bad_specs[i].error, message);
        assert_null(spec.steps);
        assert_null(spec.model_uri);
    }
}

static void test_all_errors_are_reported(void **state)
{
    (void)state;
    const char *json = "{\"model\": \"m\", \"data\": {\"nsamples\": -3},\n"
                       " \"steps\": [{\"gptq\": {\"bits\": 5, \"blocksize\": 1}}, {\"eval\": {}}, 4],\n"
                       " \"parallel\": {\"mode\": \"x\"}, \"colour\": \"red\"}";
    sq_job_spec spec;
    assert_int_equal(sq_job_spec_parse(&spec, "multi.json", json), SQ_ERR_SPEC);
    assert_string_equal(sq_last_error(),
                        "multi.json: 10 errors\n"
                        "colour: unknown key\n"
                        "data.nsamples: must be an integer in 1..262144\n"
                        "steps[0].gptq.blocksize: unknown key\n"
                        "steps[0].gptq.bits: must be one of 2,3,4,8\n"
                        "steps[1].eval.data: required\n"
                        "steps[2]: a step is an object with exactly one key "
                        "(rtn, gptq, sparsegpt, wanda, magnitude, qlora, eval, smoothquant, kv_cache)\n"
                        "state_uri: required\n"
                        "parallel.mode: must be one of \"sequential\", \"pipeline\"\n"
                        "data.calibration: required because step gptq needs calibration data\n"
                        "output_uri: required because step gptq produces a model");
}

static void test_many_errors_are_counted_not_cut(void **state)
{
    (void)state;
    char json[8192] = "{\"model\": \"m\", \"state_uri\": \"s\", \"steps\": [{\"eval\": {\"data\": \"t\"}}]";
    for (int i = 0; i < 200; i++)
        snprintf(json + strlen(json), sizeof json - strlen(json), ", \"k%03d\": 1", i);
    strcat(json, "}");
    sq_job_spec spec;
    assert_int_equal(sq_job_spec_parse(&spec, "many.json", json), SQ_ERR_SPEC);
    const char *message = sq_last_error();
    const char *head = "many.json: 200 errors\nk000: unknown key\nk001: unknown key\n";
    assert_true(!strncmp(message, head, strlen(head)));
    int listed = 0, more = 0;
    for (const char *p = message; (p = strstr(p, ": unknown key")); p++)
        listed++;
    const char *tail = strstr(message, "\n... and ");
    assert_non_null(tail);
    assert_int_equal(sscanf(tail, "\n... and %d more", &more), 1);
    assert_true(listed > 10);
    assert_int_equal(listed + more, 200);
    char last[32];
    snprintf(last, sizeof last, "k%03d: unknown key\n...", listed - 1);
    assert_non_null(strstr(message, last));
}

static void test_syntax_error_names_line_and_column(void **state)
{
    (void)state;
    sq_job_spec spec;
    const char *json = "{\n  \"model\": \"m\",\n  \"steps\": [\n    {\"rtn\": {\"bits\": 4,}}\n  ]\n}\n";
    assert_int_equal(sq_job_spec_parse(&spec, "syntax.json", json), SQ_ERR_SPEC);
    assert_non_null(strstr(sq_last_error(), "syntax.json:4:"));
    int line = 0, column = 0;
    assert_int_equal(sscanf(sq_last_error(), "syntax.json:%d:%d:", &line, &column), 2);
    assert_int_equal(line, 4);
    assert_int_equal(column, 24);

    const char *dup = "{\"model\": \"m\",\n \"model\": \"n\"}";
    assert_int_equal(sq_job_spec_parse(&spec, "dup.json", dup), SQ_ERR_SPEC);
    assert_non_null(strstr(sq_last_error(), "dup.json:2:"));
    assert_non_null(strstr(sq_last_error(), "duplicate"));
}

static void test_defaults_are_filled(void **state)
{
    (void)state;
    sq_job_spec spec;
    const char *json;
    json = "{\"model\": \"s3://bucket/llama\", \"state_uri\": \"st\", \"output_uri\": \"out\","
           " \"data\": {\"calibration\": \"c.txt\"},"
           " \"steps\": [{\"sparsegpt\": {\"sparsity\": 0.5}}, {\"gptq\": {}}, {\"qlora\": {}},"
           " {\"eval\": {\"data\": \"t.txt\"}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "dir/defaults.json", json), SQ_OK);
    assert_string_equal(spec.name, "defaults");
    assert_int_equal(spec.nsamples, 128);
    assert_int_equal(spec.seqlen, 2048);
    assert_int_equal(spec.sampling, SQ_SAMPLING_RANDOM);
    assert_int_equal(spec.mode, SQ_PARALLEL_SEQUENTIAL);
    assert_int_equal(spec.micro_batch, 4);
    assert_int_equal(spec.seed, 0);
    assert_null(spec.storage.endpoint);
    assert_null(spec.storage.region);
    assert_int_equal(spec.storage.path_style, -1);
    assert_int_equal(spec.storage.part_size_mb, 0); /* unset: the store's default or SHARDQ_S3_* */
    assert_int_equal(spec.storage.max_retries, -1);
    assert_int_equal(spec.storage.stall_timeout_s, 0);
    assert_int_equal(spec.storage.low_speed_bytes, 0);
    assert_int_equal(spec.storage.request_timeout_s, 0);
    assert_null(spec.push.store);

    const sq_sparse_options *s = &spec.steps[0].sparse;
    assert_true(s->sparsity == 0.5);
    assert_int_equal(s->prune_n, 0);
    assert_int_equal(s->block_size, 128);
    assert_true(s->damp_percent == 0.01);
    assert_int_equal(s->bits, 0);

    const sq_quant_options *q = &spec.steps[1].quant;
    assert_int_equal(q->bits, 4);
    assert_int_equal(q->group_size, 128);
    assert_true(q->sym);
    assert_false(q->desc_act);
    assert_false(q->static_groups);
    assert_true(q->damp_percent == 0.01);
    assert_int_equal(q->block_size, 128);
    assert_true(q->true_sequential);
    assert_true(q->preserve_sparsity); /* steps[0] pruned */

    const sq_lora_options *l = &spec.steps[2].lora;
    assert_int_equal(l->r, 16);
    assert_true(l->alpha == 32);
    assert_true(l->dropout == 0.05);
    assert_int_equal(l->n_target_modules, 7);
    assert_string_equal(l->target_modules[0], "q_proj");
    assert_string_equal(l->target_modules[6], "down_proj");
    assert_string_equal(l->base_quant, "gptq"); /* the base was quantized by steps[1] */
    assert_true(l->learning_rate == 2e-4);
    assert_int_equal(l->steps, 200);
    assert_int_equal(l->batch_size, 4);
    assert_int_equal(l->grad_accum, 4);
    assert_int_equal(l->seqlen, 2048);
    assert_true(l->weight_decay == 0);
    assert_true(l->recompute);
    assert_string_equal(l->train_data, "c.txt");

    const sq_eval_options *e = &spec.steps[3].eval;
    assert_string_equal(e->data, "t.txt");
    assert_int_equal(e->seqlen, 2048);
    assert_int_equal(e->max_windows, 0);
    assert_int_equal(e->kv_cache_bits, 0);
    assert_int_equal(e->act_bits, 0);
    assert_string_equal(sq_step_kind_name(spec.steps[2].kind), "qlora");
    sq_job_spec_free(&spec);

    json = "{\"model\": \"m\", \"state_uri\": \"st\", \"output_uri\": \"out\", \"data\": {\"calibration\": \"c\"},"
           " \"output\": {\"format\": \"compressed-tensors\"}, \"steps\": [{\"smoothquant\": {}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "smooth", json), SQ_OK);
    const sq_step *smooth = &spec.steps[0];
    assert_true(smooth->smooth.alpha == 0.5);
    assert_int_equal(smooth->smooth.act_bits, 8);
    assert_int_equal(smooth->quant.bits, 8);
    assert_int_equal(smooth->quant.group_size, -1);
    assert_true(smooth->quant.sym);
    sq_job_spec_free(&spec);

    json = "{\"model\": \"m\", \"state_uri\": \"st\", \"output_uri\": \"out\", \"data\": {\"seqlen\": 256},"
           " \"steps\": [{\"qlora\": {\"train_data\": \"train.txt\"}}, {\"eval\": {\"data\": \"t.txt\"}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "plain", json), SQ_OK);
    assert_string_equal(spec.name, "plain");
    assert_string_equal(spec.steps[0].lora.base_quant, "nf4");
    assert_string_equal(spec.steps[0].lora.train_data, "train.txt");
    assert_null(spec.calibration_uri);
    assert_int_equal(spec.steps[0].lora.seqlen, 256);
    assert_int_equal(spec.steps[1].eval.seqlen, 256);
    sq_job_spec_free(&spec);

    /* preserve_sparsity: false without an earlier pruning step, as written when given. */
    json = "{\"model\": \"m\", \"state_uri\": \"st\", \"output_uri\": \"out\", \"data\": {\"calibration\": \"c\"},"
           " \"steps\": [{\"gptq\": {}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "plain", json), SQ_OK);
    assert_false(spec.steps[0].quant.preserve_sparsity);
    sq_job_spec_free(&spec);
    json = "{\"model\": \"m\", \"state_uri\": \"st\", \"output_uri\": \"out\", \"data\": {\"calibration\": \"c\"},"
           " \"steps\": [{\"gptq\": {\"preserve_sparsity\": true}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "plain", json), SQ_OK);
    assert_true(spec.steps[0].quant.preserve_sparsity);
    sq_job_spec_free(&spec);
    json = "{\"model\": \"m\", \"state_uri\": \"st\", \"output_uri\": \"out\", \"data\": {\"calibration\": \"c\"},"
           " \"steps\": [{\"wanda\": {\"pattern\": \"2:4\"}}, {\"gptq\": {\"preserve_sparsity\": false}}]}";
    assert_int_equal(sq_job_spec_parse(&spec, "plain", json), SQ_OK);
    assert_false(spec.steps[1].quant.preserve_sparsity);
    sq_job_spec_free(&spec);
}

static void test_data_sampling(void **state)
{
    (void)state;
    sq_job_spec spec;
    const char *json = "{\"model\": \"m\", \"state_uri\": \"s\", \"output_uri\": \"o\", \"steps\": [{\"gptq\": {}}],"
                       " \"data\": {\"calibration\": \"ids.txt\", \"format\": \"token_ids\", \"sampling\": \"consecutive\"}}";
    assert_int_equal(sq_job_spec_parse(&spec, "sampling.json", json), SQ_OK);
    assert_int_equal(spec.sampling, SQ_SAMPLING_CONSECUTIVE);
    assert_true(spec.calibration_token_ids);
    sq_job_spec_free(&spec);
}

static void test_step_kind_names(void **state)
{
    (void)state;
    const char *names[] = {"rtn", "gptq", "sparsegpt", "wanda", "magnitude", "qlora", "eval", "smoothquant"};
    for (int k = SQ_STEP_RTN; k <= SQ_STEP_SMOOTHQUANT; k++)
        assert_string_equal(sq_step_kind_name((sq_step_kind)k), names[k]);
}

/* The canonical form written by hand: keys sorted, no whitespace. Its SHA-256
 * (from Python's hashlib) is e4f6bd09...; the spec hash must equal it. */
static const char canonical[] = "{\"model\":\"m\",\"output_uri\":\"o\",\"seed\":3,\"state_uri\":\"s\","
                                "\"steps\":[{\"magnitude\":{\"sparsity\":0.5}},{\"rtn\":{\"bits\":8,\"sym\":false}},"
                                "{\"eval\":{\"data\":\"t.txt\"}}]}";
static const char canonical_sha256[] = "e4f6bd09ffed0f25eac4beedb8d2a50aba58438fd368511bcc1ccecf15227622";

static void test_hash_ignores_formatting_not_values(void **state)
{
    (void)state;
    char expected[SQ_SHA256_HEX_LEN + 1];
    sq_sha256_hex(canonical, strlen(canonical), expected);
    assert_string_equal(expected, canonical_sha256);

    const char *tidy = "{\"model\": \"m\", \"output_uri\": \"o\", \"seed\": 3, \"state_uri\": \"s\", \"steps\": "
                       "[{\"magnitude\": {\"sparsity\": 0.5}}, {\"rtn\": {\"bits\": 8, \"sym\": false}}, "
                       "{\"eval\": {\"data\": \"t.txt\"}}]}";
    const char *shuffled = "{\n\t\"steps\" : [ { \"magnitude\" : { \"sparsity\" : 5e-1 } } ,\n"
                           "  { \"rtn\": { \"sym\": false, \"bits\": 8 } },\n  {\"eval\":{\"data\":\"t.txt\"}} ],\n"
                           "  \"state_uri\": \"s\",   \"seed\": 3,\n  \"output_uri\": \"o\", \"model\": \"m\"\n}\n";
    const char *other_value = "{\"model\": \"m\", \"output_uri\": \"o\", \"seed\": 4, \"state_uri\": \"s\", \"steps\": "
                              "[{\"magnitude\": {\"sparsity\": 0.5}}, {\"rtn\": {\"bits\": 8, \"sym\": false}}, "
                              "{\"eval\": {\"data\": \"t.txt\"}}]}";
    sq_job_spec a, b, c;
    assert_int_equal(sq_job_spec_parse(&a, "a.json", tidy), SQ_OK);
    assert_int_equal(sq_job_spec_parse(&b, "b.json", shuffled), SQ_OK);
    assert_int_equal(sq_job_spec_parse(&c, "c.json", other_value), SQ_OK);
    assert_string_equal(a.sha256, canonical_sha256);
    assert_string_equal(b.sha256, canonical_sha256);
    assert_string_not_equal(c.sha256, canonical_sha256);
    sq_job_spec_free(&a);
    sq_job_spec_free(&b);
    sq_job_spec_free(&c);
}

static void test_missing_file_is_io_error(void **state)
{
    (void)state;
    sq_job_spec spec;
    assert_int_not_equal(sq_job_spec_load(&spec, "/nonexistent/job.json"), SQ_OK);
    assert_non_null(strstr(sq_last_error(), "/nonexistent/job.json"));
    assert_null(spec.steps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_example_validates),
        cmocka_unit_test(test_demo_example_values),
        cmocka_unit_test(test_bad_specs_name_path_and_rule),
        cmocka_unit_test(test_all_errors_are_reported),
        cmocka_unit_test(test_many_errors_are_counted_not_cut),
        cmocka_unit_test(test_syntax_error_names_line_and_column),
        cmocka_unit_test(test_defaults_are_filled),
        cmocka_unit_test(test_step_kind_names),
        cmocka_unit_test(test_hash_ignores_formatting_not_values),
        cmocka_unit_test(test_data_sampling),
        cmocka_unit_test(test_missing_file_is_io_error),
    };
    return cmocka_run_group_tests_name("spec", tests, NULL, NULL);
}
