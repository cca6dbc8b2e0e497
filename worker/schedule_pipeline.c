/* schedule_pipeline.c: the pipeline schedule of a calibration step (see
 * calibrate.h): an unquantized pass streams the samples through the layer
 * blocks rank to rank, then each rank calibrates its blocks on all samples. */
#include "worker/calibrate_internal.h"

#include <stdlib.h>
#include <string.h>

#define PIPELINE_TAG 7200

/* The layers of one block, resident together for the unquantized streaming pass. */
static sq_status load_block(calib_state *cs, sq_range block, sq_layer_weights *weights)
{
    for (int i = 0; i < block.count; i++) {
        SQ_TRY(sq_layer_weights_alloc(&weights[i], cs->job->cfg));
        SQ_TRY(sq_layer_weights_load(&weights[i], cs->job->cfg, cs->job->ckpt, block.first + i));
    }
    return SQ_OK;
}

/* Phase 1: stream all samples through the unquantized blocks, micro-batch by
 * micro-batch, rank to rank, so that every block's owner holds the block's input.
 * A rank may own several blocks (block b is rank b % world's). With other ranks
 * taking part, a rank walks micro-batch by micro-batch and, within one, its blocks
 * in order, so every rank meets its sends and receives in one global order
 * (micro-batch, block) and none waits on a peer that is waiting on it; the weights
 * of all the rank's blocks are then resident for the pass. A single rank streams
 * one block at a time, so only one block's weights are resident. */
static sq_status stream_blocks(calib_state *cs, float **inputs, int first, int last,
                               sq_layer_weights **weights)
{
    const sq_plan *plan = cs->job->plan;
    int nseq = cs->job->spec->nsamples, B = plan->num_blocks;
    size_t seq_floats = (size_t)cs->seqlen * cs->hidden;
    sq_status st = SQ_OK;
    for (int s = 0; s < nseq && st == SQ_OK; s += cs->micro) {
        int n = nseq - s < cs->micro ? nseq - s : cs->micro;
        size_t bytes = (size_t)n * seq_floats * sizeof(float);
        for (int b = first; b < last && st == SQ_OK; b++) {
            if (sq_plan_block_rank(plan, b) != cs->rank)
                continue;
            int prev = b > 0 ? sq_plan_block_rank(plan, b - 1) : -1;
            int next = b + 1 < B ? sq_plan_block_rank(plan, b + 1) : -1;
            float *chunk = inputs[b] + (size_t)s * seq_floats;
            if (b == 0)
                st = calib_embed_samples(cs, cs->job->samples + (size_t)s * cs->seqlen, n, chunk);
            else if (prev != cs->rank)
                st = sq_comm_recv_device(chunk, bytes, prev, PIPELINE_TAG + b);
            if (st != SQ_OK || next < 0)
                continue;
            st = kn_copy(cs->tmp, chunk, bytes);
            for (int i = 0; i < plan->blocks[b].count && st == SQ_OK; i++)
                st = sq_layer_forward(&weights[b][i], cs->job->cfg, cs->tmp, n, cs->seqlen, &cs->scratch, NULL);
            if (st == SQ_OK)
                st = next == cs->rank ? kn_copy(inputs[b + 1] + (size_t)s * seq_floats, cs->tmp, bytes)
                                      : sq_comm_send_device(cs->tmp, bytes, next, PIPELINE_TAG + b + 1);
        }
    }
    return st;
}

static sq_status stream_block_inputs(calib_state *cs, float **inputs)
{
    const sq_plan *plan = cs->job->plan;
    int nseq = cs->job->spec->nsamples, B = plan->num_blocks;
    int together = cs->world > 1 ? B : 1;
    sq_layer_weights **weights = calloc((size_t)B, sizeof *weights);
    if (!weights)
        return sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
    sq_status st = SQ_OK;
    for (int first = 0; first < B && st == SQ_OK; first += together) {
        int last = first + together < B ? first + together : B;
        for (int b = first; b < last && st == SQ_OK; b++) {
            if (sq_plan_block_rank(plan, b) != cs->rank)
                continue;
            if (!inputs[b])
                st = calib_alloc_activations(cs, nseq, &inputs[b]);
            if (st == SQ_OK && b + 1 < B && sq_plan_block_rank(plan, b + 1) == cs->rank && !inputs[b + 1])
                st = calib_alloc_activations(cs, nseq, &inputs[b + 1]);
            if (st != SQ_OK || b + 1 == B) /* the last block forwards nothing in this pass */
                continue;
            weights[b] = calloc((size_t)plan->blocks[b].count, sizeof **weights);
            st = weights[b] ? load_block(cs, plan->blocks[b], weights[b])
                            : sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
        }
        if (st == SQ_OK)
            st = stream_blocks(cs, inputs, first, last, weights);
        for (int b = first; b < last; b++) {
            for (int i = 0; weights[b] && i < plan->blocks[b].count; i++)
                sq_layer_weights_free(&weights[b][i]);
            free(weights[b]);
            weights[b] = NULL;
        }
    }
    free(weights);
    return st;
}

/* The layer a rank works on in slot `slot` of round `round`, or -1. */
static int slot_layer(const sq_plan *plan, int round, int rank, int slot)
{
    int b = round * plan->world_size + rank;
    if (b >= plan->num_blocks || slot >= plan->blocks[b].count)
        return -1;
    return plan->blocks[b].first + slot;
}

