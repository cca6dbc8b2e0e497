/* test_plan.c: the plan covers every sample, layer and solve exactly once,
 * balances them, and refuses what cannot fit. Expectations are counted by hand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "jobs/plan.h"

static sq_plan plan; /* large: keep it off the stack */

static sq_plan_request request(sq_parallel_mode mode, int world, int layers, int samples)
{
    return (sq_plan_request){.mode = mode, .world_size = world, .num_layers = layers, .linears_per_layer = 7,
                             .nsamples = samples};
}

static void test_sequential_splits_samples(void **state)
{
    (void)state;
    sq_plan_request rq = request(SQ_PARALLEL_SEQUENTIAL, 3, 4, 10);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    /* 10 samples over 3 ranks: 4, 3, 3, contiguous. */
    assert_int_equal(plan.samples[0].first, 0);
    assert_int_equal(plan.samples[0].count, 4);
    assert_int_equal(plan.samples[1].first, 4);
    assert_int_equal(plan.samples[1].count, 3);
    assert_int_equal(plan.samples[2].first, 7);
    assert_int_equal(plan.samples[2].count, 3);
    assert_int_equal(plan.num_blocks, 1);
    assert_int_equal(plan.blocks[0].count, 4);
}

static void test_sequential_solves_round_robin(void **state)
{
    (void)state;
    sq_plan_request rq = request(SQ_PARALLEL_SEQUENTIAL, 3, 4, 10);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    int per_rank[3] = {0};
    for (int layer = 0; layer < 4; layer++)
        for (int linear = 0; linear < 7; linear++)
            per_rank[sq_plan_solve_owner(&plan, layer, linear)]++;
    /* 28 solves over 3 ranks: 10, 9, 9. */
    assert_int_equal(per_rank[0], 10);
    assert_int_equal(per_rank[1], 9);
    assert_int_equal(per_rank[2], 9);
    assert_int_equal(sq_plan_solve_owner(&plan, 1, 0), 7 % 3);
}

static void test_pipeline_blocks(void **state)
{
    (void)state;
    sq_plan_request rq = request(SQ_PARALLEL_PIPELINE, 2, 5, 8);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    assert_int_equal(plan.num_blocks, 2);
    assert_int_equal(plan.blocks[0].first, 0);
    assert_int_equal(plan.blocks[0].count, 3);
    assert_int_equal(plan.blocks[1].first, 3);
    assert_int_equal(plan.blocks[1].count, 2);
    assert_int_equal(sq_plan_block_of_layer(&plan, 2), 0);
    assert_int_equal(sq_plan_block_of_layer(&plan, 3), 1);
    assert_int_equal(sq_plan_solve_owner(&plan, 4, 6), 1);
    assert_int_equal(plan.samples[1].count, 8);
}

static void test_pipeline_blocks_independent_of_ranks(void **state)
{
    (void)state;
    /* Three blocks on one rank and on three ranks: same cut, different owners. */
    sq_plan_request rq = request(SQ_PARALLEL_PIPELINE, 1, 7, 4);
    rq.num_blocks = 3;
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    sq_range one_rank[3];
    memcpy(one_rank, plan.blocks, sizeof one_rank);
    rq.world_size = 3;
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    assert_memory_equal(one_rank, plan.blocks, sizeof one_rank);
    assert_int_equal(sq_plan_block_rank(&plan, 2), 2);
    assert_int_equal(plan.blocks[0].count, 3); /* 7 = 3 + 2 + 2 */
    assert_int_equal(plan.blocks[2].first, 5);
}

static void test_more_blocks_than_layers_is_clamped(void **state)
{
    (void)state;
    sq_plan_request rq = request(SQ_PARALLEL_PIPELINE, 4, 2, 4);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);
    assert_int_equal(plan.num_blocks, 2);
    assert_int_equal(sq_plan_block_rank(&plan, 1), 1);
}

static void test_refusals(void **state)
{
    (void)state;
    sq_plan_request rq = request(SQ_PARALLEL_SEQUENTIAL, 4, 2, 3);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "3 calibration samples cannot be shared by 4 ranks"));

    rq = request(SQ_PARALLEL_SEQUENTIAL, 2, 2, 8);
    rq.bytes_per_sample = 1 << 20;
    rq.bytes_per_layer = 10 << 20;
    rq.memory_budget_bytes = 17 << 20; /* needs 2*4 MiB + 10 MiB = 18 MiB */
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_ERR_ARG);
    assert_non_null(strstr(sq_last_error(), "needs 18 MiB"));
    rq.memory_budget_bytes = 18 << 20;
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_OK);

    rq = request(SQ_PARALLEL_SEQUENTIAL, 0, 2, 8);
    assert_int_equal(sq_plan_build(&plan, &rq), SQ_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential_splits_samples),
        cmocka_unit_test(test_sequential_solves_round_robin),
        cmocka_unit_test(test_pipeline_blocks),
        cmocka_unit_test(test_pipeline_blocks_independent_of_ranks),
        cmocka_unit_test(test_more_blocks_than_layers_is_clamped),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests_name("plan", tests, NULL, NULL);
}
