/* test_store_sigv4.c: SigV4 signatures against the examples published in the
 * AWS S3 documentation ("Signature Calculations for the Authorization Header:
 * Transferring Payload in a Single Chunk"), and the URI encoding rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"
#include "store/s3_client.h"
#include "store/s3_sigv4.h"

#define DOC_ACCESS "AKIAIOSFODNN7EXAMPLE"
#define DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_get_object_example(void **state)
{
    (void)state;
    sq_http_header h[] = {{"x-amz-date", "20130524T000000Z"},
                          {"host", "examplebucket.s3.amazonaws.com"},
                          {"range", "bytes=0-9"},
                          {"x-amz-content-sha256", EMPTY_SHA}};
    char *canonical = sq_sigv4_canonical_request("GET", "/test.txt", "", h, 4, EMPTY_SHA);
    char hex[65];
    sq_sha256_hex(canonical, strlen(canonical), hex);
    assert_string_equal(hex, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    free(canonical);
    char *auth = sq_sigv4_authorization("GET", "/test.txt", "", h, 4, EMPTY_SHA, "20130524T000000Z", "us-east-1",
                                        DOC_ACCESS, DOC_SECRET);
    assert_string_equal(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                              "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                              "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    free(auth);
}

static void test_put_object_example(void **state)
{
    (void)state;
    const char *body = "Welcome to Amazon S3.";
    char body_sha[65];
    sq_sha256_hex(body, strlen(body), body_sha);
    assert_string_equal(body_sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    char *path = sq_s3_uri_encode("/test$file.text", 1);
    assert_string_equal(path, "/test%24file.text");
    sq_http_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                          {"date", "Fri, 24 May 2013 00:00:00 GMT"},
                          {"x-amz-date", "20130524T000000Z"},
                          {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                          {"x-amz-content-sha256", body_sha}};
    char *auth = sq_sigv4_authorization("PUT", path, "", h, 5, body_sha, "20130524T000000Z", "us-east-1",
                                        DOC_ACCESS, DOC_SECRET);
    assert_non_null(strstr(auth, "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"));
    free(auth);
    free(path);
}

static void test_list_objects_example(void **state)
{
    (void)state;
    sq_http_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                          {"x-amz-date", "20130524T000000Z"},
                          {"x-amz-content-sha256", EMPTY_SHA}};
    char *auth = sq_sigv4_authorization("GET", "/", "max-keys=2&prefix=J", h, 3, EMPTY_SHA, "20130524T000000Z",
                                        "us-east-1", DOC_ACCESS, DOC_SECRET);
    assert_non_null(strstr(auth, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
    free(auth);
}

static void test_session_token_changes_signature_and_secret_never_appears(void **state)
{
    (void)state;
    sq_http_header h[] = {{"host", "examplebucket.s3.amazonaws.com"},
                          {"x-amz-date", "20130524T000000Z"},
                          {"x-amz-content-sha256", EMPTY_SHA},
                          {"x-amz-security-token", "FQoGZXIvYXdzEXAMPLETOKEN"}};
    char *with = sq_sigv4_authorization("GET", "/k", "", h, 4, EMPTY_SHA, "20130524T000000Z", "us-east-1",
                                        DOC_ACCESS, DOC_SECRET);
    char *without = sq_sigv4_authorization("GET", "/k", "", h, 3, EMPTY_SHA, "20130524T000000Z", "us-east-1",
                                           DOC_ACCESS, DOC_SECRET);
    assert_non_null(strstr(with, "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,"));
    assert_string_not_equal(strstr(with, "Signature="), strstr(without, "Signature="));
    assert_null(strstr(with, DOC_SECRET));
    assert_null(strstr(with, "FQoGZXIvYXdzEXAMPLETOKEN"));
    free(with);
    free(without);
}

static void test_uri_encoding(void **state)
{
    (void)state;
    char *a = sq_s3_uri_encode("a b/c~d_e.f-g+h=i&j", 1);
    assert_string_equal(a, "a%20b/c~d_e.f-g%2Bh%3Di%26j");
    char *b = sq_s3_uri_encode("x/y", 0);
    assert_string_equal(b, "x%2Fy");
    free(a);
    free(b);
}

static void test_addressing_styles(void **state)
{
    (void)state;
    sq_s3 s3 = {.endpoint = "http://127.0.0.1:9000", .host = "127.0.0.1:9000", .scheme = "http",
                .region = "us-east-1", .path_style = 1};
    char *url, *host, *curi;
    assert_int_equal(sq_s3_url(&s3, "bkt", "dir/a b.bin", "list-type=2", &url, &host, &curi), SQ_OK);
    assert_string_equal(url, "http://127.0.0.1:9000/bkt/dir/a%20b.bin?list-type=2");
    assert_string_equal(host, "127.0.0.1:9000");
    assert_string_equal(curi, "/bkt/dir/a%20b.bin");
    free(url), free(host), free(curi);
    sq_s3 aws = {.endpoint = "https://s3.eu-west-1.amazonaws.com", .host = "s3.eu-west-1.amazonaws.com",
                 .scheme = "https", .region = "eu-west-1", .path_style = 0};
    assert_int_equal(sq_s3_url(&aws, "bkt", "k", NULL, &url, &host, &curi), SQ_OK);
    assert_string_equal(url, "https://bkt.s3.eu-west-1.amazonaws.com/k");
    assert_string_equal(host, "bkt.s3.eu-west-1.amazonaws.com");
    assert_string_equal(curi, "/k");
    free(url), free(host), free(curi);
    assert_int_equal(sq_s3_url(&aws, "my.bucket", "k", NULL, &url, &host, &curi), SQ_OK);
    assert_string_equal(url, "https://s3.eu-west-1.amazonaws.com/my.bucket/k");
    free(url), free(host), free(curi);
}

static void test_xml_tag(void **state)
{
    (void)state;
    const char *xml = "<R><Key>a&amp;b</Key><Key>c&lt;d</Key></R>";
    const char *next;
    char *k1 = sq_xml_tag(xml, "Key", &next);
    char *k2 = sq_xml_tag(next, "Key", &next);
    assert_string_equal(k1, "a&b");
    assert_string_equal(k2, "c<d");
    assert_null(sq_xml_tag(next, "Key", NULL));
    free(k1);
    free(k2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object_example),
        cmocka_unit_test(test_put_object_example),
        cmocka_unit_test(test_list_objects_example),
        cmocka_unit_test(test_session_token_changes_signature_and_secret_never_appears),
        cmocka_unit_test(test_uri_encoding),
        cmocka_unit_test(test_addressing_styles),
        cmocka_unit_test(test_xml_tag),
    };
    return cmocka_run_group_tests_name("store_sigv4", tests, NULL, NULL);
}
