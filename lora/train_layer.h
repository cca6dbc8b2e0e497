/* train_layer.h: one Llama-family decoder layer with LoRA adapters, forward
 * and backward, over the kernels interface (llm.c style: each piece a
 * _forward/_backward pair).
 *
 * Shapes (rows = batch * seq; H hidden, Q = heads*head_dim, K = kv_heads*head_dim,
 * I intermediate, r the LoRA rank):
 *   x0 [rows, H] layer input          n1 = rmsnorm(x0, input_norm) [rows, H]
 *   q [rows, Q] = rope(q_proj(n1))    k [rows, K] = rope(k_proj(n1))   v [rows, K] = v_proj(n1)
 *   attn [rows, Q] = attention(q, k, v)
 *   x1 [rows, H] = x0 + o_proj(attn)  n2 = rmsnorm(x1, post_attention_norm) [rows, H]
 *   gate, up [rows, I] = gate_proj(n2), up_proj(n2)   act [rows, I] = silu(gate) * up
 *   x2 [rows, H] = x1 + down_proj(act)                 (the layer output)
 * where each targeted linear is W x + s B A drop(x), and u = A drop(x) [rows, r] is kept.
 *
 * The tape holds every one of these activations for one layer: the forward
 * fills it, the backward reads it. With activation recomputation one tape
 * serves all layers (the trainer reruns a layer's forward from its saved input
 * before that layer's backward); without, the trainer keeps a tape per layer.
 * Dropout masks come from kn_dropout with a seed per (call, linear), so a
 * recomputed forward drops exactly what the first one dropped. */
#ifndef SQ_LORA_TRAIN_LAYER_H
#define SQ_LORA_TRAIN_LAYER_H

#include <stdint.h>

#include "core/status.h"
#include "lora/adapter.h"
#include "model/config.h"
#include "model/layer.h"

typedef struct {
    int max_rows;
    float *x0, *n1, *q, *k, *v, *attn, *x1, *n2, *gate, *up, *act;
    float *u[SQ_LINEAR_COUNT]; /* A drop(x) of each targeted linear, [rows, r] */
    float *lse2;               /* [batch][heads][seq]: attn's log-sum-exp per query row, for its backward */
} sq_lora_tape;

/* Work buffers of the backward (and the dropout buffer of the forward), shared by all layers. */
typedef struct {
    float *dx1, *dn, *dq, *dk, *dv, *dattn, *dgate, *dup, *dact; /* like the activations they differentiate */
    float *du;       /* [rows, r] */
    float *dropped;  /* [rows, max(H, Q, I)]: drop(x), then the masked A-path gradient (NULL without dropout) */
    float *inv_freq; /* [head_dim / 2] RoPE frequencies */
    float dropout;   /* the dropout probability of this call: the adapter's when training, 0 when evaluating */
} sq_lora_work;

sq_status sq_lora_tape_alloc(sq_lora_tape *t, const sq_model_config *cfg, const sq_lora_adapter *a, int max_rows);
void sq_lora_tape_free(sq_lora_tape *t);
sq_status sq_lora_work_alloc(sq_lora_work *w, const sq_model_config *cfg, const sq_lora_adapter *a, int max_rows);
void sq_lora_work_free(sq_lora_work *w);

/* Forward of layer `layer` (base weights `w`, adapters from `a`): copies x_in into the tape
 * and writes the layer output to x_out (which may be x_in). `seed` keys the dropout masks.
 * x_out NULL fills the tape only: the down projection's base product and the residual,
 * which only the output needs, are skipped (a rerun before the backward). */
sq_status sq_lora_layer_forward(const sq_layer_weights *w, const sq_lora_adapter *a, const sq_model_config *cfg,
                                int layer, const float *x_in, float *x_out, int batch, int seq, sq_lora_tape *t,
                                sq_lora_work *work, uint64_t seed);

/* Backward of the same call: dx holds d loss / d x_out on entry and d loss / d x_in on return;
 * the adapter gradients of this layer are ADDED to a->grads. */
sq_status sq_lora_layer_backward(const sq_layer_weights *w, const sq_lora_adapter *a, const sq_model_config *cfg,
                                 int layer, float *dx, int batch, int seq, const sq_lora_tape *t, sq_lora_work *work,
                                 uint64_t seed);

#endif
