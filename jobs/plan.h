/* plan.h: who does what — a pure function from (model shape, world size, mode,
 * memory budget) to the assignment of layers, calibration samples and solves.
 *
 * sequential: every rank walks every layer and holds a contiguous slice of the
 *   calibration samples; each linear's solve is owned by one rank, dealt out
 *   round-robin over (layer, linear) so the work spreads evenly.
 * pipeline: the layers are cut into `num_blocks` contiguous blocks (default:
 *   one per rank; sizes differ by at most one layer, earlier blocks take the
 *   extra); block b runs on rank b % world_size with all samples; the inputs
 *   of each block come from the unquantized model, so the result depends on
 *   the block cut and not on how many ranks run the blocks.
 *
 * The plan is computed identically on every rank; nothing here talks to MPI. */
#ifndef SQ_JOBS_PLAN_H
#define SQ_JOBS_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "jobs/spec.h"

#define SQ_PLAN_MAX_RANKS 4096

typedef struct {
    int first;
    int count;
} sq_range;

typedef struct {
    sq_parallel_mode mode;
    int world_size;
    int num_layers;
    int linears_per_layer;
    int nsamples;
    int num_blocks;                        /* pipeline: number of layer blocks (1 in sequential) */
    sq_range samples[SQ_PLAN_MAX_RANKS];   /* per rank (sequential); all samples in pipeline */
    sq_range blocks[SQ_PLAN_MAX_RANKS];    /* per block: its layers (pipeline); block 0 = all layers in sequential */
} sq_plan;

typedef struct {
    sq_parallel_mode mode;
    int world_size;
    int num_layers;
    int linears_per_layer;
    int nsamples;
    int num_blocks;                 /* pipeline only; 0 = one block per rank */
    uint64_t bytes_per_sample;      /* activations of one sample through one layer */
    uint64_t bytes_per_layer;       /* one layer's weights plus its largest Hessian */
    uint64_t memory_budget_bytes;   /* per rank; 0 = unlimited */
} sq_plan_request;

/* The request for a job of `spec` on `world_size` ranks over a model of `num_layers` layers. */
sq_plan_request sq_job_plan_request(const sq_job_spec *spec, int world_size, int num_layers);

/* Build the plan; SQ_ERR_ARG with a message saying what does not fit. */
sq_status sq_plan_build(sq_plan *plan, const sq_plan_request *request);

/* The rank that owns the solve of linear `linear` (0..linears_per_layer-1) of `layer`. */
int sq_plan_solve_owner(const sq_plan *plan, int layer, int linear);

/* Pipeline: the block containing `layer`, and the rank that runs a block. */
int sq_plan_block_of_layer(const sq_plan *plan, int layer);
int sq_plan_block_rank(const sq_plan *plan, int block);

#endif
