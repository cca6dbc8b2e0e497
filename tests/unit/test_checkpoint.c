/* test_checkpoint.c: single-file and sharded checkpoints from the fixture tool give the same
 * tensors; crafted bad indexes fail with messages naming the index file and the tensor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/layer.h"
#include "model/layer_prefetch.h"

static char root_dir[256];

static const char *path_in(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", root_dir, name);
    return path;
}

static int make_fixtures(void **state)
{
    (void)state;
    snprintf(root_dir, sizeof root_dir, "/tmp/sq_test_ckpt_XXXXXX");
    if (!mkdtemp(root_dir))
        return -1;
    const char *repo = getenv("SHARDQ_ROOT") ? getenv("SHARDQ_ROOT") : ".";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/build/tools/make_tiny_model %s/single --seed 3 && "
             "%s/build/tools/make_tiny_model %s/sharded --seed 3 --shards 3", repo, root_dir, repo, root_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_fixtures(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Layers loaded through model/layer_prefetch.h (the stored bytes uploaded beside, then widened)
 * hold the bits of a plain load, from one file and from shards; lookups find only that layer. */
static void test_prefetched_layers_match_plain_loads(void **state)
{
    (void)state;
    const char *dirs[] = {"single", "sharded"};
    for (int d = 0; d < 2; d++) {
        char config_path[600];
        snprintf(config_path, sizeof config_path, "%s/config.json", path_in(dirs[d]));
        sq_model_config cfg;
        assert_int_equal(sq_model_config_load(&cfg, config_path), SQ_OK);
        sq_checkpoint *c = NULL;
        assert_int_equal(sq_checkpoint_open(&c, path_in(dirs[d])), SQ_OK);
        sq_layer_weights plain, fetched;
        assert_int_equal(sq_layer_weights_alloc(&plain, &cfg), SQ_OK);
        assert_int_equal(sq_layer_weights_alloc(&fetched, &cfg), SQ_OK);
        sq_layer_prefetch next;
        assert_int_equal(sq_layer_prefetch_init(&next, c, cfg.num_layers), SQ_OK);
        assert_non_null(next.device);
        for (int layer = 0; layer < cfg.num_layers; layer++) {
            assert_int_equal(sq_layer_prefetch_start(&next, layer), SQ_OK);
            assert_int_equal(sq_layer_prefetch_wait(&next), SQ_OK);
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", layer);
            assert_non_null(sq_layer_prefetch_find(&next, name));
            snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", layer + 1);
            assert_null(sq_layer_prefetch_find(&next, name));
            assert_int_equal(sq_layer_weights_load(&plain, &cfg, c, layer), SQ_OK);
            assert_int_equal(sq_layer_weights_load_prefetched(&fetched, &cfg, c, layer, &next), SQ_OK);
            for (int i = 0; i < SQ_LINEAR_COUNT; i++) /* the CPU backend's device is host memory */
                assert_memory_equal(plain.linear[i].weight, fetched.linear[i].weight,
                                    sizeof(float) * plain.linear[i].in_features * plain.linear[i].out_features);
            assert_memory_equal(plain.input_norm, fetched.input_norm, sizeof(float) * cfg.hidden_size);
            assert_memory_equal(plain.post_attention_norm, fetched.post_attention_norm,
                                sizeof(float) * cfg.hidden_size);
        }
        sq_layer_prefetch_free(&next);
        sq_layer_weights_free(&plain);
        sq_layer_weights_free(&fetched);
        sq_checkpoint_close(c);
    }
}

