/* test_pareto.c: sq_pareto_frontier against a brute-force O(n^2) dominance check on
 * random point sets (coordinates from a few values, so ties and duplicates are common),
 * plus a case worked by hand and non-finite points. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>

#include "jobs/pareto.h"

/* Brute force: i is on the frontier when no j dominates it. */
static bool on_frontier_brute(const double *x, const double *y, int n, int i)
{
    if (!isfinite(x[i]) || !isfinite(y[i]))
        return false;
    for (int j = 0; j < n; j++) {
        if (!isfinite(x[j]) || !isfinite(y[j]))
            continue;
        if (x[j] <= x[i] && y[j] <= y[i] && (x[j] < x[i] || y[j] < y[i]))
            return false;
    }
    return true;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t next_random(void) /* xorshift64 */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_matches_brute_force(void **state)
{
    (void)state;
    enum { MAX_N = 60 };
    double x[MAX_N], y[MAX_N];
    int frontier[MAX_N];
    for (int trial = 0; trial < 500; trial++) {
        int n = 1 + (int)(next_random() % MAX_N);
        int levels = 2 + (int)(next_random() % 20); /* few levels: many ties */
        for (int i = 0; i < n; i++) {
            x[i] = (double)(next_random() % levels);
            y[i] = (double)(next_random() % levels) / 3.0;
            if (next_random() % 17 == 0)
                y[i] = NAN; /* a point without a perplexity */
        }
        int count = -1;
        assert_int_equal(sq_pareto_frontier(x, y, n, frontier, &count), SQ_OK);
        bool listed[MAX_N] = {false};
        for (int k = 0; k < count; k++) {
            assert_false(listed[frontier[k]]); /* each point once */
            listed[frontier[k]] = true;
            if (k > 0) /* by increasing x; along the frontier y never rises */
                assert_true(x[frontier[k - 1]] <= x[frontier[k]] && y[frontier[k - 1]] >= y[frontier[k]]);
        }
        for (int i = 0; i < n; i++)
            assert_int_equal(listed[i], on_frontier_brute(x, y, n, i));
    }
}

static void test_by_hand(void **state)
{
    (void)state;
    /* sizes and perplexities: (1, 9) (2, 5) (2, 6) (3, 5) (4, 2) (4, 2) (5, 1) (6, 3) */
    const double x[] = {4, 2, 3, 1, 2, 5, 6, 4};
    const double y[] = {2, 5, 5, 9, 6, 1, 3, 2};
    int frontier[8], count;
    assert_int_equal(sq_pareto_frontier(x, y, 8, frontier, &count), SQ_OK);
    const int expected[] = {3, 1, 0, 7, 5}; /* (1,9) (2,5) (4,2) (4,2) (5,1) */
    assert_int_equal(count, 5);
    for (int k = 0; k < count; k++)
        assert_int_equal(frontier[k], expected[k]);
}

static void test_empty_and_all_nan(void **state)
{
    (void)state;
    const double x[] = {1, INFINITY};
    const double y[] = {NAN, 2};
    int frontier[2], count = -1;
    assert_int_equal(sq_pareto_frontier(x, y, 0, frontier, &count), SQ_OK);
    assert_int_equal(count, 0);
    assert_int_equal(sq_pareto_frontier(x, y, 2, frontier, &count), SQ_OK);
    assert_int_equal(count, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_brute_force),
        cmocka_unit_test(test_by_hand),
        cmocka_unit_test(test_empty_and_all_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
