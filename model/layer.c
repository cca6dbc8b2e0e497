/* layer.c: the Llama-family decoder layer: weight loading by Hugging Face
 * names and the forward pass over the kernels interface (see layer.h). */
#include "model/layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/device_tensor.h"
#include "model/gptq_reader.h"
#include "model/kv_cache.h"

static const char *const linear_names[SQ_LINEAR_COUNT] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj",
};

const char *sq_linear_name(sq_linear_id id) { return id >= 0 && id < SQ_LINEAR_COUNT ? linear_names[id] : "?"; }

static void linear_shape(const sq_model_config *cfg, sq_linear_id id, int *in, int *out)
{
    int hidden = cfg->hidden_size, q_width = cfg->num_heads * cfg->head_dim;
    int kv_width = cfg->num_kv_heads * cfg->head_dim, inter = cfg->intermediate_size;
    switch (id) {
    case SQ_LINEAR_Q: *in = hidden, *out = q_width; break;
    case SQ_LINEAR_K:
    case SQ_LINEAR_V: *in = hidden, *out = kv_width; break;
    case SQ_LINEAR_O: *in = q_width, *out = hidden; break;
    case SQ_LINEAR_GATE:
    case SQ_LINEAR_UP: *in = hidden, *out = inter; break;
    default: *in = inter, *out = hidden; break;
    }
}

static bool config_has_bias(const sq_model_config *cfg, sq_linear_id id)
{
    if (id == SQ_LINEAR_Q || id == SQ_LINEAR_K || id == SQ_LINEAR_V)
        return cfg->attention_bias;
    if (id == SQ_LINEAR_O)
        return cfg->o_proj_bias;
    return cfg->mlp_bias;
}

static sq_status alloc_floats(float **p, size_t n)
{
    return kn_alloc((void **)p, n * sizeof(float));
}

sq_status sq_layer_weights_alloc(sq_layer_weights *w, const sq_model_config *cfg)
{
    memset(w, 0, sizeof *w);
    w->index = -1;
    sq_status st;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        sq_linear *lin = &w->linear[i];
        linear_shape(cfg, (sq_linear_id)i, &lin->in_features, &lin->out_features);
        SQ_TRY_GOTO(st, alloc_floats(&lin->weight, (size_t)lin->in_features * lin->out_features), fail);
        if (config_has_bias(cfg, (sq_linear_id)i))
            SQ_TRY_GOTO(st, alloc_floats(&lin->bias, (size_t)lin->out_features), fail);
    }
    SQ_TRY_GOTO(st, alloc_floats(&w->input_norm, (size_t)cfg->hidden_size), fail);
    SQ_TRY_GOTO(st, alloc_floats(&w->post_attention_norm, (size_t)cfg->hidden_size), fail);
    return SQ_OK;
fail:
    sq_layer_weights_free(w);
    return st;
}

void sq_layer_weights_free(sq_layer_weights *w)
{
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        kn_free(w->linear[i].weight);
        kn_free(w->linear[i].bias);
    }
    kn_free(w->input_norm);
    kn_free(w->post_attention_norm);
    memset(w, 0, sizeof *w);
    w->index = -1;
}

/* A linear's weight, dense or GPTQ-packed (dequantized on the host, as a GPTQ checkpoint is read). */
static sq_status upload_linear_weight(sq_linear *lin, const sq_checkpoint *ckpt, int layer, const char *linear_name,
                                      const sq_layer_prefetch *prefetched)
{
    char name[160];
    snprintf(name, sizeof name, "model.layers.%d.%s", layer, linear_name);
    if (!sq_gptq_has_linear(ckpt, name)) {
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer, linear_name);
        return sq_upload_checkpoint_tensor_from(lin->weight, ckpt, name, 2, lin->out_features, lin->in_features,
                                                sq_layer_prefetch_find(prefetched, name));
    }
    size_t count = (size_t)lin->out_features * lin->in_features;
    float *W = malloc(count * sizeof *W);
    if (!W)
        return sq_fail(SQ_ERR_NOMEM, "%s: cannot dequantize %s", sq_checkpoint_dir(ckpt), name);
    sq_status st = sq_gptq_read_linear_f32(ckpt, name, W, count);
    if (st == SQ_OK)
        st = kn_upload(lin->weight, W, count * sizeof *W);
    free(W);
    return st;
}

sq_status sq_layer_weights_load(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt, int layer)
{
    return sq_layer_weights_load_prefetched(w, cfg, ckpt, layer, NULL);
}

sq_status sq_layer_weights_load_next(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                     int layer, sq_layer_prefetch *next)
{
    SQ_TRY(sq_layer_prefetch_wait(next));
    SQ_TRY(sq_layer_weights_load_prefetched(w, cfg, ckpt, layer, next));
    if (layer + 1 >= cfg->num_layers)
        return SQ_OK;
    SQ_TRY(kn_synchronize()); /* the load above has read the buffer the next upload fills */
    return sq_layer_prefetch_start(next, layer + 1);
}