static void test_single_file(void **state)
{
    (void)state;
    sq_checkpoint *c;
    assert_int_equal(sq_checkpoint_open(&c, path_in("single")), SQ_OK);
    assert_int_equal(sq_checkpoint_tensor_count(c), 21); /* embed + 2 layers x 9 + norm + lm_head */
    for (int i = 1; i < sq_checkpoint_tensor_count(c); i++)
        assert_true(strcmp(sq_checkpoint_tensor_at(c, i - 1)->name, sq_checkpoint_tensor_at(c, i)->name) < 0);
    assert_string_equal(sq_checkpoint_tensor_file(c, 0), "model.safetensors");
    assert_null(sq_checkpoint_tensor_at(c, 21));
    const sq_st_tensor *t = sq_checkpoint_find(c, "model.layers.1.self_attn.k_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, SQ_DTYPE_BF16);
    assert_int_equal(t->shape[0], 32); /* 2 kv heads x head_dim 16 */
    assert_int_equal(t->shape[1], 64);
    assert_null(sq_checkpoint_find(c, "model.layers.2.self_attn.k_proj.weight"));

    float norm[64];
    assert_int_equal(sq_checkpoint_read_f32(c, "model.norm.weight", norm, 64), SQ_OK);
    for (int i = 0; i < 64; i++)
        assert_true(norm[i] > 0.7f && norm[i] < 1.3f);
    assert_int_equal(sq_checkpoint_read_f32(c, "model.norm.weight", norm, 63), SQ_ERR_MISMATCH);
    assert_non_null(strstr(sq_last_error(), "model.norm.weight"));
    assert_int_equal(sq_checkpoint_read_f32(c, "nope.weight", norm, 64), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), "nope.weight"));
    assert_string_equal(sq_checkpoint_dir(c), path_in("single"));
    sq_checkpoint_close(c);
}

static void test_sharded_matches_single(void **state)
{
    (void)state;
    sq_checkpoint *a, *b;
    assert_int_equal(sq_checkpoint_open(&a, path_in("single")), SQ_OK);
    assert_int_equal(sq_checkpoint_open(&b, path_in("sharded")), SQ_OK);
    assert_int_equal(sq_checkpoint_tensor_count(a), sq_checkpoint_tensor_count(b));
    int files_seen[4] = {0};
    for (int i = 0; i < sq_checkpoint_tensor_count(a); i++) {
        const sq_st_tensor *ta = sq_checkpoint_tensor_at(a, i), *tb = sq_checkpoint_tensor_at(b, i);
        assert_string_equal(ta->name, tb->name);
        assert_int_equal(ta->nbytes, tb->nbytes);
        sq_tensor_bytes da, db;
        assert_int_equal(sq_checkpoint_tensor_bytes(a, ta->name, &da), SQ_OK);
        assert_int_equal(sq_checkpoint_tensor_bytes(b, tb->name, &db), SQ_OK);
        assert_memory_equal(da.data, db.data, ta->nbytes);
        sq_tensor_bytes_release(&da);
        sq_tensor_bytes_release(&db);
        const char *file = sq_checkpoint_tensor_file(b, i);
        int k = file[10] - '0'; /* model-0000k-of-00003.safetensors */
        assert_in_range(k, 1, 3);
        files_seen[k] = 1;
    }
    assert_true(files_seen[1] && files_seen[2] && files_seen[3]);
    sq_checkpoint_close(a);
    sq_checkpoint_close(b);
}

/* A copy of the sharded fixture whose index is replaced by `index_json`. */
static const char *bad_copy(const char *name, const char *index_json)
{
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", root_dir, name);
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s/sharded' '%s'", dir, root_dir, dir);
    assert_int_equal(system(cmd), 0);
    char *index = sq_path_join(dir, "model.safetensors.index.json");
    assert_int_equal(sq_write_file_atomic(index, index_json, strlen(index_json)), SQ_OK);
    free(index);
    return dir;
}

static void expect_open_error(const char *dir, sq_status code, const char *fault)
{
    sq_checkpoint *c;
    sq_status st = sq_checkpoint_open(&c, dir);
    if (st != code)
        fail_msg("%s: expected status %d, got %d (%s)", dir, code, st, sq_last_error());
    assert_null(c);
    if (!strstr(sq_last_error(), fault))
        fail_msg("message \"%s\" should contain \"%s\"", sq_last_error(), fault);
}

