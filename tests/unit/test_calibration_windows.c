/* test_calibration_windows.c: random windows are contiguous slices of the corpus, inside it,
 * reproducible for a seed, different for another seed; consecutive windows are the corpus cut in
 * order, whatever the seed; short corpora are refused naming the data fields. */
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
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, SQ_SAMPLING_RANDOM, 7, a), SQ_OK);
    int distinct_starts = 0;
    for (int s = 0; s < NS; s++) {
        int start = a[s * SEQ];
        assert_true(start >= 0 && start <= NTOK - SEQ - 1);
        for (int t = 0; t < SEQ; t++)
            assert_int_equal(a[s * SEQ + t], start + t);
        distinct_starts += s == 0 || start != a[(s - 1) * SEQ];
    }
    assert_true(distinct_starts > NS / 2);
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, SQ_SAMPLING_RANDOM, 7, b), SQ_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_int_equal(sq_draw_calibration_windows("corpus", corpus, NTOK, NS, SEQ, SQ_SAMPLING_RANDOM, 8, c), SQ_OK);
    assert_memory_not_equal(a, c, sizeof a);
}

/* Window i is ids[i*SEQ, (i+1)*SEQ): a corpus of exactly NS*SEQ ids is used whole, in order,
 * for any seed; a longer one only up to NS*SEQ. */
static void test_consecutive_windows(void **state)
{
    (void)state;
    static int32_t corpus[NTOK], a[NS * SEQ], b[NS * SEQ];
    for (int i = 0; i < NTOK; i++)
        corpus[i] = 3 * i + 1;
    assert_int_equal(sq_draw_calibration_windows("ids", corpus, NS * SEQ, NS, SEQ, SQ_SAMPLING_CONSECUTIVE, 7, a),
                     SQ_OK);
    for (int s = 0; s < NS; s++)
        for (int t = 0; t < SEQ; t++)
            assert_int_equal(a[s * SEQ + t], 3 * (s * SEQ + t) + 1);
    assert_int_equal(sq_draw_calibration_windows("ids", corpus, NTOK, NS, SEQ, SQ_SAMPLING_CONSECUTIVE, 99, b),
                     SQ_OK);
    assert_memory_equal(a, b, sizeof a);
}

static void test_short_corpus_refused(void **state)
{
    (void)state;
    static int32_t corpus[NS * SEQ], out[NS * SEQ];
    assert_int_equal(sq_draw_calibration_windows("wiki.txt", corpus, SEQ, 1, SEQ, SQ_SAMPLING_RANDOM, 0, out),
                     SQ_ERR_SPEC);
    assert_non_null(strstr(sq_last_error(), "data.seqlen: wiki.txt has 16 tokens, fewer than seqlen + 1 = 17"));
    /* Consecutive: exactly NS*SEQ is enough, one fewer is not. */
    assert_int_equal(sq_draw_calibration_windows("ids.txt", corpus, NS * SEQ - 1, NS, SEQ, SQ_SAMPLING_CONSECUTIVE,
                                                 0, out),
                     SQ_ERR_SPEC);
    assert_non_null(strstr(sq_last_error(), "data.sampling: \"consecutive\" needs data.nsamples x data.seqlen = "
                                            "32 x 16 = 512 tokens, ids.txt has 511"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_windows_are_slices),
        cmocka_unit_test(test_consecutive_windows),
        cmocka_unit_test(test_short_corpus_refused),
    };
    return cmocka_run_group_tests_name("calibration_windows", tests, NULL, NULL);
}
