/* test_status.c: error messages keep their context and codes propagate through SQ_TRY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "core/status.h"

static sq_status fails_reading(const char *path) { return sq_fail(SQ_ERR_IO, "%s: cannot open", path); }

static sq_status propagates(const char *path)
{
    SQ_TRY(fails_reading(path));
    return SQ_OK;
}

static void test_message_names_the_file(void **state)
{
    (void)state;
    assert_int_equal(propagates("/tmp/x.safetensors"), SQ_ERR_IO);
    assert_string_equal(sq_last_error(), "/tmp/x.safetensors: cannot open");
}

static void test_context_is_prefixed(void **state)
{
    (void)state;
    sq_fail(SQ_ERR_FORMAT, "tensor 'a': bad dtype");
    assert_int_equal(sq_fail_context(SQ_ERR_FORMAT, "loading layer %d", 3), SQ_ERR_FORMAT);
    assert_string_equal(sq_last_error(), "loading layer 3: tensor 'a': bad dtype");
    sq_clear_error();
    assert_string_equal(sq_last_error(), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message_names_the_file),
        cmocka_unit_test(test_context_is_prefixed),
    };
    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