#define SHARD1 "model-00001-of-00003.safetensors"

static void test_bad_indexes(void **state)
{
    (void)state;
    expect_open_error(bad_copy("b1", "{\"weight_map\":"), SQ_ERR_FORMAT, "model.safetensors.index.json: invalid JSON");
    expect_open_error(bad_copy("b2", "{\"metadata\":{}}"), SQ_ERR_FORMAT,
                      "model.safetensors.index.json: \"weight_map\" must be an object");
    expect_open_error(bad_copy("b3", "{\"weight_map\":{\"model.norm.weight\":3}}"), SQ_ERR_FORMAT,
                      "index.json: weight_map[\"model.norm.weight\"] must be a file name");
    expect_open_error(bad_copy("b4", "{\"weight_map\":{\"model.norm.weight\":\"../single/model.safetensors\"}}"),
                      SQ_ERR_FORMAT, "weight_map[\"model.norm.weight\"] must be a file name");
    expect_open_error(bad_copy("b5", "{\"weight_map\":{\"lm_head.weight\":\"missing.safetensors\"}}"),
                      SQ_ERR_NOT_FOUND, "index.json: weight_map[\"lm_head.weight\"]: ");
    assert_non_null(strstr(sq_last_error(), "missing.safetensors"));
    /* The embedding is in shard 1; the index says shard 1 has a tensor it does not. */
    expect_open_error(bad_copy("b6", "{\"weight_map\":{\"model.embed_tokens.weight\":\"" SHARD1 "\","
                                     "\"lm_head.weight\":\"" SHARD1 "\"}}"),
                      SQ_ERR_FORMAT, "index.json: tensor \"lm_head.weight\" is not in shard " SHARD1);
    expect_open_error(bad_copy("b7", "{\"weight_map\":{\"model.norm.weight\":\"a\",\"model.norm.weight\":\"b\"}}"),
                      SQ_ERR_FORMAT, "duplicate");
}

static void test_tensor_in_two_shards(void **state)
{
    (void)state;
    const char *dir = bad_copy("b8", "{\"weight_map\":{\"model.embed_tokens.weight\":\"" SHARD1 "\","
                                     "\"extra\":\"extra.safetensors\"}}");
    float v = 1;
    sq_st_entry e[2] = {
        {.name = "extra", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &v},
        {.name = "model.embed_tokens.weight", .dtype = SQ_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &v},
    };
    char *shard = sq_path_join(dir, "extra.safetensors");
    assert_int_equal(sq_st_write(shard, e, 2, NULL), SQ_OK);
    free(shard);
    expect_open_error(dir, SQ_ERR_FORMAT, "index.json: tensor \"model.embed_tokens.weight\" is in two shards");
}

static void test_corrupt_shard_names_file(void **state)
{
    (void)state;
    const char *dir = bad_copy("b9", "{\"weight_map\":{\"model.embed_tokens.weight\":\"" SHARD1 "\"}}");
    char *shard = sq_path_join(dir, SHARD1);
    assert_int_equal(sq_write_file_atomic(shard, "\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10), SQ_OK);
    expect_open_error(dir, SQ_ERR_FORMAT, shard);
    free(shard);
}

static void test_empty_directory(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/empty'", root_dir);
    assert_int_equal(system(cmd), 0);
    sq_checkpoint *c;
    assert_int_equal(sq_checkpoint_open(&c, path_in("empty")), SQ_ERR_NOT_FOUND);
    assert_non_null(strstr(sq_last_error(), path_in("empty")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_file),          cmocka_unit_test(test_sharded_matches_single),
        cmocka_unit_test(test_prefetched_layers_match_plain_loads),
        cmocka_unit_test(test_bad_indexes),          cmocka_unit_test(test_tensor_in_two_shards),
        cmocka_unit_test(test_corrupt_shard_names_file), cmocka_unit_test(test_empty_directory),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, make_fixtures, remove_fixtures);
}