sq_status sq_layer_weights_load_prefetched(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                           int layer, const sq_layer_prefetch *prefetched)
{
    if (layer < 0 || layer >= cfg->num_layers)
        return sq_fail(SQ_ERR_ARG, "layer %d does not exist (the model has %d)", layer, cfg->num_layers);
    char name[160];
    w->index = -1;
    for (int i = 0; i < SQ_LINEAR_COUNT; i++) {
        sq_linear *lin = &w->linear[i];
        SQ_TRY(upload_linear_weight(lin, ckpt, layer, linear_names[i], prefetched));
        snprintf(name, sizeof name, "model.layers.%d.%s.bias", layer, linear_names[i]);
        bool present = sq_checkpoint_find(ckpt, name) != NULL;
        if (lin->bias)
            SQ_TRY(sq_upload_checkpoint_tensor_from(lin->bias, ckpt, name, 1, lin->out_features, 0,
                                                    sq_layer_prefetch_find(prefetched, name)));
        else if (present)
            return sq_fail(SQ_ERR_MISMATCH, "%s: tensor %s is present but config.json announces no such bias",
                           sq_checkpoint_dir(ckpt), name);
    }
    snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", layer);
    SQ_TRY(sq_upload_checkpoint_tensor_from(w->input_norm, ckpt, name, 1, cfg->hidden_size, 0,
                                            sq_layer_prefetch_find(prefetched, name)));
    snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", layer);
    SQ_TRY(sq_upload_checkpoint_tensor_from(w->post_attention_norm, ckpt, name, 1, cfg->hidden_size, 0,
                                            sq_layer_prefetch_find(prefetched, name)));
    w->index = layer;
    return SQ_OK;
}

sq_status sq_layer_scratch_alloc(sq_layer_scratch *s, const sq_model_config *cfg, int max_rows)
{
    memset(s, 0, sizeof *s);
    if (max_rows <= 0)
        return sq_fail(SQ_ERR_ARG, "layer scratch: max_rows %d must be positive", max_rows);
    s->max_rows = max_rows;
    size_t rows = (size_t)max_rows;
    size_t q_width = (size_t)cfg->num_heads * cfg->head_dim, kv_width = (size_t)cfg->num_kv_heads * cfg->head_dim;
    sq_status st;
    SQ_TRY_GOTO(st, alloc_floats(&s->normed, rows * cfg->hidden_size), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->q, rows * q_width), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->k, rows * kv_width), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->v, rows * kv_width), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->attn, rows * q_width), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->gate, rows * cfg->intermediate_size), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->up, rows * cfg->intermediate_size), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->out, rows * cfg->hidden_size), fail);
    SQ_TRY_GOTO(st, alloc_floats(&s->inv_freq, (size_t)cfg->head_dim / 2), fail);
    size_t freq_bytes = sizeof(float) * (size_t)(cfg->head_dim / 2);
    float *inv_freq = malloc(freq_bytes ? freq_bytes : 1);
    if (!inv_freq) {
        st = sq_fail(SQ_ERR_NOMEM, "layer scratch: cannot allocate %zu bytes of RoPE frequencies", freq_bytes);
        goto fail;
    }
    sq_model_rope_inv_freq(cfg, inv_freq);
    st = kn_upload(s->inv_freq, inv_freq, freq_bytes);
    free(inv_freq);
    if (st != SQ_OK)
        goto fail;
    return SQ_OK;
fail:
    sq_layer_scratch_free(s);
    return st;
}

void sq_layer_scratch_free(sq_layer_scratch *s)
{
    float *buffers[] = {s->normed, s->q, s->k, s->v, s->attn, s->gate, s->up, s->out, s->inv_freq};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        kn_free(buffers[i]);
    memset(s, 0, sizeof *s);
}

/* Give the hook its look at the input, then run the linear one sequence at a
 * time (kn_linear_per_block, one product per sequence): a GEMM's rounding of a row can
 * depend on the row's place in the call (OpenBLAS's kernels, cuBLAS's choice of algorithm
 * by shape), and products of one sequence each give a sequence the same bits in any
 * micro-batch, so on any rank count. */
static sq_status run_linear(const sq_layer_weights *w, sq_linear_id id, float *out, const float *x, int batch,
                            int seq, const sq_layer_options *opt)
{
    const sq_linear *lin = &w->linear[id];
    const int rows = batch * seq;
    if (opt && opt->hook) {
        sq_status st = opt->hook(opt->hook_ctx, linear_names[id], x, rows, lin->in_features);
        if (st == SQ_STOPPED)
            return st;
        if (st != SQ_OK)
            return sq_fail_context(st, "layer %d %s hook", w->index, linear_names[id]);
    }
    return kn_linear_per_block(out, x, lin->weight, lin->bias, batch, seq, lin->in_features, lin->out_features);
}

