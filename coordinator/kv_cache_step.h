/* kv_cache_step.h: the kv_cache step — static KV-cache scales calibrated on the
 * job's calibration windows, written into a copy of the step's input model.
 *
 * Every rank takes a contiguous share of the windows (rank r: windows
 * [r·n/R, (r+1)·n/R)) and runs them through the whole model, one layer resident
 * at a time (model/forward.h), recording each layer's per-head absolute maxima of
 * the keys after RoPE and of the values (model/kv_cache.h, SQ_KV_OBSERVE). Rank 0
 * takes the maximum over ranks. A window's activations do not depend on which
 * windows share its batch (the layer runs each sequence alone through its
 * GEMMs), and a maximum does not depend on order, so the scales are the same bits
 * on any rank count. The parallel mode plays no part: streaming one layer at a
 * time already fits models larger than one device, and splitting the windows is
 * the cheaper cut. The step is recorded in the journal once its output is
 * written; a run stopped inside it computes it again (one forward pass) to the
 * same bytes.
 *
 * Output (rank 0, model/kv_scales.h has the scale rule): the input checkpoint's
 * tensors as stored plus fp32 model.layers.N.self_attn.k_scale / v_scale ([H, 1, 1]
 * for strategy attn_head, [1] for tensor), config.json whose quantization_config
 * gains compressed-tensors' kv_cache_scheme (an input without a quantization_config
 * gets a compressed-tensors one with no weight groups), kv_cache_scales.json, the
 * tokenizer files and the manifest. */
#ifndef SQ_COORDINATOR_KV_CACHE_STEP_H
#define SQ_COORDINATOR_KV_CACHE_STEP_H

#include <stdint.h>

#include <jansson.h>

#include "core/status.h"
#include "jobs/spec.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "worker/comm.h"

typedef struct {
    const sq_job_spec *spec;
    int step;
    const sq_comm *comm;
    const sq_model_config *cfg;
    const sq_checkpoint *ckpt; /* the step's input model, opened on every rank */
    const int32_t *samples;    /* nsamples x seqlen calibration ids, on every rank */
    const char *output_dir;    /* rank 0: the local directory the output is written into */
    json_t *result;            /* rank 0: the step's journal record gains "kv_cache" */
} sq_kv_cache_job;

/* On every rank; fails on every rank alike (the ranks agree before exchanging). */
sq_status sq_kv_cache_step_run(const sq_kv_cache_job *job);

#endif
