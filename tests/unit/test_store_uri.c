/* test_store_uri.c: URI parsing (local, file://, s3://) and joining; errors name the URI. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "store/uri.h"

static void test_local_and_file(void **state)
{
    (void)state;
    sq_uri u;
    assert_int_equal(sq_uri_parse(&u, "models/tiny"), SQ_OK);
    assert_int_equal(u.kind, SQ_URI_LOCAL);
    assert_string_equal(u.path, "models/tiny");
    sq_uri_free(&u);
    assert_int_equal(sq_uri_parse(&u, "file:///data/m/config.json"), SQ_OK);
    assert_int_equal(u.kind, SQ_URI_LOCAL);
    assert_string_equal(u.path, "/data/m/config.json");
    sq_uri_free(&u);
}

static void test_s3(void **state)
{
    (void)state;
    sq_uri u;
    assert_int_equal(sq_uri_parse(&u, "s3://my-bucket.v2/a/b/c.safetensors"), SQ_OK);
    assert_int_equal(u.kind, SQ_URI_S3);
    assert_string_equal(u.bucket, "my-bucket.v2");
    assert_string_equal(u.key, "a/b/c.safetensors");
    sq_uri_free(&u);
    assert_int_equal(sq_uri_parse(&u, "s3://bucket"), SQ_OK);
    assert_string_equal(u.key, "");
    sq_uri_free(&u);
}

static void test_errors_name_the_uri(void **state)
{
    (void)state;
    sq_uri u;
    assert_int_equal(sq_uri_parse(&u, "s3://Bad_Bucket/k"), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "s3://Bad_Bucket/k"));
    assert_int_equal(sq_uri_parse(&u, "s3://ab/k"), SQ_ERR_ARG);
    assert_int_equal(sq_uri_parse(&u, "gs://bucket/k"), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "gs://bucket/k"));
    assert_int_equal(sq_uri_parse(&u, "file://relative"), SQ_ERR_ARG);
    assert_int_equal(sq_uri_parse(&u, ""), SQ_ERR_ARG);
}

static void test_join(void **state)
{
    (void)state;
    char *a = sq_uri_join("s3://bkt/store/", "/m/1/config.json");
    assert_string_equal(a, "s3://bkt/store/m/1/config.json");
    char *b = sq_uri_join("/tmp/x", "index.json");
    assert_string_equal(b, "/tmp/x/index.json");
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_local_and_file),
        cmocka_unit_test(test_s3),
        cmocka_unit_test(test_errors_name_the_uri),
        cmocka_unit_test(test_join),
    };
    return cmocka_run_group_tests_name("store_uri", tests, NULL, NULL);
}
