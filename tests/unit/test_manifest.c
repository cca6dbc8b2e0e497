/* test_manifest.c: manifest.json (store/manifest.h) describes files by their
 * independently known sizes and SHA-256s (FIPS 180-2 test vector "abc"),
 * round-trips, and every malformed field is refused with a message naming it. */
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
#include "store/manifest.h"

#define ABC_SHA256 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/shardq-manifest-XXXXXX");
    assert_non_null(mkdtemp(dir));
    char sub[300];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    assert_int_equal(sq_make_dirs(sub), SQ_OK);
    char *path = sq_path_join(dir, "sub/a.txt");
    assert_int_equal(sq_write_file_atomic(path, "abc", 3), SQ_OK);
    free(path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return sq_scratch_dir_remove(dir) == SQ_OK ? 0 : -1;
}

static void test_describe_write_load_verify(void **state)
{
    (void)state;
    char *files[] = {"sub/a.txt"};
    json_t *m = NULL, *loaded = NULL;
    assert_int_equal(sq_manifest_describe(dir, files, 1, NULL, &m), SQ_OK);
    json_t *meta = json_pack("{s:s, s:s, s:{s:f}}", "name", "tiny", "method", "gptq", "metrics", "ppl", 9.5);
    assert_int_equal(sq_manifest_set_meta(m, meta, "test"), SQ_OK);
    json_decref(meta);
    assert_int_equal(sq_manifest_write(dir, m), SQ_OK);
    assert_int_equal(sq_manifest_verify_dir(dir, &loaded), SQ_OK);
    assert_true(json_equal(m, loaded));
    uint64_t size;
    const char *sha;
    assert_int_equal(sq_manifest_entry(loaded, "sub/a.txt", &size, &sha), SQ_OK);
    assert_int_equal(size, 3);
    assert_string_equal(sha, ABC_SHA256);
    assert_int_equal(sq_manifest_total_bytes(loaded), 3);
    /* A changed file fails verification, naming it. */
    char *path = sq_path_join(dir, "sub/a.txt");
    assert_int_equal(sq_write_file_atomic(path, "abd", 3), SQ_OK);
    assert_int_equal(sq_manifest_check_file(loaded, "sub/a.txt", path, "shown/a.txt"), SQ_ERR_MISMATCH);
    assert_non_null(strstr(sq_last_error(), "shown/a.txt: sha256"));
    assert_int_equal(sq_write_file_atomic(path, "abc", 3), SQ_OK);
    free(path);
    /* Fields that are not manifest fields are refused. */
    json_t *bad = json_pack("{s:s}", "nmae", "x");
    assert_int_equal(sq_manifest_set_meta(m, bad, "meta"), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "nmae"));
    json_decref(bad);
    json_decref(loaded);
    json_decref(m);
}

static void expect_refused(const char *text, const char *field)
{
    json_t *m = (json_t *)1;
    assert_int_equal(sq_manifest_parse(text, strlen(text), "M.json", &m), SQ_ERR_FORMAT);
    assert_null(m);
    if (!strstr(sq_last_error(), field) || strncmp(sq_last_error(), "M.json: ", 8))
        fail_msg("'%s' does not name %s", sq_last_error(), field);
}

#define GOOD_ENTRY "{\"sha256\": \"" ABC_SHA256 "\", \"size\": 3}"

static void test_every_field_is_checked(void **state)
{
    (void)state;
    json_t *m = NULL;
    const char *good = "{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": " GOOD_ENTRY "}, "
                       "\"created\": \"2024-05-01T12:00:00Z\", \"quantization\": {}, \"version\": \"1.0-rc_2\"}";
    assert_int_equal(sq_manifest_parse(good, strlen(good), "M.json", &m), SQ_OK);
    json_decref(m);
    expect_refused("[1]", "JSON object");
    expect_refused("{\"files\": {\"a\": " GOOD_ENTRY "}}", "format");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": [{\"path\": \"a\"}]}", "files");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {}}", "files");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a/../../b\": " GOOD_ENTRY "}}",
                   "files[\"a/../../b\"]");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"/etc/passwd\": " GOOD_ENTRY "}}",
                   "files[\"/etc/passwd\"]");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"manifest.json\": " GOOD_ENTRY "}}",
                   "files[\"manifest.json\"]");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": {\"sha256\": \"ABC\", \"size\": 3}}}",
                   "files[\"a\"].sha256");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": {\"sha256\": \"" ABC_SHA256
                   "\", \"size\": -1}}}",
                   "files[\"a\"].size");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": {\"sha256\": \"" ABC_SHA256
                   "\", \"size\": 3, \"mtime\": 0}}}",
                   "files[\"a\"].mtime");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": " GOOD_ENTRY "}, \"name\": \".x\"}",
                   "name");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": " GOOD_ENTRY "}, \"metrics\": 3}",
                   "metrics");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": " GOOD_ENTRY "}, \"created\": \"now\"}",
                   "created");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"files\": {\"a\": " GOOD_ENTRY "}, \"extra\": 1}", "extra");
    expect_refused("{\"format\": \"shardq-manifest/1\", \"format\": \"x\", \"files\": {}}", "duplicate");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_describe_write_load_verify),
        cmocka_unit_test(test_every_field_is_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
