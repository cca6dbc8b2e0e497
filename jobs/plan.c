/* plan.c: the assignment of samples, layer blocks and solves to ranks (see plan.h). */
#include "jobs/plan.h"

#include <string.h>

#include "model/geometry.h"

/* Split `total` items into `parts` contiguous ranges whose sizes differ by at most one. */
static void split_evenly(sq_range *ranges, int parts, int total)
{
    int base = total / parts, extra = total % parts, next = 0;
    for (int i = 0; i < parts; i++) {
        ranges[i].first = next;
        ranges[i].count = base + (i < extra ? 1 : 0);
        next += ranges[i].count;
    }
}

sq_status sq_plan_build(sq_plan *plan, const sq_plan_request *rq)
{
    memset(plan, 0, sizeof *plan);
    if (rq->world_size < 1 || rq->world_size > SQ_PLAN_MAX_RANKS)
        return sq_fail(SQ_ERR_ARG, "plan: world size %d outside 1..%d", rq->world_size, SQ_PLAN_MAX_RANKS);
    if (rq->num_layers < 1 || rq->linears_per_layer < 1 || rq->nsamples < 1)
        return sq_fail(SQ_ERR_ARG, "plan: need at least one layer, linear and sample (got %d, %d, %d)",
                       rq->num_layers, rq->linears_per_layer, rq->nsamples);
    plan->mode = rq->mode;
    plan->world_size = rq->world_size;
    plan->num_layers = rq->num_layers;
    plan->linears_per_layer = rq->linears_per_layer;
    plan->nsamples = rq->nsamples;

    uint64_t samples_per_rank;
    if (rq->mode == SQ_PARALLEL_SEQUENTIAL) {
        if (rq->nsamples < rq->world_size)
            return sq_fail(SQ_ERR_ARG, "plan: %d calibration samples cannot be shared by %d ranks (need at least one each)",
                           rq->nsamples, rq->world_size);
        plan->num_blocks = 1;
        plan->blocks[0] = (sq_range){0, rq->num_layers};
        split_evenly(plan->samples, rq->world_size, rq->nsamples);
        samples_per_rank = (uint64_t)plan->samples[0].count;
    } else {
        int blocks = rq->num_blocks > 0 ? rq->num_blocks : rq->world_size;
        if (blocks > rq->num_layers)
            blocks = rq->num_layers;
        if (blocks > SQ_PLAN_MAX_RANKS)
            return sq_fail(SQ_ERR_ARG, "plan: %d pipeline blocks exceed %d", blocks, SQ_PLAN_MAX_RANKS);
        plan->num_blocks = blocks;
        split_evenly(plan->blocks, blocks, rq->num_layers);
        for (int r = 0; r < rq->world_size; r++)
            plan->samples[r] = (sq_range){0, rq->nsamples};
        samples_per_rank = (uint64_t)rq->nsamples;
    }

    if (rq->memory_budget_bytes > 0) {
        /* Resident at once: the rank's activations (input and output of a layer) and one layer. */
        uint64_t need = 2 * samples_per_rank * rq->bytes_per_sample + rq->bytes_per_layer;
        if (need > rq->memory_budget_bytes)
            return sq_fail(SQ_ERR_ARG,
                           "plan: each rank needs %llu MiB (%llu samples of activations plus one layer) but the "
                           "memory budget is %llu MiB; use more ranks in sequential mode or fewer samples",
                           (unsigned long long)(need >> 20), (unsigned long long)samples_per_rank,
                           (unsigned long long)(rq->memory_budget_bytes >> 20));
    }
    return SQ_OK;
}

int sq_plan_solve_owner(const sq_plan *plan, int layer, int linear)
{
    if (plan->mode == SQ_PARALLEL_PIPELINE)
        return sq_plan_block_rank(plan, sq_plan_block_of_layer(plan, layer));
    return (layer * plan->linears_per_layer + linear) % plan->world_size;
}

int sq_plan_block_of_layer(const sq_plan *plan, int layer)
{
    for (int b = 0; b < plan->num_blocks; b++)
        if (layer >= plan->blocks[b].first && layer < plan->blocks[b].first + plan->blocks[b].count)
            return b;
    return -1;
}

int sq_plan_block_rank(const sq_plan *plan, int block) { return block % plan->world_size; }

sq_plan_request sq_job_plan_request(const sq_job_spec *spec, int world_size, int num_layers)
{
    return (sq_plan_request){.mode = spec->mode,
                             .world_size = world_size,
                             .num_layers = num_layers,
                             .linears_per_layer = SQ_LINEAR_COUNT,
                             .nsamples = spec->nsamples,
                             .num_blocks = spec->pipeline_blocks};
}
