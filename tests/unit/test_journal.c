/* test_journal.c: the journal records layers and steps durably, resumes where it
 * stopped, refuses another spec's state, rejects a damaged file, and records a
 * push so that it is found again for the same store, name and version only, and
 * keeps a training step's latest checkpoint (refusing a malformed one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "core/scratch_dir.h"
#include "jobs/journal.h"

static char state_dir[256];
static char *test_dir; /* the temporary directory holding state_dir, removed after each test */
static sq_store *store; /* local: the journal goes through the store API */

static void spec_for(sq_job_spec *spec, int bits)
{
    char text[1024];
    snprintf(text, sizeof text,
             "{\"model\": \"m\", \"data\": {\"calibration\": \"c.txt\"}, \"steps\": [{\"gptq\": {\"bits\": %d}}, "
             "{\"eval\": {\"data\": \"t.txt\"}}], \"state_uri\": \"%s\", \"output_uri\": \"o\"}",
             bits, state_dir);
    assert_int_equal(sq_job_spec_parse(spec, "job.json", text), SQ_OK);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(sq_scratch_dir_create(&test_dir), SQ_OK);
    snprintf(state_dir, sizeof state_dir, "%s/state", test_dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(sq_scratch_dir_remove(test_dir), SQ_OK);
    free(test_dir);
    test_dir = NULL;
    return 0;
}

static void test_record_and_resume(void **state)
{
    (void)state;
    sq_job_spec spec;
    spec_for(&spec, 4);
    sq_journal j;
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_int_equal(sq_journal_layers_done(&j, 0), 0);
    assert_false(sq_journal_step_done(&j, 0));
    assert_int_equal(sq_journal_record_layer(&j, 0, 0, "step0/layer_000.safetensors", "aa"), SQ_OK);
    assert_int_equal(sq_journal_record_layer(&j, 0, 1, "step0/layer_001.safetensors", "bb"), SQ_OK);
    sq_journal_close(&j);

    /* A rerun of the same spec sees both layers. */
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_int_equal(sq_journal_layers_done(&j, 0), 2);
    const char *sha = NULL;
    assert_string_equal(sq_journal_layer_artifact(&j, 0, 1, &sha), "step0/layer_001.safetensors");
    assert_string_equal(sha, "bb");
    assert_null(sq_journal_layer_artifact(&j, 0, 2, NULL));

    /* A bad artifact makes the runner forget it and everything after it. */
    assert_int_equal(sq_journal_truncate_layers(&j, 0, 1), SQ_OK);
    assert_int_equal(sq_journal_layers_done(&j, 0), 1);
    json_t *result = json_pack("{s:f}", "ppl", 12.5);
    assert_int_equal(sq_journal_record_step(&j, 0, result), SQ_OK);
    json_decref(result);
    sq_journal_close(&j);

    assert_int_equal(sq_journal_read(&j, state_dir, store), SQ_OK);
    assert_true(sq_journal_step_done(&j, 0));
    assert_false(sq_journal_step_done(&j, 1));
    assert_int_equal(sq_journal_layers_done(&j, 0), 1);
    sq_journal_close(&j);
    sq_job_spec_free(&spec);
}

static void test_other_spec_refused(void **state)
{
    (void)state;
    sq_job_spec spec, other;
    spec_for(&spec, 4);
    spec_for(&other, 3);
    sq_journal j;
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    sq_journal_close(&j);
    char *path = sq_path_join(state_dir, "journal.json");
    char *before;
    size_t before_len;
    assert_int_equal(sq_read_file(path, &before, &before_len), SQ_OK);
    assert_int_equal(sq_journal_open(&j, &other, store, NULL), SQ_ERR_MISMATCH);
    assert_non_null(strstr(sq_last_error(), "belongs to another job spec"));
    sq_journal_close(&j);
    /* Nothing was overwritten. */
    char *after;
    size_t after_len;
    assert_int_equal(sq_read_file(path, &after, &after_len), SQ_OK);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len);
    free(before);
    free(after);
    free(path);
    sq_job_spec_free(&spec);
    sq_job_spec_free(&other);
}

