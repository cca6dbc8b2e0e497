/* schedule_sequential.c: the sequential schedule of a calibration step (see
 * calibrate.h): every rank walks every layer on its slice of the samples. */
#include "worker/calibrate_internal.h"

#include <string.h>

sq_status calib_run_sequential(calib_state *cs)
{
    const sq_calibration *job = cs->job;
    sq_range mine = job->plan->samples[cs->rank];
    int layers = job->cfg->num_layers;
    float *X = NULL;
    sq_layer_prefetch next; /* layer + 1's tensors, uploaded while this layer computes */
    SQ_TRY(sq_layer_prefetch_init(&next, job->ckpt, layers));
    sq_status st = SQ_OK;
    if (cs->needs_samples) {
        SQ_TRY_GOTO(st, calib_alloc_activations(cs, mine.count, &X), done);
        SQ_TRY_GOTO(st, calib_embed_samples(cs, job->samples + (size_t)mine.first * cs->seqlen, mine.count, X), done);
    }
    for (int layer = 0; layer < layers; layer++) {
        sq_layer_results results;
        memset(&results, 0, sizeof results);
        double t0 = phase_clock();
        SQ_TRY_GOTO(st, sq_layer_weights_load_next(&cs->model.layer, job->cfg, job->ckpt, layer, &next), done);
        cs->phases.load += phase_clock() - t0;
        if (cs->done[layer]) {
            if (cs->rank == 0) {
                st = calib_saved(cs); /* the journal is the saver's until then */
                if (st == SQ_OK)
                    st = calib_load_layer(cs, layer, &results);
            }
            sq_status agreed;
            SQ_TRY_GOTO(st, sq_comm_agree(st, &agreed), layer_done);
            if (agreed != SQ_OK && st == SQ_OK)
                st = sq_fail(agreed, "rank 0 could not read the artifact of layer %d", layer);
            SQ_TRY_GOTO(st, st, layer_done);
            SQ_TRY_GOTO(st, sq_layer_results_bcast(&results, 0, cs->rank), layer_done);
            SQ_TRY_GOTO(st, sq_layer_results_install(&results, &cs->model.layer), layer_done);
        } else {
            SQ_TRY_GOTO(st, calib_quantize_layer(cs, layer, X, mine.count, true, &results), layer_done);
            t0 = phase_clock();
            if (cs->rank == 0)
                SQ_TRY_GOTO(st, calib_save_layers_in_background(cs, 1, &layer, &results), layer_done);
            cs->phases.write += phase_clock() - t0;
        }
        t0 = phase_clock();
        bool advanced = !cs->done[layer] && calib_keeps_group_inputs(cs);
        if (cs->needs_samples && !advanced && layer + 1 < layers)
            SQ_TRY_GOTO(st, calib_forward_samples(cs, X, mine.count), layer_done);
        cs->phases.forward += phase_clock() - t0;
        if (cs->rank == 0)
            calib_log_progress(cs, layer + 1, layers, layer, cs->done[layer]);
    layer_done:
        sq_layer_results_free(&results);
        if (st == SQ_OK)
            st = calib_check_stop(cs, layer + 1);
        if (st != SQ_OK)
            break;
    }
done:
    sq_layer_prefetch_free(&next);
    kn_free(X);
    if (cs->rank == 0) {
        sq_status last = calib_saved(cs);
        if (st == SQ_OK)
            st = last;
    }
    return st;
}
