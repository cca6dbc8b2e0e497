/* test_calibration_windows.c: windows are contiguous slices of the corpus, inside it,
 * reproducible for a seed, different for another seed; short corpora are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "coordinator/calibration_windows.h"

#define NTOK 1000
#define SEQ 16
#define NS 32

static void test_windows_are_slices(void **state)
{
    (void)state;
    static int32_t corpus[NTOK], a[NS * SEQ], b[NS * SEQ], c[NS * SEQ];
    for (int i = 0; i < NTOK; i++)
        corpus[i] = i; /* a window's first id is its start */
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, 7, a), SQ_OK);
    int distinct_starts = 0;
    for (int s = 0; s < NS; s++) {
        int start = a[s * SEQ];
        assert_true(start >= 0 && start <= NTOK - SEQ - 1);
        for (int t = 0; t < SEQ; t++)
            assert_int_equal(a[s * SEQ + t], start + t);
        distinct_starts += s == 0 || start != a[(s - 1) * SEQ];
    }
    assert_true(distinct_starts > NS / 2);
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, 7, b), SQ_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, 8, c), SQ_OK);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_short_corpus_refused(void **state)
{
    (void)state;
    int32_t corpus[SEQ] = {0}, out[SEQ];
    assert_int_equal(sq_draw_calibration_windows("wiki.txt", corpus, SEQ, 1, SEQ, 0, out), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "wiki.txt: 16 tokens"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_are_slices),
        cmocka_unit_test(test_short_corpus_refused),
    };
    return cmocka_run_group_tests_name("calibration_windows", tests, NULL, NULL);
}
