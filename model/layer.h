/* layer.h: one Llama-family decoder layer (Llama, Mistral, Qwen2) over the
 * kernels interface.
 *
 *   x += o_proj(attention(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = rmsnorm(x, input_layernorm)
 *   x += down_proj(silu(gate_proj(n)) * up_proj(n))                       n = rmsnorm(x, post_attention_layernorm)
 *
 * The weights of one layer live in device memory as fp32. Their pointers are
 * public so that calibration can overwrite a linear's weight with its
 * quantized (dequantized) values and run the layer again. A hook, called
 * before each linear, sees that linear's input (what GPTQ's Hessian needs). */
#ifndef SQ_MODEL_LAYER_H
#define SQ_MODEL_LAYER_H

#include "core/status.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/geometry.h" /* sq_linear_id and the linears' shapes */
#include "model/layer_prefetch.h"

/* "self_attn.q_proj", ..., "mlp.down_proj": the name inside a layer, as Hugging Face spells it. */
const char *sq_linear_name(sq_linear_id id);

typedef struct {
    int in_features;
    int out_features;
    float *weight; /* device, [out_features, in_features] */
    float *bias;   /* device, [out_features], or NULL when the layer has none */
} sq_linear;

typedef struct {
    int index; /* layer number of the weights loaded last, -1 before any */
    sq_linear linear[SQ_LINEAR_COUNT];
    float *input_norm;          /* input_layernorm.weight [hidden] */
    float *post_attention_norm; /* post_attention_layernorm.weight [hidden] */
} sq_layer_weights;

/* Allocate device buffers for one layer of `cfg` (biases as the config says). */
sq_status sq_layer_weights_alloc(sq_layer_weights *w, const sq_model_config *cfg);
void sq_layer_weights_free(sq_layer_weights *w);

/* Load layer `layer` (model.layers.N.*) from a checkpoint into allocated buffers.
 * Shapes are checked against the config; a bias the config announces must be
 * present, and a bias present in the checkpoint but not announced is an error
 * too (it would otherwise be silently dropped). */
sq_status sq_layer_weights_load(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                int layer);
/* The same, taking the tensors `prefetched` holds for this layer from its device copy
 * (model/layer_prefetch.h; NULL: read them all from the checkpoint). */
sq_status sq_layer_weights_load_prefetched(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                           int layer, const sq_layer_prefetch *prefetched);

/* A layer loop's load: wait for `next`, load `layer` (from it where it holds that layer), then, once
 * the device has read it, start uploading layer + 1 into it (none after the last layer). */
sq_status sq_layer_weights_load_next(sq_layer_weights *w, const sq_model_config *cfg, const sq_checkpoint *ckpt,
                                     int layer, sq_layer_prefetch *next);

/* Device work buffers for up to `max_rows` rows (batch * seq) and the RoPE frequencies. */
typedef struct {
    int max_rows;
    float *normed; /* [rows, hidden] */
    float *q;      /* [rows, heads * head_dim] */
    float *k;      /* [rows, kv_heads * head_dim] */
    float *v;
    float *attn;     /* [rows, heads * head_dim] */
    float *gate;     /* [rows, intermediate] */
    float *up;       /* [rows, intermediate] */
    float *out;      /* [rows, hidden] */
    float *inv_freq; /* [head_dim / 2] */
} sq_layer_scratch;

sq_status sq_layer_scratch_alloc(sq_layer_scratch *s, const sq_model_config *cfg, int max_rows);
void sq_layer_scratch_free(sq_layer_scratch *s);

/* Called before a linear runs, with its device input [rows, in_features].
 * q/k/v share one input and gate/up share one: the hook is still called once
 * per linear. SQ_STOPPED ends the pass there (calibration that only needs the
 * inputs up to some linear) and is returned as is, leaving x partly updated;
 * any other non-OK status is an error, returned with the layer and linear named. */
typedef sq_status (*sq_linear_hook)(void *ctx, const char *linear_name, const float *input, int rows,
                                    int in_features);

typedef struct {
    sq_linear_hook hook; /* may be NULL */
    void *hook_ctx;
    int kv_cache_bits; /* 0: exact; else keys (after RoPE) and values are fake-quantized per token and head */
    const struct sq_kv_cache *kv_cache; /* NULL, or static scales, KIVI or calibration (model/kv_cache.h) */
    int pos0;          /* position of the first token of every sequence */
    int act_bits;      /* 0: exact; else every linear's input is fake-quantized per token, symmetric
                          (kn_fake_quantize_tokens): simulated dynamic int activations of a W8A8 model */
} sq_layer_options;

/* x [batch*seq, hidden] is the residual stream, updated in place. batch*seq must be <= s->max_rows. */
sq_status sq_layer_forward(const sq_layer_weights *w, const sq_model_config *cfg, float *x, int batch, int seq,
                           sq_layer_scratch *s, const sq_layer_options *opt);

/* The same forward in five stages, cut before each true-sequential group of linears, so
 * that calibration can keep each group's input for all samples instead of running the
 * layer again up to it. Stage k reads `in` (the previous stage's `out`) and x, and
 * writes `out` (rows of the width named):
 *   SQ_STAGE_ATTN_INPUT   out = rmsnorm(x)                      input of q, k, v [hidden]
 *   SQ_STAGE_O_INPUT      out = attention(rope(q(in)), ...)     input of o [heads*head_dim]
 *   SQ_STAGE_MLP_INPUT    x += o(in); out = rmsnorm(x)          input of gate, up [hidden]
 *   SQ_STAGE_DOWN_INPUT   out = silu(gate(in)) * up(in)         input of down [intermediate]
 *   SQ_STAGE_OUTPUT       x += down(in)                         (out unused)
 * Running the five in order, in the scratch or elsewhere, gives sq_layer_forward's x
 * bit for bit. `in` and `out` are distinct buffers of batch*seq rows. */
typedef enum {
    SQ_STAGE_ATTN_INPUT,
    SQ_STAGE_O_INPUT,
    SQ_STAGE_MLP_INPUT,
    SQ_STAGE_DOWN_INPUT,
    SQ_STAGE_OUTPUT,
    SQ_STAGE_COUNT
} sq_layer_stage_id;

sq_status sq_layer_stage(const sq_layer_weights *w, const sq_model_config *cfg, sq_layer_stage_id stage, float *x,
                         const float *in, float *out, int batch, int seq, sq_layer_scratch *s);

#endif
