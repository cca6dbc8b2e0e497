/* smooth_layer.c: the layer step of a smoothquant step (quant/smoothquant.h):
 * the ranges of the two norms' outputs over the layer's calibration samples
 * (one forward pass up to gate_proj; max-reduced over ranks, which is exact),
 * the smoothing folded into the norms and the linears that read them, then
 * every linear rounded to its per-channel grid. Every rank computes the whole
 * layer: with the same ranges and weights it gets the same bits, and the work
 * (elementwise over the weights) costs less than broadcasting its result. */
#include "worker/calibrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/rtn.h"
#include "quant/smoothquant.h"

/* Device [hidden] running maxima of |input| of q_proj (input_layernorm's output) and gate_proj
 * (post_attention_layernorm's output); the pass stops at gate_proj. */
typedef struct {
    float *range[SQ_NORM_COUNT];
} range_hook;

static sq_status collect_ranges(void *ctx, const char *linear_name, const float *input, int rows, int in_features)
{
    range_hook *hook = ctx;
    if (strcmp(linear_name, sq_linear_name(SQ_LINEAR_Q)) == 0)
        return kn_column_abs_max(hook->range[SQ_NORM_INPUT], input, rows, in_features);
    if (strcmp(linear_name, sq_linear_name(SQ_LINEAR_GATE)) != 0)
        return SQ_OK;
    SQ_TRY(kn_column_abs_max(hook->range[SQ_NORM_POST_ATTENTION], input, rows, in_features));
    return SQ_STOPPED;
}

/* ranges (host [SQ_NORM_COUNT * hidden]) over this rank's nseq samples of X (left unchanged),
 * and over every rank's when the samples are shared out. */
static sq_status activation_ranges(calib_state *cs, const float *X, int nseq, bool shared, float *ranges)
{
    size_t bytes = (size_t)SQ_NORM_COUNT * cs->hidden * sizeof(float);
    float *dev = NULL;
    sq_status st;
    SQ_TRY_GOTO(st, kn_alloc((void **)&dev, bytes), done);
    SQ_TRY_GOTO(st, kn_zero(dev, bytes), done);
    range_hook hook = {{dev, dev + cs->hidden}};
    sq_layer_options opt = {.hook = collect_ranges, .hook_ctx = &hook};
    for (int s = 0; s < nseq; s += cs->micro) {
        int n = nseq - s < cs->micro ? nseq - s : cs->micro;
        SQ_TRY_GOTO(st, kn_copy(cs->tmp, X + (size_t)s * cs->seqlen * cs->hidden,
                                (size_t)n * cs->seqlen * cs->hidden * sizeof(float)), done);
        st = sq_layer_forward(&cs->model.layer, &cs->model.cfg, cs->tmp, n, cs->seqlen, &cs->scratch, &opt);
        if (st != SQ_OK && st != SQ_STOPPED)
            goto done;
    }
    SQ_TRY_GOTO(st, kn_download(ranges, dev, bytes), done);
    if (shared)
        st = sq_comm_allreduce_max_f32_host(ranges, (size_t)SQ_NORM_COUNT * cs->hidden);
done:
    kn_free(dev);
    return st;
}

/* Fold the smoothing of `norm` into it and into its readers' weights W (device copies);
 * out->norm[norm] receives the rescaled norm as the checkpoint stores it. */
static sq_status smooth_norm(calib_state *cs, int layer, sq_norm_id norm, const float *range, float *const *W,
                             sq_layer_results *out)
{
    static const int readers[SQ_NORM_COUNT][3] = {{SQ_LINEAR_Q, SQ_LINEAR_K, SQ_LINEAR_V},
                                                  {SQ_LINEAR_GATE, SQ_LINEAR_UP, -1}};
    float *dev_norm = norm == SQ_NORM_INPUT ? cs->model.layer.input_norm : cs->model.layer.post_attention_norm;
    float *weights[3];
    int rows[3], count = 0;
    for (; count < 3 && readers[norm][count] >= 0; count++) {
        weights[count] = W[readers[norm][count]];
        rows[count] = cs->model.layer.linear[readers[norm][count]].out_features;
    }
    size_t bytes = (size_t)cs->hidden * sizeof(float);
    float *host = malloc(bytes), *s = malloc(bytes);
    sq_dtype dtype = SQ_DTYPE_F32;
    sq_status st = host && s ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "smoothquant: out of memory");
    SQ_TRY_GOTO(st, st, done);
    SQ_TRY_GOTO(st, calib_source_dtype(cs, layer, sq_norm_name(norm), &dtype), done);
    SQ_TRY_GOTO(st, kn_download(host, dev_norm, bytes), done);
    SQ_TRY_GOTO(st, sq_smooth_fold(range, cs->smooth->alpha, host, dtype, weights, rows, count, cs->hidden, s), done);
    SQ_TRY_GOTO(st, kn_upload(dev_norm, host, bytes), done);
    st = sq_dense_weights_from_device(&out->norm[norm], dev_norm, 1, cs->hidden, dtype);
done:
    free(host);
    free(s);
    return st;
}

sq_status calib_smooth_layer(calib_state *cs, int layer, float *X, int nseq, bool shared, sq_layer_results *out)
{
    out->form = SQ_LAYER_QUANTIZED;
    float *W[SQ_LINEAR_COUNT] = {0};
    float *ranges = malloc((size_t)SQ_NORM_COUNT * cs->hidden * sizeof(float));
    sq_status st = ranges ? SQ_OK : sq_fail(SQ_ERR_NOMEM, "smoothquant: out of memory");
    SQ_TRY_GOTO(st, st, done);
    double t0 = phase_clock();
    SQ_TRY_GOTO(st, activation_ranges(cs, X, nseq, shared, ranges), done);
    double t1 = phase_clock();
    cs->phases.forward += t1 - t0;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        const sq_linear *lin = &cs->model.layer.linear[i];
        size_t wbytes = (size_t)lin->out_features * lin->in_features * sizeof(float);
        SQ_TRY_GOTO(st, kn_alloc((void **)&W[i], wbytes), done);
        SQ_TRY_GOTO(st, kn_copy(W[i], lin->weight, wbytes), done);
    }
    for (int k = 0; k < SQ_NORM_COUNT; k++)
        SQ_TRY_GOTO(st, smooth_norm(cs, layer, (sq_norm_id)k, ranges + (size_t)k * cs->hidden, W, out), done);
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        const sq_linear *lin = &cs->model.layer.linear[i];
        st = sq_rtn_quantize(W[i], lin->out_features, lin->in_features, cs->opt, &out->linear[i]);
        if (st != SQ_OK) {
            sq_fail_context(st, "layer %d %s", layer, sq_linear_name(i));
            goto done;
        }
    }
    st = sq_layer_results_install(out, &cs->model.layer);
    cs->phases.solve += phase_clock() - t1;
done:
    for (int i = 0; i < SQ_LINEAR_COUNT; i++)
        kn_free(W[i]);
    free(ranges);
    return st;
}
