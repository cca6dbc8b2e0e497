/* calibrate_internal.h: what the files of a calibration step share (see
 * calibrate.h): the step's state, the layer step (calibrate.c), the two
 * schedules (schedule_sequential.c, schedule_pipeline.c) and the layer
 * artifacts (layer_artifacts.c). Only worker/calibrate*.c, schedule_*.c and
 * layer_artifacts.c include it. */
#ifndef SQ_WORKER_CALIBRATE_INTERNAL_H
#define SQ_WORKER_CALIBRATE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/log.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/layer.h"
#include "quant/awq.h"
#include "quant/hessian.h"
#include "quant/mixed_precision.h"
#include "core/background_task.h"
#include "worker/calibrate.h"
#include "worker/group_inputs.h"
#include "worker/layer_results.h"

/* Where the time goes, for the progress log and bench/ (device work is synchronized
 * before each clock reading, so GPU time lands in the phase that queued it). */
typedef struct {
    double load, forward, hessian, solve, write;
} phase_seconds;

static inline double phase_clock(void)
{
    kn_synchronize();
    return sq_now_seconds();
}

typedef struct {
    const sq_calibration *job;
    const sq_quant_options *opt;     /* gptq, rtn */
    const sq_sparse_options *sparse; /* sparsegpt, wanda, magnitude */
    const sq_smooth_options *smooth; /* smoothquant (its weights: opt) */
    const sq_awq_options *awq;       /* awq (its quantization is opt) */
    sq_step_kind kind;
    bool needs_samples;   /* gptq, sparsegpt, wanda: Hessians from calibration activations; rtn, magnitude: weights only */
    bool true_sequential; /* solve the linears group by group (gptq's option) */
    sq_layer_form form;   /* what the step produces: quantized, or pruned dense weights */
    int rank, world;
    int seqlen, hidden, micro;
    sq_model model;     /* embedding and the resident layer's buffers */
    sq_layer_scratch scratch;
    float *tmp;         /* [micro * seqlen, hidden] */
    sq_group_inputs group_inputs; /* true_sequential with samples: each group's input, all samples */
    sq_background_task saver;     /* rank 0: the artifacts of the layers finished before */
    struct layer_save *pending;   /* what `saver` is writing */
    bool *done;         /* per layer: a verified artifact exists */
    sq_bit_plan bit_plan; /* mixed precision (avg_bits): each linear's width; bit_plan.bits NULL otherwise */
    double started;
    phase_seconds phases;
} calib_state;

/* ---- the layer step (calibrate.c) ---- */

/* Linears that read the same input share one Hessian. */
typedef enum { INPUT_ATTN, INPUT_ATTN_OUT, INPUT_MLP, INPUT_MLP_OUT, INPUT_KINDS } input_kind;
input_kind calib_input_of(int linear);
/* The finished Hessians of all seven linears' inputs over X (unchanged) of the resident
 * layer: summed over ranks when shared (X then holds this rank's nseq of the job's samples). */
sq_status calib_layer_hessians(calib_state *cs, const float *X, int nseq, bool shared,
                               sq_hessian hessians[INPUT_KINDS]);

/* Quantize or prune the resident layer. shared: samples are split over ranks
 * (Hessians summed, solves dealt out, results broadcast); otherwise this rank
 * does it all. On return `out` holds all seven results and the layer computes with them;
 * when calib_keeps_group_inputs, X has also been pushed through the quantized layer. */
sq_status calib_quantize_layer(calib_state *cs, int layer, float *X, int nseq, bool shared,
                               sq_layer_results *out);
/* calib_quantize_layer for a smoothquant step (smooth_layer.c): ranges of the norms' outputs,
 * smoothing folded into the norms and q,k,v / gate,up, every linear rounded per channel;
 * out also carries the rescaled norms, and the layer computes with all of it. */
sq_status calib_smooth_layer(calib_state *cs, int layer, float *X, int nseq, bool shared, sq_layer_results *out);
/* Whether calib_quantize_layer keeps each group's inputs (true_sequential with samples):
 * the layer then runs once, and X leaves it already pushed through. */
bool calib_keeps_group_inputs(const calib_state *cs);

/* The dtype the source checkpoint stores model.layers.<layer>.<module>.weight in (a pruned
 * linear or a rescaled norm is written back in it). */
sq_status calib_source_dtype(const calib_state *cs, int layer, const char *module, sq_dtype *dtype);
/* Push nseq sequences of X [nseq*seqlen, hidden] through the resident layer, in place. */
sq_status calib_forward_samples(calib_state *cs, float *X, int nseq);
/* Embed nseq sequences of token ids (host) into X [nseq*seqlen, hidden]. */
sq_status calib_embed_samples(calib_state *cs, const int32_t *ids, int nseq, float *X);
sq_status calib_alloc_activations(calib_state *cs, int nseq, float **X);
void calib_log_progress(calib_state *cs, int finished, int total, int layer, bool replayed);
/* All ranks agree whether a stop signal arrived: SQ_ERR_INTERRUPTED with a message naming the
 * signal and `finished` layers (counted from 1, as the progress lines count; rank 0's count). */
sq_status calib_check_stop(const calib_state *cs, int finished);

/* ---- layer artifacts and the journal, rank 0 (layer_artifacts.c) ---- */

/* Save `count` finished layers, on the background thread: their artifacts written and hashed
 * at once, then recorded in the journal in the order given, taking
 * `results[0..count)` over (they are left empty), after the layers handed over before are
 * recorded: the next layers' work overlaps the writes, the sha256s and the journal records;
 * the journal still grows one layer at a time. Each layer is also packed into job->packed
 * when there is one. */
sq_status calib_save_layers_in_background(calib_state *cs, int count, const int *layers, sq_layer_results *results);
/* Wait until the layers handed to the background saver are recorded (their failure, if any). */
sq_status calib_saved(calib_state *cs);
sq_status calib_load_layer(calib_state *cs, int layer, sq_layer_results *results);
/* Which layers have an artifact whose bytes still match the journal (sets cs->done).
 * From the first one that does not, the journal forgets the rest. */
sq_status calib_find_done_layers(calib_state *cs);

/* ---- mixed precision, before the layer loop (sensitivity_pass.c) ---- */

/* With avg_bits: every linear's width in cs->bit_plan, on every rank — measured in a pass over
 * the unquantized model and allocated (rank 0 records the report in the journal), or read
 * back from the journal. Nothing to do otherwise. */
sq_status calib_plan_bits(calib_state *cs);

/* ---- the schedules ---- */

sq_status calib_run_sequential(calib_state *cs); /* schedule_sequential.c */
sq_status calib_run_pipeline(calib_state *cs);   /* schedule_pipeline.c */

#endif