/* Rank 0, after a slot: receive the layers the other ranks finished in it and hand them,
 * with its own (`mine`, taken over), to the background saver in rank order, so the next
 * slot's work overlaps their artifacts and journal records. */
static sq_status record_slot(calib_state *cs, int round, int slot, sq_layer_results *mine, int *finished)
{
    const sq_plan *plan = cs->job->plan;
    int world = cs->world, count = 0;
    int *layers = malloc((size_t)world * sizeof *layers);
    sq_layer_results *batch = calloc((size_t)world, sizeof *batch);
    sq_status st = layers && batch ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
    for (int r = 0; r < world && st == SQ_OK; r++) {
        int l = slot_layer(plan, round, r, slot);
        if (l < 0)
            continue;
        (*finished)++;
        if (!cs->done[l]) {
            if (r == 0) {
                batch[count] = *mine;
                memset(mine, 0, sizeof *mine);
            } else {
                st = sq_layer_results_recv(&batch[count], r);
            }
            layers[count++] = l;
        }
        if (st == SQ_OK)
            calib_log_progress(cs, *finished, cs->job->cfg->num_layers, l, cs->done[l]);
    }
    if (st == SQ_OK && count > 0)
        st = calib_save_layers_in_background(cs, count, layers, batch); /* leaves batch empty */
    for (int i = 0; batch && i < count; i++)
        sq_layer_results_free(&batch[i]);
    free(layers), free(batch);
    return st;
}

/* Phase 2: every rank quantizes its blocks on all samples; ranks move in lock
 * step, one layer per slot, so that rank 0 can hand out replayed layers and
 * collect finished ones after each slot (record_slot). */
static sq_status quantize_blocks(calib_state *cs, float **inputs)
{
    const sq_plan *plan = cs->job->plan;
    int nseq = cs->job->spec->nsamples, B = plan->num_blocks, world = cs->world;
    int rounds = (B + world - 1) / world, finished = 0;
    sq_status st = SQ_OK;
    for (int round = 0; round < rounds && st == SQ_OK; round++) {
        int slots = 0;
        for (int r = 0; r < world; r++) {
            int b = round * world + r;
            if (b < B && plan->blocks[b].count > slots)
                slots = plan->blocks[b].count;
        }
        float *X = round * world + cs->rank < B ? inputs[round * world + cs->rank] : NULL;
        for (int slot = 0; slot < slots && st == SQ_OK; slot++) {
            int layer = slot_layer(plan, round, cs->rank, slot);
            sq_layer_results results;
            memset(&results, 0, sizeof results);
            /* rank 0 hands out the layers being replayed */
            if (cs->rank == 0) {
                for (int r = 1; r < world && st == SQ_OK; r++) {
                    int other = slot_layer(plan, round, r, slot);
                    if (other < 0 || !cs->done[other])
                        continue;
                    sq_layer_results replay;
                    st = calib_load_layer(cs, other, &replay);
                    if (st == SQ_OK)
                        st = sq_layer_results_send(&replay, r);
                    sq_layer_results_free(&replay);
                }
                if (st == SQ_OK && layer >= 0 && cs->done[layer])
                    st = calib_load_layer(cs, layer, &results);
            } else if (layer >= 0 && cs->done[layer]) {
                st = sq_layer_results_recv(&results, 0);
            }
            if (st == SQ_OK && layer >= 0) {
                st = sq_layer_weights_load(&cs->model.layer, cs->job->cfg, cs->job->ckpt, layer);
                if (st == SQ_OK)
                    st = cs->done[layer] ? sq_layer_results_install(&results, &cs->model.layer)
                                         : calib_quantize_layer(cs, layer, X, nseq, false, &results);
                bool last_of_block = layer + 1 == plan->blocks[sq_plan_block_of_layer(plan, layer)].first +
                                                       plan->blocks[sq_plan_block_of_layer(plan, layer)].count;
                bool advanced = !cs->done[layer] && calib_keeps_group_inputs(cs);
                if (st == SQ_OK && cs->needs_samples && !advanced && !last_of_block)
                    st = calib_forward_samples(cs, X, nseq);
            }
            /* finished layers go to rank 0, which records them */
            if (st == SQ_OK && cs->rank != 0 && layer >= 0 && !cs->done[layer])
                st = sq_layer_results_send(&results, 0);
            if (st == SQ_OK && cs->rank == 0)
                st = record_slot(cs, round, slot, &results, &finished);
            sq_layer_results_free(&results);
            if (st == SQ_OK)
                st = calib_check_stop(cs, finished);
        }
    }
    return st;
}

sq_status calib_run_pipeline(calib_state *cs)
{
    int B = cs->job->plan->num_blocks;
    float **inputs = calloc((size_t)B, sizeof *inputs);
    if (!inputs)
        return sq_fail(SQ_ERR_NOMEM, "pipeline: out of memory");
    double t0 = phase_clock();
    sq_status st = cs->needs_samples ? stream_block_inputs(cs, inputs) : SQ_OK;
    cs->phases.forward += phase_clock() - t0; /* the streaming pass, its weight loads included */
    if (st == SQ_OK)
        st = quantize_blocks(cs, inputs);
    if (cs->rank == 0) { /* the last slot's layers, and any save a failure cut short */
        sq_status saved = calib_saved(cs);
        if (st == SQ_OK)
            st = saved;
    }
    for (int b = 0; b < B; b++)
        kn_free(inputs[b]);
    free(inputs);
    return st;
}