static void test_damaged_journal(void **state)
{
    (void)state;
    assert_int_equal(sq_make_dirs(state_dir), SQ_OK);
    char *path = sq_path_join(state_dir, "journal.json");
    const char *damaged = "{\"format\": \"shardq-journal/1\", \"spec_sha256\": \"x\", \"steps\": [{\"layers\": 3}]}";
    assert_int_equal(sq_write_file_atomic(path, damaged, strlen(damaged)), SQ_OK);
    sq_journal j;
    assert_int_equal(sq_journal_read(&j, state_dir, store), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "steps[0].layers: must be an array"));
    sq_journal_close(&j);
    assert_int_equal(sq_write_file_atomic(path, "{\"fo", 4), SQ_OK);
    assert_int_equal(sq_journal_read(&j, state_dir, store), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "journal.json"));
    sq_journal_close(&j);
    free(path);
}

static void test_push_recorded_once(void **state)
{
    (void)state;
    sq_job_spec spec;
    spec_for(&spec, 4);
    sq_journal j;
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_null(sq_journal_push_recorded(&j, "s3://b/store", "m", "1"));
    assert_int_equal(sq_journal_record_push(&j, "s3://b/store", "m", "1", "s3://b/store/m/1", "cafe"), SQ_OK);
    sq_journal_close(&j);
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_string_equal(sq_journal_push_recorded(&j, "s3://b/store", "m", "1"), "cafe");
    assert_null(sq_journal_push_recorded(&j, "s3://b/store", "m", "2")); /* another version is another push */
    assert_null(sq_journal_push_recorded(&j, "s3://b/other", "m", "1"));
    sq_journal_close(&j);
    sq_job_spec_free(&spec);

    char *path = sq_path_join(state_dir, "journal.json");
    const char *damaged = "{\"format\": \"shardq-journal/1\", \"spec_sha256\": \"x\", \"steps\": [], "
                          "\"push\": {\"store\": \"s\", \"name\": \"m\", \"version\": 1}}";
    assert_int_equal(sq_write_file_atomic(path, damaged, strlen(damaged)), SQ_OK);
    assert_int_equal(sq_journal_read(&j, state_dir, store), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "push.version: must be a string"));
    sq_journal_close(&j);
    free(path);
}

static void test_training_checkpoint(void **state)
{
    (void)state;
    sq_job_spec spec;
    spec_for(&spec, 4);
    sq_journal j;
    int train_step = -1;
    const char *sha = NULL;
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_null(sq_journal_checkpoint(&j, 0, &train_step, &sha));
    assert_int_equal(sq_journal_record_checkpoint(&j, 0, 2, "step0/train_000002.safetensors", "aa"), SQ_OK);
    assert_int_equal(sq_journal_record_checkpoint(&j, 0, 4, "step0/train_000004.safetensors", "bb"), SQ_OK);
    sq_journal_close(&j);
    assert_int_equal(sq_journal_open(&j, &spec, store, NULL), SQ_OK);
    assert_string_equal(sq_journal_checkpoint(&j, 0, &train_step, &sha), "step0/train_000004.safetensors");
    assert_int_equal(train_step, 4); /* the latest replaces the earlier one */
    assert_string_equal(sha, "bb");
    assert_false(sq_journal_step_done(&j, 0));
    sq_journal_close(&j);
    sq_job_spec_free(&spec);

    char *path = sq_path_join(state_dir, "journal.json");
    const char *damaged = "{\"format\": \"shardq-journal/1\", \"spec_sha256\": \"x\", \"steps\": [{\"layers\": [], "
                          "\"checkpoint\": {\"train_step\": -1, \"artifact\": \"a\", \"sha256\": \"b\"}}]}";
    assert_int_equal(sq_write_file_atomic(path, damaged, strlen(damaged)), SQ_OK);
    assert_int_equal(sq_journal_read(&j, state_dir, store), SQ_ERR_FORMAT);
    assert_non_null(strstr(sq_last_error(), "steps[0].checkpoint"));
    sq_journal_close(&j);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_spec_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_recorded_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training_checkpoint, setup, teardown),
    };
    if (sq_store_open(&store, NULL) != SQ_OK)
        return 1;
    int failed = cmocka_run_group_tests_name("journal", tests, NULL, NULL);
    sq_store_close(store);
    return failed;
}
