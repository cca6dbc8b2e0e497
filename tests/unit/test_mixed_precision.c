/* test_mixed_precision.c: the bit allocation of quant/mixed_precision.h on hand-made
 * errors, where the right answer is known: the budget is never exceeded, a tie goes to
 * the first linear, a move that does not lower the error is never made, the largest error
 * drop per added bit·parameter wins, a linear may skip a width, and the report reads back
 * to the same plan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "quant/mixed_precision.h"

/* A plan of one layer (seven linears) with square [out, in] = [64, 64] linears, candidates 2,4,8. */
static sq_bit_plan plan_of(const double errors[7][3])
{
    sq_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.num_layers = 1;
    cfg.hidden_size = 64;
    cfg.intermediate_size = 64;
    cfg.num_heads = 1;
    cfg.num_kv_heads = 1;
    cfg.head_dim = 64;
    sq_quant_options opt = {.bits = 4, .group_size = 32, .sym = true, .avg_bits = 4, .candidate_bits = {2, 4, 8},
                            .n_candidates = 3};
    sq_bit_plan plan;
    assert_int_equal(sq_bit_plan_alloc(&plan, &cfg, &opt), SQ_OK);
    for (int i = 0; i < 7; i++) {
        assert_int_equal(plan.out[i] * plan.in[i], 64 * 64);
        memcpy(&plan.errors[i * 3], errors[i], sizeof errors[i]);
    }
    return plan;
}

static double average(const sq_bit_plan *plan)
{
    return sq_bit_plan_average(plan, 32, false);
}

static void test_ties_go_to_the_first_and_the_budget_holds(void **state)
{
    (void)state;
    static const double same[7][3] = {{8, 2, 1}, {8, 2, 1}, {8, 2, 1}, {8, 2, 1}, {8, 2, 1}, {8, 2, 1}, {8, 2, 1}};
    sq_bit_plan plan = plan_of(same);
    /* budget 2 + 2/7·... : room for exactly one 2 -> 4 move (7·2 + 2 = 16 bits per 7 linears) */
    assert_int_equal(sq_bit_plan_allocate(&plan, 16.0 / 7), SQ_OK);
    int expect[7] = {4, 2, 2, 2, 2, 2, 2};
    assert_memory_equal(plan.bits, expect, sizeof expect);
    assert_true(average(&plan) <= 16.0 / 7);
    sq_bit_plan_free(&plan);
}

static void test_largest_drop_per_bit_wins_and_widths_can_be_skipped(void **state)
{
    (void)state;
    /* linear 3: 2 -> 4 gains little, 2 -> 8 gains a lot (per added bit more than anyone's 2 -> 4);
     * linear 5: wider is no better, never moved; the others gain 1 per 2 bits, then 1 per 4 */
    static const double errors[7][3] = {{3, 2, 1}, {3, 2, 1}, {3, 2, 1}, {100, 99, 0}, {3, 2, 1}, {5, 5, 5},
                                        {3, 2, 1}};
    sq_bit_plan plan = plan_of(errors);
    assert_int_equal(sq_bit_plan_allocate(&plan, 20.0 / 7), SQ_OK); /* 6 extra bits per 7 linears */
    int expect[7] = {2, 2, 2, 8, 2, 2, 2};
    assert_memory_equal(plan.bits, expect, sizeof expect);
    assert_int_equal(sq_bit_plan_allocate(&plan, 8), SQ_OK); /* room for everything: all but linear 5 move */
    int all[7] = {8, 8, 8, 8, 8, 2, 8};
    assert_memory_equal(plan.bits, all, sizeof all);
    assert_int_equal(sq_bit_plan_base_bits(&plan), 8);
    sq_bit_plan_free(&plan);
}

static void test_report_reads_back(void **state)
{
    (void)state;
    static const double errors[7][3] = {{3, 2, 1e-17}, {3, 2, 2}, {3.25, 2, 2}, {100, 99, 0}, {3, 2, 2},
                                        {5, 5, 5}, {3, 2, 0.1}};
    sq_bit_plan plan = plan_of(errors), back = plan_of(errors);
    assert_int_equal(sq_bit_plan_allocate(&plan, 3.5), SQ_OK);
    sq_quant_options opt = {.group_size = 32, .sym = true, .avg_bits = 3.5, .candidate_bits = {2, 4, 8},
                            .n_candidates = 3};
    json_t *report = sq_bit_plan_report(&plan, &opt);
    char *text = json_dumps(report, 0);
    json_t *parsed = json_loads(text, 0, NULL);
    memset(back.errors, 0, 21 * sizeof *back.errors);
    assert_int_equal(sq_bit_plan_from_report(&back, parsed, "report"), SQ_OK);
    assert_memory_equal(back.bits, plan.bits, 7 * sizeof *plan.bits);
    assert_memory_equal(back.errors, plan.errors, 21 * sizeof *plan.errors); /* exact doubles */
    json_array_remove(json_object_get(parsed, "linears"), 6);
    assert_int_equal(sq_bit_plan_from_report(&back, parsed, "report"), SQ_ERR_FORMAT);
    free(text);
    json_decref(parsed);
    json_decref(report);
    sq_bit_plan_free(&plan);
    sq_bit_plan_free(&back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_go_to_the_first_and_the_budget_holds),
        cmocka_unit_test(test_largest_drop_per_bit_wins_and_widths_can_be_skipped),
        cmocka_unit_test(test_report_reads_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