/* One stage of the layer (see sq_layer_stage) for `batch` sequences of `seq` rows. */
static sq_status run_stage(const sq_layer_weights *w, const sq_model_config *cfg, sq_layer_stage_id stage, float *x,
                           const float *in, float *out, int batch, int seq, sq_layer_scratch *s,
                           const sq_layer_options *opt)
{
    const int rows = batch * seq, hidden = cfg->hidden_size;
    const int heads = cfg->num_heads, kv_heads = cfg->num_kv_heads, head_dim = cfg->head_dim;
    const int kv_bits = opt ? opt->kv_cache_bits : 0, pos0 = opt ? opt->pos0 : 0;
    switch (stage) {
    case SQ_STAGE_ATTN_INPUT: return kn_rmsnorm(out, x, w->input_norm, rows, hidden, cfg->rms_norm_eps);
    case SQ_STAGE_O_INPUT:
        SQ_TRY(run_linear(w, SQ_LINEAR_Q, s->q, in, batch, seq, opt));
        SQ_TRY(run_linear(w, SQ_LINEAR_K, s->k, in, batch, seq, opt));
        SQ_TRY(run_linear(w, SQ_LINEAR_V, s->v, in, batch, seq, opt));
        SQ_TRY(kn_rope(s->q, s->inv_freq, batch, seq, heads, head_dim, pos0));
        SQ_TRY(kn_rope(s->k, s->inv_freq, batch, seq, kv_heads, head_dim, pos0));
        if (kv_bits > 0) {
            SQ_TRY(kn_fake_quantize_rows(s->k, rows * kv_heads, head_dim, kv_bits));
            SQ_TRY(kn_fake_quantize_rows(s->v, rows * kv_heads, head_dim, kv_bits));
        }
        if (opt && opt->kv_cache)
            SQ_TRY(sq_kv_cache_apply(opt->kv_cache, w->index, s->k, s->v, batch, seq, kv_heads, head_dim));
        return kn_attention(out, NULL, s->q, s->k, s->v, batch, seq, heads, kv_heads, head_dim);
    case SQ_STAGE_MLP_INPUT:
        SQ_TRY(run_linear(w, SQ_LINEAR_O, s->out, in, batch, seq, opt));
        SQ_TRY(kn_add_inplace(x, s->out, (size_t)rows * hidden));
        return kn_rmsnorm(out, x, w->post_attention_norm, rows, hidden, cfg->rms_norm_eps);
    case SQ_STAGE_DOWN_INPUT:
        SQ_TRY(run_linear(w, SQ_LINEAR_GATE, out, in, batch, seq, opt));
        SQ_TRY(run_linear(w, SQ_LINEAR_UP, s->up, in, batch, seq, opt));
        return kn_swiglu(out, out, s->up, (size_t)rows * cfg->intermediate_size);
    case SQ_STAGE_OUTPUT:
        SQ_TRY(run_linear(w, SQ_LINEAR_DOWN, s->out, in, batch, seq, opt));
        return kn_add_inplace(x, s->out, (size_t)rows * hidden);
    default: return sq_fail(SQ_ERR_ARG, "layer stage %d does not exist", (int)stage);
    }
}

static sq_status check_rows(const sq_layer_scratch *s, int batch, int seq)
{
    if (batch <= 0 || seq <= 0 || (long)batch * seq > s->max_rows)
        return sq_fail(SQ_ERR_ARG, "layer forward: batch %d x seq %d exceeds the scratch (%d rows)", batch, seq,
                       s->max_rows);
    return SQ_OK;
}

sq_status sq_layer_stage(const sq_layer_weights *w, const sq_model_config *cfg, sq_layer_stage_id stage, float *x,
                         const float *in, float *out, int batch, int seq, sq_layer_scratch *s)
{
    SQ_TRY(check_rows(s, batch, seq));
    return run_stage(w, cfg, stage, x, in, out, batch, seq, s, NULL);
}

sq_status sq_layer_forward(const sq_layer_weights *w, const sq_model_config *cfg, float *x, int batch, int seq,
                           sq_layer_scratch *s, const sq_layer_options *opt)
{
    SQ_TRY(check_rows(s, batch, seq));
    /* each stage's output is the next one's input: normed -> attn -> normed -> gate -> x */
    float *io[SQ_STAGE_COUNT + 1] = {NULL, s->normed, s->attn, s->normed, s->gate, NULL};
    /* the width of each stage's input: what the linears of that stage read */
    const int width[SQ_STAGE_COUNT] = {0, cfg->hidden_size, cfg->num_heads * cfg->head_dim, cfg->hidden_size,
                                       cfg->intermediate_size};
    const int act_bits = opt ? opt->act_bits : 0;
    for (int stage = 0; stage < SQ_STAGE_COUNT; stage++) {
        if (act_bits > 0 && io[stage])
            SQ_TRY(kn_fake_quantize_tokens(io[stage], batch * seq, width[stage], act_bits));
        SQ_TRY(run_stage(w, cfg, (sq_layer_stage_id)stage, x, io[stage], io[stage + 1], batch, seq, s, opt));
    }
    return SQ_OK;
}
